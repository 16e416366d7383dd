"""Alignment to the canonical frame: the AU->mesh model's neutral face, frontal, in a unit square.

Pure geometry (no MediaPipe): a similarity fitted on points that expressions barely move takes
a mesh into the frame where control images are drawn and the model's face crops are cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paincontrol_lib import facemesh

# Points that expressions barely move (eye corners, nose bridge and tip, forehead, temples):
# the similarity alignment is fitted on them so an expression stays in the aligned mesh.
STABLE_POINTS = (33, 133, 263, 362, 6, 168, 197, 195, 5, 4, 1, 10, 151, 9, 8, 234, 454, 127, 356)


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * R x + t`` on 2D points (z scaled by ``scale``)."""

    scale: float
    angle: float  # radians
    tx: float
    ty: float

    @property
    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.array([[c, -s], [s, c]])

    def apply(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        out = points.copy()
        out[..., :2] = self.scale * points[..., :2] @ self.rotation.T + [self.tx, self.ty]
        if points.shape[-1] > 2:
            out[..., 2:] = self.scale * points[..., 2:]
        return out

    def inverse(self) -> Similarity:
        inv_rot = self.rotation.T
        t = -(inv_rot @ np.array([self.tx, self.ty])) / self.scale
        return Similarity(1.0 / self.scale, -self.angle, float(t[0]), float(t[1]))


def canonical_landmarks() -> np.ndarray:
    """The canonical frame: the AU->mesh model's neutral face, frontal, in a unit square.

    Framed like SynthPain (forehead-to-chin spans 0.6 of the height, face centred), so aligned
    landmarks times an image size are control-image coordinates.
    """
    from paincontrol_lib.au_to_mesh import default_model

    neutral = default_model().neutral * np.array([1.0, -1.0, 1.0])  # y down
    top, chin = neutral[facemesh.FOREHEAD_TOP], neutral[facemesh.CHIN]
    scale = 0.6 / (chin[1] - top[1])
    centre = 0.5 * (top + chin)
    return (neutral - centre) * scale + np.array([0.5, 0.5, 0.0])


def fit_similarity(source: np.ndarray, target: np.ndarray, points=STABLE_POINTS) -> Similarity:
    """The similarity mapping ``source`` landmarks onto ``target`` on ``points``."""
    idx = list(points)
    scale, rot, t = facemesh.similarity_fit(np.asarray(source)[idx], np.asarray(target)[idx])
    return Similarity(scale, float(np.arctan2(rot[1, 0], rot[0, 0])), float(t[0]), float(t[1]))


def align(landmarks: np.ndarray) -> tuple[np.ndarray, Similarity]:
    """Landmarks in the canonical frame and the transform that took them there
    (``transform.inverse().apply(aligned)`` gives the image coordinates back)."""
    transform = fit_similarity(landmarks, canonical_landmarks())
    return transform.apply(landmarks), transform


def aligned_crop(image: np.ndarray, transform: Similarity, size: int) -> np.ndarray:
    """The face warped into the canonical frame at ``size`` px (what the model is trained on)."""
    from PIL import Image

    inv = transform.inverse()
    a = inv.scale * inv.rotation / size
    coeffs = (a[0, 0], a[0, 1], inv.tx, a[1, 0], a[1, 1], inv.ty)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = tuple(int(v) for v in np.median(border, axis=0))  # outside the photo: its border colour
    warped = Image.fromarray(image).transform(
        (size, size),
        Image.Transform.AFFINE,
        coeffs,
        resample=Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return np.asarray(warped)
