"""Importing mediapipe's legacy solutions quietly (its C++ logging and a protobuf deprecation warning)."""

from __future__ import annotations

import os
import warnings


def solutions():
    """``mediapipe.python.solutions``, imported with glog/TFLite info lines turned off."""
    # Must be set before mediapipe's C++ runtime starts; harmless when the user already chose a level.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # mediapipe 0.10.14 calls a protobuf API that warns on every graph run.
    warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
    from mediapipe.python import solutions as mp_solutions

    return mp_solutions
