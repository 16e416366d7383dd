"""Faces: one meshed face, from a file or from a landmark-table row."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paincontrol_lib.landmarks.align import Similarity, align, aligned_crop
from paincontrol_lib.landmarks.image import as_rgb_uint8, load_image
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.landmarks.table import mesh_of


class FaceNotFoundError(ValueError):
    """No face could be meshed in an input image."""


@dataclass
class Face:
    """A meshed face: image, MediaPipe mesh (pixels), canonical-frame mesh and the transform."""

    image: np.ndarray
    landmarks: np.ndarray
    aligned: np.ndarray
    transform: Similarity
    name: str = ""

    def crop(self, size: int) -> np.ndarray:
        """The face in the canonical frame at ``size`` px."""
        return aligned_crop(self.image, self.transform, size)


def read_face(source, mesher=None, name: str | None = None) -> Face:
    """Mesh one image (path or array); :class:`FaceNotFoundError` says which when none."""
    label = name or (str(source) if isinstance(source, str | Path) else "image")
    image = load_image(source) if isinstance(source, str | Path) else as_rgb_uint8(source)
    own = mesher is None
    mesher = mesher or FaceMesher()
    try:
        found = mesher(image)
    finally:
        if own:
            mesher.close()
    if not found.detected:
        raise FaceNotFoundError(f"{label}: MediaPipe found no face in this image")
    aligned, transform = align(found.landmarks)
    return Face(image, found.landmarks, aligned, transform, label)


def face_of(row) -> Face:
    """A :class:`Face` from a landmark-table row (its stored mesh; no re-meshing)."""
    landmarks = mesh_of(row)
    aligned, transform = align(landmarks)
    return Face(load_image(row["image"]), landmarks, aligned, transform, str(row["subject"]))
