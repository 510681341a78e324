"""Sample inputs that ship with installed packages (no data files in this repository)."""

from __future__ import annotations

from pathlib import Path

import cv2


def astronaut_rgb():
    """scikit-image's public-domain astronaut photo (Eileen Collins), RGB uint8 512x512."""
    from skimage import data

    return data.astronaut()


def write_sample_folder(folder: str | Path) -> Path:
    """Write the bundled sample photo(s) into ``folder`` and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "astronaut.png"
    if not path.exists():
        cv2.imwrite(str(path), cv2.cvtColor(astronaut_rgb(), cv2.COLOR_RGB2BGR))
    return folder


if __name__ == "__main__":
    import sys

    print(write_sample_folder(sys.argv[1] if len(sys.argv) > 1 else "sample_input"))
