"""Topology and named landmarks of mediapipe's 478-point face mesh.

mediapipe ships the mesh only as 2556 directed edges (``FACEMESH_TESSELATION``). Its 852 triangles are
the 3-cliques of the undirected edge graph, less two spurious 3-cycles that are not faces (each of
their edges would otherwise be shared by more than two triangles).
"""

from __future__ import annotations

from functools import cache

import numpy as np

# Landmark ids (image-left = the subject's right side on an unmirrored photo).
EYE_IMAGE_LEFT = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
EYE_IMAGE_RIGHT = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
NOSE_TIP = 1
MOUTH_IMAGE_LEFT = 61
MOUTH_IMAGE_RIGHT = 291
FOREHEAD_TOP = 10
CHIN = 152
# Mirror pairs used for the head's right axis: outer/inner eye corners, mouth corners, cheek edges,
# brow ends, jaw corners.
PAIRS_IMAGE_LEFT = (33, 133, 61, 234, 70, 172, 127)
PAIRS_IMAGE_RIGHT = (263, 362, 291, 454, 300, 397, 356)
CHEEK_EDGES = (234, 454)
# Outer rim of the face (FACEMESH_FACE_OVAL).
FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251,
             284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)
NUM_VERTICES = 478


def landmark_ids5() -> np.ndarray:
    """(5, 16) vertex ids whose means are the seed's five points (eyes, nose tip, mouth corners)."""
    k = len(EYE_IMAGE_LEFT)
    return np.array(
        [EYE_IMAGE_LEFT, EYE_IMAGE_RIGHT, (NOSE_TIP,) * k, (MOUTH_IMAGE_LEFT,) * k, (MOUTH_IMAGE_RIGHT,) * k],
        dtype=np.int64,
    )


def five_points(vertices: np.ndarray, ids5: np.ndarray) -> np.ndarray:
    """(5, D) means of the vertex groups in ``ids5`` (works for (N, D) numpy vertices)."""
    return vertices[ids5].mean(axis=1)


@cache
def _triangles_cached() -> bytes:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    neighbours: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        if a == b:
            continue
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    cliques = set()
    for a, nbrs in neighbours.items():
        for b in nbrs:
            if b <= a:
                continue
            for c in nbrs & neighbours[b]:
                if c > b:
                    cliques.add((a, b, c))
    tris = sorted(cliques)
    edge_use: dict[tuple[int, int], int] = {}
    for a, b, c in tris:
        for e in ((a, b), (b, c), (a, c)):
            edge_use[e] = edge_use.get(e, 0) + 1
    # A spurious 3-cycle separates the mesh: every one of its edges is used by three cliques.
    tris = [t for t in tris if not all(edge_use[e] > 2 for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])))]
    return np.asarray(_orient_consistently(np.asarray(tris, dtype=np.int64)), dtype=np.int64).tobytes()


def _orient_consistently(tris: np.ndarray) -> np.ndarray:
    """Flip triangles so that every shared edge is traversed in opposite directions (one orientation)."""
    tris = tris.copy()
    edge_to_tris: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tris):
        for k in range(3):
            a, b = int(t[k]), int(t[(k + 1) % 3])
            edge_to_tris.setdefault((min(a, b), max(a, b)), []).append(i)
    done = np.zeros(len(tris), dtype=bool)
    for seed in range(len(tris)):
        if done[seed]:
            continue
        done[seed] = True
        stack = [seed]
        while stack:
            i = stack.pop()
            t = tris[i]
            for k in range(3):
                a, b = int(t[k]), int(t[(k + 1) % 3])
                for j in edge_to_tris[(min(a, b), max(a, b))]:
                    if done[j]:
                        continue
                    u = tris[j]
                    # Same directed edge a->b in the neighbour means opposite orientation: flip it.
                    if any(int(u[m]) == a and int(u[(m + 1) % 3]) == b for m in range(3)):
                        tris[j] = u[[0, 2, 1]]
                    done[j] = True
                    stack.append(j)
    return tris


def face_mesh_triangles() -> np.ndarray:
    """(852, 3) int64 triangles of the 478-point mesh, consistently oriented."""
    return np.frombuffer(_triangles_cached(), dtype=np.int64).reshape(-1, 3).copy()


def boundary_vertices(triangles: np.ndarray) -> np.ndarray:
    """Vertex ids on the mesh's outer rim and hole rims (edges used by one triangle)."""
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [0, 2]]]), axis=1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(uniq[counts == 1])
