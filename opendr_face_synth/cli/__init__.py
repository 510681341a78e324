"""Command-line front-ends: ``main`` (``opendr-face-synth``) and ``seed_tool`` (``tool_synthetic_facial_generation``).
Both are thin shells over ``core.synthesizer.FaceSynthesizer`` and ``io``; this package imports nothing."""
