"""opendr_face_synth: multi-view face synthesis (Rotate-and-Render) for ROS 2 and photo folders."""

__version__ = "0.1.0"
