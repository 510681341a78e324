"""Shared fixtures: the optional ../shared data folder and scikit-image's astronaut photo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (or $OPENDR_FACE_SYNTH_SHARED); skips when absent (a user's fresh clone)."""
    default = Path(__file__).resolve().parents[1].parent / "shared"
    path = Path(os.environ.get("OPENDR_FACE_SYNTH_SHARED", default))
    if not (path / "data").is_dir():
        pytest.skip(f"shared test data not found at {path} (set OPENDR_FACE_SYNTH_SHARED)")
    return path


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """scikit-image's public-domain astronaut (one frontal face), RGB uint8 512x512, read-only."""
    from skimage import data

    image = data.astronaut()
    image.setflags(write=False)
    return image
