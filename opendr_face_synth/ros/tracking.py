"""Track ids for face boxes across camera frames (the engine itself does not track).

Greedy association between the previous boxes of live tracks and the current detections: a pair
matches when the boxes overlap enough (IoU) or, for fast motion or jittery boxes, when the centres are
closer than a fraction of the face size and the sizes are similar. Best pairs are taken first. A track
missed in more than ``max_missed`` consecutive processed frames, or not seen for ``max_age_s`` seconds,
is forgotten; a face that comes back later gets a new id. Counting processed frames (not only time)
keeps ids stable when the device processes far fewer frames per second than the camera sends.
Ids start at 1 (0 means "no track" in the messages) and are never reused within a run.
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 for empty boxes)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre_distance(a: Box, b: Box) -> float:
    """Centre distance in units of the mean box side."""
    side = ((a[2] - a[0]) + (a[3] - a[1]) + (b[2] - b[0]) + (b[3] - b[1])) / 4.0
    if side <= 0:
        return float("inf")
    dx = (a[0] + a[2] - b[0] - b[2]) / 2.0
    dy = (a[1] + a[3] - b[1] - b[3]) / 2.0
    return (dx * dx + dy * dy) ** 0.5 / side


def _size_ratio(a: Box, b: Box) -> float:
    sa = max(a[2] - a[0], a[3] - a[1])
    sb = max(b[2] - b[0], b[3] - b[1])
    return min(sa, sb) / max(sa, sb) if max(sa, sb) > 0 else 0.0


@dataclass
class _Track:
    track_id: int
    box: Box
    last_seen: float
    missed: int = 0


class FaceTracker:
    """Assigns stable ids to face boxes over a sequence of frames (one ``update`` per processed frame)."""

    def __init__(
        self, min_iou: float = 0.3, max_centre_distance: float = 0.6, max_age_s: float = 10.0, max_missed: int = 5
    ) -> None:
        if not 0.0 <= min_iou <= 1.0:
            raise ValueError(f"min_iou {min_iou} is not in [0, 1]")
        if max_age_s < 0:
            raise ValueError(f"max_age_s {max_age_s} is negative")
        self.min_iou = min_iou
        self.max_centre_distance = max_centre_distance
        self.max_age_s = max_age_s
        self.max_missed = max_missed
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def active_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def reset(self) -> None:
        self._tracks.clear()

    def update(self, boxes: list[Box], stamp_s: float) -> list[int]:
        """Ids for ``boxes`` (same order) seen at time ``stamp_s`` (seconds, the frame's stamp)."""
        # abs(): a clock that jumps back (a looping bag) ages tracks instead of keeping them forever.
        self._tracks = [
            t for t in self._tracks if abs(stamp_s - t.last_seen) <= self.max_age_s and t.missed <= self.max_missed
        ]
        candidates: list[tuple[float, int, int]] = []
        for ti, track in enumerate(self._tracks):
            for bi, box in enumerate(boxes):
                overlap = iou(track.box, box)
                if overlap >= self.min_iou and overlap > 0:
                    candidates.append((1.0 + overlap, ti, bi))  # overlap beats centre distance
                    continue
                dist = _centre_distance(track.box, box)
                if dist <= self.max_centre_distance and _size_ratio(track.box, box) >= 0.5:
                    candidates.append((1.0 - dist / (self.max_centre_distance + 1e-9), ti, bi))
        candidates.sort(key=lambda c: -c[0])
        ids: list[int | None] = [None] * len(boxes)
        used_tracks: set[int] = set()
        for _, ti, bi in candidates:
            if ti in used_tracks or ids[bi] is not None:
                continue
            used_tracks.add(ti)
            track = self._tracks[ti]
            track.box = boxes[bi]
            track.last_seen = stamp_s
            track.missed = 0
            ids[bi] = track.track_id
        for ti, track in enumerate(self._tracks):
            if ti not in used_tracks:
                track.missed += 1
        for bi, box in enumerate(boxes):
            if ids[bi] is None:
                track = _Track(self._next_id, box, stamp_s)
                self._next_id += 1
                self._tracks.append(track)
                ids[bi] = track.track_id
        return [int(i) for i in ids if i is not None]
