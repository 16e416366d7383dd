"""Control images: the dense mesh drawn in region colours (the ControlNet's condition), and
landmark dots for overlay figures.
"""

from __future__ import annotations

import collections
import functools

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.landmarks.image import as_rgb_uint8

# One colour per region, left and right different (RGB). The nose is drawn (AU9 wrinkles it;
# the public MediaPipe-face ControlNet leaves it out). The subject's right is the image's left.
CONTROL_COLOURS = {
    "tessellation": (70, 70, 70),
    "face_oval": (230, 230, 230),
    "nose": (40, 220, 40),
    "right_brow": (255, 90, 0),
    "left_brow": (255, 220, 0),
    "right_eye": (0, 110, 255),
    "left_eye": (0, 240, 220),
    "lips": (255, 0, 90),
    "right_iris": (255, 0, 255),
    "left_iris": (150, 60, 255),
}


def render_control(
    landmarks: np.ndarray,
    size: int | tuple[int, int],
    source_size: tuple[int, int] | None = None,
    supersample: int | None = None,
    tessellation: bool = True,
) -> np.ndarray:
    """Draw the dense mesh as a control image (RGB uint8) of ``size`` (int or (w, h)).

    ``landmarks`` are pixels of an image of ``source_size`` (w, h; default: ``size``), so a mesh
    found on a 512 px photo can be drawn at 64 px. Lines are drawn at ``supersample`` x and
    shrunk (default: enough for a 256 px canvas, 4x at 64 px), which keeps them legible.
    Irises are drawn only inside the eye opening: a closed eye shows no iris.
    """
    from PIL import Image, ImageDraw

    w, h = (size, size) if isinstance(size, int) else size
    sw, sh = source_size or (w, h)
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if lm.shape[0] != facemesh.N_POINTS or not np.isfinite(lm).all():
        raise ValueError(f"expected {facemesh.N_POINTS} finite landmarks, got {lm.shape}")
    k = supersample or max(2, -(-256 // min(w, h)))
    pts = lm * [w / sw * k, h / sh * k]
    width = max(1, int(round(k * min(w, h) / 96)))
    canvas = Image.new("RGB", (w * k, h * k), 0)
    draw = ImageDraw.Draw(canvas)
    if tessellation:
        for trail in _tessellation_trails():
            draw.line(pts[trail].ravel().tolist(), fill=CONTROL_COLOURS["tessellation"], width=1)
    paths = facemesh.region_paths()
    for region in ("face_oval", "nose", "right_brow", "left_brow", "right_eye", "left_eye", "lips"):
        for path in paths[region]:
            draw.line(pts[path].ravel().tolist(), fill=CONTROL_COLOURS[region], width=width)
    for eye, centre, ring in (
        ("right_eye", facemesh.RIGHT_IRIS_CENTER, facemesh.RIGHT_IRIS_RING),
        ("left_eye", facemesh.LEFT_IRIS_CENTER, facemesh.LEFT_IRIS_RING),
    ):
        radius = np.linalg.norm(pts[list(ring)] - pts[centre], axis=1).mean()
        iris = Image.new("RGB", canvas.size, 0)
        ImageDraw.Draw(iris).ellipse(
            [tuple(pts[centre] - radius), tuple(pts[centre] + radius)],
            fill=CONTROL_COLOURS[eye.replace("eye", "iris")],
        )
        opening = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(opening).polygon(
            [tuple(p) for p in pts[facemesh.boundary_loops()[eye]]], fill=255
        )
        canvas.paste(iris, (0, 0), opening)
    return np.asarray(canvas.resize((w, h), Image.Resampling.BOX))


@functools.cache
def _tessellation_trails() -> tuple[np.ndarray, ...]:
    """The mesh edges chained into few long polylines (one draw call each, not 1,300)."""
    tris = facemesh.triangles()
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    remaining = collections.defaultdict(set)
    for a, b in np.unique(np.sort(edges, axis=1), axis=0):
        remaining[a].add(b)
        remaining[b].add(a)
    trails = []
    for start in sorted(remaining):
        while remaining[start]:
            trail, cur = [start], start
            while remaining[cur]:
                nxt = min(remaining[cur])
                remaining[cur].discard(nxt)
                remaining[nxt].discard(cur)
                trail.append(nxt)
                cur = nxt
            trails.append(np.asarray(trail))
    return tuple(trails)


def draw_points(image: np.ndarray, landmarks: np.ndarray, colour=(255, 0, 0), radius: float = 1.0):
    """A copy of ``image`` with landmark dots drawn (for overlay figures)."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(as_rgb_uint8(image))
    draw = ImageDraw.Draw(canvas)
    for x, y in np.asarray(landmarks)[:, :2]:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=tuple(colour))
    return np.asarray(canvas)
