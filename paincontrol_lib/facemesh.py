"""MediaPipe 478-point face-mesh topology and the geometric measures built on it.

Bottom layer: pure numpy on ``(..., 478, 2|3)`` arrays, used by the SynthPain renderer, the
landmark stage and every evaluation. Coordinates are image coordinates (x right, y down) unless
a function says otherwise. "Right"/"left" follow MediaPipe: the subject's own side, so the
subject's right eye (index 33) is on the image's left in a frontal face.
"""

from __future__ import annotations

import collections
import functools
import itertools

import numpy as np

N_POINTS = 478
N_MESH_POINTS = 468  # without the 10 refined iris points

# Key indices (MediaPipe canonical numbering).
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473
RIGHT_IRIS_RING = (469, 470, 471, 472)
LEFT_IRIS_RING = (474, 475, 476, 477)
FOREHEAD_TOP, CHIN = 10, 152
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
NOSE_TIP = 1
RIGHT_INNER_BROW = (107, 55)  # upper and lower brow line, medial end
LEFT_INNER_BROW = (336, 285)

# Eyelid margins as (upper, lower) vertex pairs, medial-lateral order is irrelevant.
RIGHT_EYE_PAIRS = ((246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155))
LEFT_EYE_PAIRS = (
    (466, 249),
    (388, 390),
    (387, 373),
    (386, 374),
    (385, 380),
    (384, 381),
    (398, 382),
)
INNER_LIP_PAIRS = (
    (191, 95),
    (80, 88),
    (81, 178),
    (82, 87),
    (13, 14),
    (312, 317),
    (311, 402),
    (310, 318),
    (415, 324),
)
# Brow lines, lateral -> medial.
RIGHT_BROW_UPPER = (70, 63, 105, 66, 107)
RIGHT_BROW_LOWER = (46, 53, 52, 65, 55)
LEFT_BROW_UPPER = (300, 293, 334, 296, 336)
LEFT_BROW_LOWER = (276, 283, 282, 295, 285)


def _connections():
    # Imported lazily: mediapipe is heavy and only its constant tables are needed here.
    from mediapipe.python.solutions import face_mesh_connections

    return face_mesh_connections


@functools.cache
def triangles() -> np.ndarray:
    """The 852 triangles of MediaPipe's tessellation, wound counter-clockwise seen from the front.

    The published tessellation is an edge list; its 3-cliques give 854 triangles, two of which
    are false (every edge of them is shared by three triangles). Winding is made consistent by a
    breadth-first pass over shared edges and oriented so that normals face the camera (+z) for
    the canonical frontal mesh (x right, y up).
    """
    edges = {tuple(sorted(e)) for e in _connections().FACEMESH_TESSELATION}
    neighbours = collections.defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    cliques = {tuple(sorted((a, b, c))) for a, b in edges for c in neighbours[a] & neighbours[b]}
    edge_use = collections.Counter(e for t in cliques for e in itertools.combinations(t, 2))
    tris = sorted(
        t for t in cliques if not all(edge_use[e] >= 3 for e in itertools.combinations(t, 2))
    )
    oriented = _orient_consistently([list(t) for t in tris])
    return np.asarray(oriented, dtype=np.int32)


def _orient_consistently(tris: list[list[int]]) -> list[list[int]]:
    by_edge = collections.defaultdict(list)
    for i, t in enumerate(tris):
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            by_edge[frozenset((a, b))].append(i)
    done = [False] * len(tris)
    for start in range(len(tris)):
        if done[start]:
            continue
        done[start] = True
        queue = collections.deque([start])
        while queue:
            i = queue.popleft()
            t = tris[i]
            for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
                for j in by_edge[frozenset((a, b))]:
                    if done[j]:
                        continue
                    u = tris[j]
                    directed = {(u[0], u[1]), (u[1], u[2]), (u[2], u[0])}
                    if (a, b) in directed:  # same direction as ours: flip the neighbour
                        tris[j] = [u[0], u[2], u[1]]
                    done[j] = True
                    queue.append(j)
    return tris


def orient_front_facing(tris: np.ndarray, vertices_y_up: np.ndarray) -> np.ndarray:
    """Flip the whole triangle list if most triangles face away from +z for these vertices."""
    v = vertices_y_up
    n = np.cross(v[tris[:, 1]] - v[tris[:, 0]], v[tris[:, 2]] - v[tris[:, 0]])
    return tris if (n[:, 2] > 0).mean() >= 0.5 else tris[:, [0, 2, 1]]


@functools.cache
def boundary_loops() -> dict[str, np.ndarray]:
    """Ordered open-boundary loops of the tessellation: ``face_oval``, ``inner_lips``,
    ``right_eye`` and ``left_eye`` (the eye and mouth holes that the renderer looks through)."""
    tris = triangles()
    use = collections.Counter(
        tuple(sorted(e)) for t in tris for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))
    )
    nxt = collections.defaultdict(list)
    for (a, b), n in use.items():
        if n == 1:
            nxt[a].append(b)
            nxt[b].append(a)
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            step = [v for v in nxt[cur] if v != prev]
            if not step or step[0] == start:
                break
            prev, cur = cur, step[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(np.asarray(loop, dtype=np.int32))
    named = {}
    for loop in loops:
        members = set(loop.tolist())
        for name, key in (
            ("face_oval", FOREHEAD_TOP),
            ("inner_lips", UPPER_INNER_LIP),
            ("right_eye", RIGHT_EYE_OUTER),
            ("left_eye", LEFT_EYE_OUTER),
        ):
            if key in members:
                named[name] = loop
    return named


def _paths(connection_set) -> list[np.ndarray]:
    """Turn an unordered set of (a, b) connections into ordered polylines."""
    nxt = collections.defaultdict(list)
    for a, b in connection_set:
        nxt[a].append(b)
        nxt[b].append(a)
    ends = [v for v, n in nxt.items() if len(n) == 1]
    seen_edges, paths = set(), []
    for start in ends + list(nxt):
        for first in nxt[start]:
            if frozenset((start, first)) in seen_edges:
                continue
            path, prev, cur = [start], start, first
            seen_edges.add(frozenset((start, first)))
            path.append(cur)
            while True:
                step = [v for v in nxt[cur] if v != prev and frozenset((cur, v)) not in seen_edges]
                if not step:
                    break
                seen_edges.add(frozenset((cur, step[0])))
                prev, cur = cur, step[0]
                path.append(cur)
                if cur == start:
                    break
            paths.append(np.asarray(path, dtype=np.int32))
    return paths


@functools.cache
def region_paths() -> dict[str, tuple[np.ndarray, ...]]:
    """Ordered polylines per facial region (for drawing control images), left/right separate."""
    c = _connections()
    sets = {
        "face_oval": c.FACEMESH_FACE_OVAL,
        "right_brow": c.FACEMESH_RIGHT_EYEBROW,
        "left_brow": c.FACEMESH_LEFT_EYEBROW,
        "right_eye": c.FACEMESH_RIGHT_EYE,
        "left_eye": c.FACEMESH_LEFT_EYE,
        "right_iris": c.FACEMESH_RIGHT_IRIS,
        "left_iris": c.FACEMESH_LEFT_IRIS,
        "lips": c.FACEMESH_LIPS,
        "nose": c.FACEMESH_NOSE,
    }
    return {name: tuple(_paths(s)) for name, s in sets.items()}


# ---------------------------------------------------------------------------------------------
# Measures. All take (..., 478, >=2) arrays in image coordinates and are scale-free (divided by
# the inter-ocular distance) so they compare across image sizes and faces.


def inter_ocular(lm: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (33, 263): the NME normaliser used throughout."""
    lm = np.asarray(lm)
    return np.linalg.norm(lm[..., RIGHT_EYE_OUTER, :2] - lm[..., LEFT_EYE_OUTER, :2], axis=-1)


def nme(pred: np.ndarray, target: np.ndarray, n_points: int = N_MESH_POINTS) -> np.ndarray:
    """Mean point-to-point error over the first ``n_points`` points divided by the target's
    inter-ocular distance (the 468 mesh points by default; the iris points are refinements)."""
    pred, target = np.asarray(pred), np.asarray(target)
    err = np.linalg.norm(pred[..., :n_points, :2] - target[..., :n_points, :2], axis=-1)
    return err.mean(axis=-1) / inter_ocular(target)


def _face_frame(lm: np.ndarray):
    """Unit vectors along the eye line (x) and perpendicular to it pointing down the face (y)."""
    ex = lm[..., LEFT_EYE_OUTER, :2] - lm[..., RIGHT_EYE_OUTER, :2]
    ex = ex / np.linalg.norm(ex, axis=-1, keepdims=True)
    ey = np.stack([-ex[..., 1], ex[..., 0]], axis=-1)
    return ex, ey


def _gap(lm: np.ndarray, pairs) -> np.ndarray:
    """Mean signed distance lower-minus-upper along the face's downward axis."""
    lm = np.asarray(lm, dtype=np.float64)
    _, ey = _face_frame(lm)
    up = np.stack([lm[..., u, :2] for u, _ in pairs], axis=-2)
    lo = np.stack([lm[..., v, :2] for _, v in pairs], axis=-2)
    return ((lo - up) * ey[..., None, :]).sum(-1).mean(-1) / inter_ocular(lm)


def eye_opening(lm: np.ndarray) -> np.ndarray:
    """Mean lid aperture of both eyes (central three lid pairs), in inter-ocular units."""
    central = RIGHT_EYE_PAIRS[2:5] + LEFT_EYE_PAIRS[2:5]
    return _gap(lm, central)


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """Inner-lip aperture at the central three lip pairs, in inter-ocular units."""
    return _gap(lm, INNER_LIP_PAIRS[3:6])


def brow_height(lm: np.ndarray) -> np.ndarray:
    """Height of the inner brows above the eye line, in inter-ocular units.

    Measured perpendicular to the line through the outer eye corners, averaged over the medial
    ends of both brows (upper and lower brow lines). AU4 lowers it; AU1 raises it.
    """
    lm = np.asarray(lm, dtype=np.float64)
    _, ey = _face_frame(lm)
    centre = 0.5 * (lm[..., RIGHT_EYE_OUTER, :2] + lm[..., LEFT_EYE_OUTER, :2])
    brows = np.stack([lm[..., i, :2] for i in RIGHT_INNER_BROW + LEFT_INNER_BROW], axis=-2)
    height = -((brows - centre[..., None, :]) * ey[..., None, :]).sum(-1).mean(-1)
    return height / inter_ocular(lm)


def expression_features(lm: np.ndarray) -> dict[str, np.ndarray]:
    """The three expression measures used to check that landmarks track the expression."""
    return {
        "eye_opening": eye_opening(lm),
        "mouth_opening": mouth_opening(lm),
        "brow_height": brow_height(lm),
    }


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity transform (Umeyama) mapping 2D ``src`` points onto ``dst``.

    Returns ``(scale, rotation 2x2, translation)`` so that ``dst ~ scale * src @ R.T + t``.
    """
    src = np.asarray(src, dtype=np.float64)[:, :2]
    dst = np.asarray(dst, dtype=np.float64)[:, :2]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.diag([1.0, d])
    rot = u @ fix @ vt
    scale = float((s * np.diag(fix)).sum() / a.var(0).sum())
    t = mu_d - scale * mu_s @ rot.T
    return scale, rot, t
