"""Engine results (core.types) -> opendr_face_synth/msg/SynthFaceArray, and back to plain values.

The message classes are imported inside the functions (they need the built interfaces), never at
import time, so this module imports on machines without the messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..core.types import FaceResult, HeadPose, ImageResult
from .image_conversion import rgb_to_image


def _pose_msg(pose: HeadPose | None) -> Any:
    from opendr_face_synth.msg import HeadPose as HeadPoseMsg

    msg = HeadPoseMsg()
    if pose is not None:
        msg.yaw, msg.pitch, msg.roll = float(pose.yaw), float(pose.pitch), float(pose.roll)
    return msg


def _roi(box: tuple[float, float, float, float], height: int, width: int) -> Any:
    """The box as pixel RegionOfInterest clipped to the image (floor of the start, ceil of the end)."""
    from sensor_msgs.msg import RegionOfInterest

    x0 = min(max(0, math.floor(box[0])), width)
    y0 = min(max(0, math.floor(box[1])), height)
    x1 = min(max(x0, math.ceil(box[2])), width)
    y1 = min(max(y0, math.ceil(box[3])), height)
    return RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0, height=y1 - y0, do_rectify=False)


def face_msg(face: FaceResult, track_id: int, header: Any, image_size: tuple[int, int], publish_masks: bool) -> Any:
    from opendr_face_synth.msg import SynthFace, SynthView

    msg = SynthFace()
    msg.track_id = int(track_id)
    msg.roi = _roi(face.detection.box, image_size[0], image_size[1])
    msg.score = float(face.detection.score)
    if face.fit is not None:
        msg.has_source_pose = True
        msg.source_pose = _pose_msg(face.fit.pose)
    msg.error = face.error or ""
    views = []
    for view in face.views:
        v = SynthView()
        v.yaw_requested = view.request.yaw is not None
        v.requested_yaw = float(view.request.yaw) if view.request.yaw is not None else 0.0
        v.pitch_requested = view.request.pitch is not None
        v.requested_pitch = float(view.request.pitch) if view.request.pitch is not None else 0.0
        v.target = _pose_msg(view.target)
        v.has_achieved = view.achieved is not None
        v.achieved = _pose_msg(view.achieved)
        v.image = rgb_to_image(view.image, header, "rgb8")
        if publish_masks and view.mask is not None:
            v.mask = rgb_to_image(view.mask, header, "mono8")
        views.append(v)
    msg.views = views
    return msg


def views_message(header: Any, result: ImageResult, track_ids: Sequence[int], publish_masks: bool) -> Any:
    """SynthFaceArray for one frame; ``header`` (stamp, frame_id) is the input image's."""
    from opendr_face_synth.msg import SynthFaceArray

    msg = SynthFaceArray()
    msg.header = header
    msg.image_height, msg.image_width = int(result.image_size[0]), int(result.image_size[1])
    msg.error = result.error or ""
    msg.faces = [
        face_msg(face, tid, header, result.image_size, publish_masks)
        for face, tid in zip(result.faces, track_ids, strict=True)
    ]
    return msg
