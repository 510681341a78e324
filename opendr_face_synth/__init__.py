"""opendr_face_synth: multi-view face synthesis (Rotate-and-Render) for ROS 2 and photo folders."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# ROS 2 messages (opendr_face_synth.msg). colcon installs rosidl's generated modules into this very
# directory. The pip-based set-up (scripts/build_msgs.sh) cannot: rosidl names its generated package
# `opendr_face_synth` too, and in site-packages it would shadow this (editable) one. It installs them
# under <venv>/lib/opendr_face_synth/python instead, and this adds that directory to the package path.
_generated = _os.path.join(_sys.prefix, "lib", __name__, "python", __name__)
if _os.path.isdir(_generated) and _generated not in __path__:
    __path__.append(_generated)
del _generated
