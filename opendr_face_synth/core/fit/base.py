"""The fitter interface: detections in one image -> one 3D face per detection."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..types import FaceDetection, FaceFit


class FitError(RuntimeError):
    """A face could not be fitted (the message says why); other faces of the image go on."""


class Fitter(Protocol):
    name: str

    def fit(self, image_rgb: np.ndarray, detections: list[FaceDetection]) -> list[FaceFit | FitError]:
        """Fit every detection of one RGB uint8 image (H, W, 3), full resolution.

        Returns one entry per detection, in order: a FaceFit in the image's camera frame
        (see core/types.py), or a FitError saying why that face failed.
        """
        ...

    def close(self) -> None: ...
