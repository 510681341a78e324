"""FaceTracker: stable ids for the same person across frames, new ids for new or long-lost people."""

from __future__ import annotations

import pytest

from opendr_face_synth.ros.tracking import FaceTracker, iou


def _box(x: float, y: float, side: float = 100.0) -> tuple[float, float, float, float]:
    return (x, y, x + side, y + side)


def test_iou() -> None:
    assert iou(_box(0, 0), _box(0, 0)) == pytest.approx(1.0)
    assert iou(_box(0, 0), _box(50, 0)) == pytest.approx(50 * 100 / (2 * 100 * 100 - 50 * 100))
    assert iou(_box(0, 0), _box(300, 0)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_same_people_keep_their_ids_while_moving() -> None:
    tracker = FaceTracker()
    ids0 = tracker.update([_box(100, 100), _box(400, 120)], 0.0)
    assert ids0 == [1, 2]
    for step in range(1, 20):  # both drift right 8 px per frame; the list order swaps on odd frames
        a, b = _box(100 + 8 * step, 100), _box(400 + 8 * step, 120 + step)
        boxes, expected = ([a, b], [1, 2]) if step % 2 == 0 else ([b, a], [2, 1])
        assert tracker.update(boxes, step * 0.033) == expected


def test_fast_motion_without_overlap_is_followed_by_centre_distance() -> None:
    tracker = FaceTracker(min_iou=0.3, max_centre_distance=0.6)
    tracker.update([_box(0, 0)], 0.0)
    assert tracker.update([_box(55, 0)], 0.1) == [1]  # IoU 0.29, centre 0.55 face widths away
    assert tracker.update([_box(300, 0)], 0.2) == [2]  # a jump of 2.5 face widths is someone else


def test_a_face_of_very_different_size_is_a_new_track() -> None:
    tracker = FaceTracker()
    tracker.update([_box(100, 100, 100)], 0.0)
    assert tracker.update([_box(120, 120, 30)], 0.1) == [2]


def test_missed_frames_and_age_forget_tracks_and_ids_are_never_reused() -> None:
    tracker = FaceTracker(max_missed=2, max_age_s=5.0)
    assert tracker.update([_box(0, 0)], 0.0) == [1]
    tracker.update([], 0.1)
    tracker.update([], 0.2)
    assert tracker.update([_box(0, 0)], 0.3) == [1]  # missed twice: kept
    for t in (0.4, 0.5, 0.6):
        tracker.update([], t)
    assert tracker.update([_box(0, 0)], 0.7) == [2]  # missed three times: forgotten
    assert tracker.update([_box(0, 0)], 10.0) == [3]  # not seen for more than max_age_s
    assert tracker.update([_box(0, 0)], 10.1) == [3]


def test_a_clock_jumping_back_ages_tracks() -> None:
    tracker = FaceTracker(max_age_s=1.0)
    tracker.update([_box(0, 0)], 100.0)
    assert tracker.update([_box(0, 0)], 5.0) == [2]


def test_one_box_is_never_given_two_tracks_and_vice_versa() -> None:
    tracker = FaceTracker()
    tracker.update([_box(0, 0), _box(30, 0)], 0.0)  # two overlapping faces
    ids = tracker.update([_box(5, 0), _box(35, 0), _box(500, 0)], 0.1)
    assert ids[:2] == [1, 2] and ids[2] == 3 and len(set(ids)) == 3


def test_invalid_settings() -> None:
    with pytest.raises(ValueError, match="min_iou"):
        FaceTracker(min_iou=1.5)
    with pytest.raises(ValueError, match="max_age_s"):
        FaceTracker(max_age_s=-1)
