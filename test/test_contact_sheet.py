"""Contact sheets: geometry of the grid, the source crop in the first column, labels really drawn."""

from __future__ import annotations

import numpy as np

from opendr_face_synth.core.types import FaceDetection, HeadPose, View, ViewRequest
from opendr_face_synth.io.contact_sheet import BACKGROUND, ContactSheet, face_crop, label_height, view_label

TILE = 64


def _view(yaw: float | None, pitch: float | None, colour: tuple[int, int, int]) -> View:
    target = HeadPose(yaw if yaw is not None else 7.0, pitch if pitch is not None else -3.0)
    image = np.zeros((256, 256, 3), np.uint8)
    image[:] = colour
    return View(ViewRequest(yaw, pitch), target, image, np.full((256, 256), 255, np.uint8), achieved=target)


def _source() -> tuple[np.ndarray, FaceDetection]:
    source = np.zeros((400, 600, 3), np.uint8)
    source[100:200, 300:400] = (0, 0, 250)  # the "face": a blue square
    return source, FaceDetection(box=(300.0, 100.0, 400.0, 200.0), score=0.9)


def _sheet() -> ContactSheet:
    source, det = _source()
    sheet = ContactSheet(tile=TILE, max_rows=3)
    views = [_view(-30, None, (200, 0, 0)), _view(30, None, (0, 200, 0)), _view(None, 20, (200, 200, 0))]
    sheet.add_face(source, det, "img1", 0, HeadPose(7.0, -3.0), views)
    sheet.add_face(source, det, "img2", 0, HeadPose(1.0, 2.0), views[:2])
    sheet.add_face(source, det, "img3", 1, None, [], error="fit failed")
    sheet.add_face(source, det, "img4", 0, None, views)  # past max_rows: counted, not drawn
    return sheet


def test_grid_size_and_cells():
    sheet = _sheet()
    image = sheet.render()
    cell_h = TILE + label_height(TILE)
    assert image.shape == (3 * cell_h, 4 * TILE, 3) and image.dtype == np.uint8
    assert sheet.dropped_rows == 1
    # Row 0: source crop, then the views in order (tile centres show the view colours).
    centre = TILE // 2
    assert image[centre, centre].tolist() == [0, 0, 250]  # the face crop is centred on the box
    assert image[centre, TILE + centre].tolist() == [200, 0, 0]
    assert image[centre, 3 * TILE + centre].tolist() == [200, 200, 0]
    # Row 1 has only two views: its last cell stays background.
    assert (image[cell_h : cell_h + TILE, 3 * TILE :] == BACKGROUND).all()
    assert ContactSheet(tile=TILE).render() is None


def test_labels_are_drawn():
    sheet = _sheet()
    labelled, plain = sheet.render(labels=True), sheet.render(labels=False)
    cell_h = TILE + label_height(TILE)
    assert [len(row) for row in sheet.rows] == [4, 3, 2]
    for r in range(3):
        tiles = slice(r * cell_h, r * cell_h + TILE)
        bands = slice(r * cell_h + TILE, (r + 1) * cell_h)
        assert np.array_equal(labelled[tiles], plain[tiles])  # labels never cover the pictures
        assert (plain[bands] == BACKGROUND).all()
        for c in range(len(sheet.rows[r])):
            band = labelled[bands, c * TILE : (c + 1) * TILE]
            assert (band > 200).sum() > 20, f"no text in row {r} column {c}"


def test_view_labels_say_requested_and_achieved_angles():
    assert view_label(_view(30, None, (0, 0, 0))) == ("req y+30 p src", "got y+30 p-03")
    assert view_label(_view(None, -5, (0, 0, 0))) == ("req y src p-05", "got y+07 p-05")


def test_face_crop_pads_outside_the_image():
    source, _ = _source()
    crop = face_crop(source, (550.0, 350.0, 650.0, 450.0), TILE)  # box hanging over the bottom-right corner
    assert crop.shape == (TILE, TILE, 3)
    assert (crop[-2:, -2:] == BACKGROUND).all()  # outside the photo
    assert (crop[2, 2] == 0).all()  # inside the photo (black there)
