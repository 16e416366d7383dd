"""The AU->mesh model in the canonical frame, and its inverse: AUs from a mesh displacement.

The canonical frame is ``landmarks.align``'s (unit square, y down, faces normalised for
position, size and in-plane rotation), where control images are drawn; the AU->mesh model
(``au_to_mesh``) works y up in its own units. Here its FACS basis is expressed in the canonical
frame, and ``estimate_aus`` inverts it: bounded least squares of a source's expression
displacement on that basis (offline, no AU-detector weights). Used by ``retarget`` (the ``au``
mode, and the AUs recorded for every mode) and by ``au`` (the ``mesh`` backend).
"""

from __future__ import annotations

import functools

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.au_to_mesh import default_model
from paincontrol_lib.facs import BINARY_AUS
from paincontrol_lib.landmarks.align import align, canonical_landmarks

RIDGE = 0.02  # of the mean squared AU field: the prior toward absent AUs in ``estimate_aus``
FLIP_Y = np.array([1.0, -1.0, 1.0])  # canonical frame (y down) <-> AU-model frame (y up)


def canonical_mesh(mesh: np.ndarray, name: str) -> np.ndarray:
    """A MediaPipe mesh (478, 3) in any image frame, checked, in the canonical frame."""
    mesh = np.asarray(mesh, dtype=np.float64)
    if mesh.shape[-2:] != (facemesh.N_POINTS, 3) or not np.isfinite(mesh).all():
        raise ValueError(
            f"{name}: expected a finite ({facemesh.N_POINTS}, 3) mesh, got {mesh.shape}"
        )
    return align(mesh)[0]


@functools.cache
def canonical_scale() -> float:
    """Canonical-frame units per AU-model unit (``landmarks.canonical_landmarks``)."""
    neutral = default_model().neutral * FLIP_Y
    return float(0.6 / (neutral[facemesh.CHIN, 1] - neutral[facemesh.FOREHEAD_TOP, 1]))


@functools.cache
def canonical_basis() -> tuple[tuple[str, ...], np.ndarray]:
    """The AU->mesh FACS basis (20, 478, 3) expressed in the canonical frame."""
    model = default_model()
    return model.au_columns, model.facs_basis * FLIP_Y * canonical_scale()


@functools.cache
def canonical_neutral() -> np.ndarray:
    """The AU->mesh model's neutral face in the canonical frame (cached; do not modify)."""
    return canonical_landmarks()


def iod_ratio(target_neutral: np.ndarray, source_neutral: np.ndarray) -> float:
    """Inter-ocular distance of ``target_neutral`` over that of ``source_neutral``."""
    return float(facemesh.inter_ocular(target_neutral) / facemesh.inter_ocular(source_neutral))


def estimate_aus(
    source: np.ndarray, source_neutral: np.ndarray, aus: tuple[str, ...] | None = None
) -> dict[str, float]:
    """FACS intensities whose AU->mesh displacement best explains ``source - source_neutral``
    (image-plane x, y; depth from a single image is unreliable), bounded to 0-5 (AU43 0-1)."""
    from scipy.optimize import lsq_linear

    columns, basis = canonical_basis()
    use = [columns.index(a) for a in (aus or columns)]
    s, n = canonical_mesh(source, "source"), canonical_mesh(source_neutral, "source neutral")
    delta = (s - n)[:, :2] * iod_ratio(canonical_neutral(), n)  # to the model face's size
    design = basis[use][:, :, :2].reshape(len(use), -1).T
    upper = np.array([1.0 if columns[k] in BINARY_AUS else 5.0 for k in use])
    # A light ridge toward "absent": overlapping AU fields (AU6/AU7, AU9/AU10...) otherwise
    # trade intensity between each other and leave small spurious activations.
    ridge = np.sqrt(RIDGE * np.mean(np.sum(design**2, axis=0))) * np.eye(len(use))
    fit = lsq_linear(
        np.vstack([design, ridge]),
        np.concatenate([delta.ravel(), np.zeros(len(use))]),
        bounds=(np.zeros(len(use)), upper),
    )
    return {columns[k]: float(v) for k, v in zip(use, fit.x, strict=True)}
