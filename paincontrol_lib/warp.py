"""Warp a face image so that one mesh lands on another (piecewise-affine).

The ``warp`` transfer baseline, and the start PainControl's sampler denoises from: the target's
photo already wearing the requested geometry, so the diffusion model adds what a warp cannot
(closed lids, teeth, wrinkles) instead of having to move the whole face.
"""

from __future__ import annotations

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.landmarks.image import as_rgb_uint8


def warp_to(image: np.ndarray, source_mesh: np.ndarray, target_mesh: np.ndarray) -> np.ndarray:
    """``image`` warped piecewise-affinely so that ``source_mesh`` (pixels) lands on
    ``target_mesh``; the image border is pinned so the background stays put.

    The backward map is linear inside each Delaunay triangle of the target points (the same
    triangulation and map as skimage's ``PiecewiseAffineTransform``), evaluated once per pixel
    and applied with ``cv2.remap``: ~5 ms instead of ~0.8 s per 128 px image.
    """
    import cv2
    from scipy.interpolate import LinearNDInterpolator

    image = as_rgb_uint8(image)
    h, w = image.shape[:2]
    frame = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1],
                      [w / 2, 0], [w / 2, h - 1], [0, h / 2], [w - 1, h / 2]], float)  # fmt: skip
    points = slice(0, facemesh.N_MESH_POINTS)  # iris points sit inside the eye triangles
    src = np.vstack([source_mesh[points, :2], frame])
    dst = np.vstack([target_mesh[points, :2], frame])
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("could not fit the piecewise-affine warp: a mesh has non-finite points")
    # Output pixel (target mesh frame) -> input pixel (source mesh frame).
    yy, xx = np.mgrid[0:h, 0:w]
    grid = np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)
    backward = LinearNDInterpolator(dst, src)(grid).reshape(h, w, 2).astype(np.float32)
    if np.isnan(backward).any():
        raise ValueError("could not fit the piecewise-affine warp: pixels outside the mesh hull")
    return cv2.remap(image, backward[..., 0], backward[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
