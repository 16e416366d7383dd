"""Expression retargeting in landmark space: what the target's face should look like.

All work happens in the canonical frame of ``landmarks.align`` (unit square, y down, faces
normalised for position, size and in-plane rotation), where control images are drawn.

- ``delta``: the source's expression displacement (expression mesh - neutral mesh), scaled by
  the ratio of the two faces' inter-ocular distances, added to the target's neutral mesh;
- ``au``: the source's AUs estimated from that displacement (bounded least squares on the
  AU->mesh model's FACS basis: offline, no AU-detector weights), then the target's expression
  synthesised as target neutral + the AU displacements;
- ``explicit``: AU intensities (``"AU4=3,AU43=1"``) or a PSPI level asked for directly.

Every mode returns the target's expression mesh and its control image. Eyelid and lip pairs
that would cross are collapsed to a closed line, as in SynthPain.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.facs import BINARY_AUS, PAIN_AUS, pspi
from paincontrol_lib.landmarks import align, render_control

MODES = ("delta", "au", "explicit")
RIDGE = 0.02  # of the mean squared AU field: the prior toward absent AUs in ``estimate_aus``
_FLIP_Y = np.array([1.0, -1.0, 1.0])


@dataclass
class Retargeted:
    """The target's expression: canonical-frame mesh, its control image and the AUs behind it
    (requested in ``explicit`` mode, estimated from the source in the others)."""

    aligned: np.ndarray  # (478, 3) canonical frame
    control: np.ndarray  # (size, size, 3) uint8
    aus: dict[str, float]
    mode: str

    @property
    def pspi(self) -> float:
        return pspi(self.aus)


def _aligned(mesh: np.ndarray, name: str) -> np.ndarray:
    mesh = np.asarray(mesh, dtype=np.float64)
    if mesh.shape[-2:] != (facemesh.N_POINTS, 3) or not np.isfinite(mesh).all():
        raise ValueError(
            f"{name}: expected a finite ({facemesh.N_POINTS}, 3) mesh, got {mesh.shape}"
        )
    return align(mesh)[0]


def _close(aligned: np.ndarray) -> np.ndarray:
    """Collapse crossed lid and lip pairs (done in the AU model's y-up frame and units)."""
    from paincontrol_lib.aumesh import close_crossed_pairs

    scale = _canonical_scale()
    return close_crossed_pairs(aligned * _FLIP_Y / scale) * _FLIP_Y * scale


@functools.cache
def _canonical_scale() -> float:
    """Canonical-frame units per AU-model unit (``landmarks.canonical_landmarks``)."""
    from paincontrol_lib.aumesh import default_model

    neutral = default_model().neutral * _FLIP_Y
    return float(0.6 / (neutral[facemesh.CHIN, 1] - neutral[facemesh.FOREHEAD_TOP, 1]))


@functools.cache
def _canonical_basis() -> tuple[tuple[str, ...], np.ndarray]:
    """The AU->mesh FACS basis (20, 478, 3) expressed in the canonical frame."""
    from paincontrol_lib.aumesh import default_model

    model = default_model()
    return model.au_columns, model.facs_basis * _FLIP_Y * _canonical_scale()


def au_displacement(aus: dict[str, float]) -> np.ndarray:
    """Canonical-frame displacement (478, 3) of FACS intensities ``{"AU04": 3, ...}``."""
    columns, basis = _canonical_basis()
    unknown = set(aus) - set(columns)
    if unknown:
        raise ValueError(f"AUs not in the AU->mesh model: {sorted(unknown)} (known: {columns})")
    facs = np.array([float(aus.get(a, 0.0)) for a in columns])
    return np.tensordot(facs, basis, axes=([0], [0]))


def _iod_ratio(target_neutral: np.ndarray, source_neutral: np.ndarray) -> float:
    return float(facemesh.inter_ocular(target_neutral) / facemesh.inter_ocular(source_neutral))


def estimate_aus(
    source: np.ndarray, source_neutral: np.ndarray, aus: tuple[str, ...] | None = None
) -> dict[str, float]:
    """FACS intensities whose AU->mesh displacement best explains ``source - source_neutral``
    (image-plane x, y; depth from a single image is unreliable), bounded to 0-5 (AU43 0-1)."""
    from scipy.optimize import lsq_linear

    columns, basis = _canonical_basis()
    use = [columns.index(a) for a in (aus or columns)]
    s, n = _aligned(source, "source"), _aligned(source_neutral, "source neutral")
    delta = (s - n)[:, :2] * _iod_ratio(_canonical(), n)  # to the model face's size
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


@functools.cache
def _canonical() -> np.ndarray:
    from paincontrol_lib.landmarks import canonical_landmarks

    return canonical_landmarks()


_AU_TERM = re.compile(r"^\s*AU\s*0*(\d+)\s*=\s*([0-9.]+)\s*$", re.IGNORECASE)


def parse_aus(text: str) -> dict[str, float]:
    """``"AU4=3,AU43=1"`` -> ``{"AU04": 3.0, "AU43": 1.0}`` (FACS 0-5; AU43 0 or 1)."""
    out = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        match = _AU_TERM.match(term)
        if not match:
            raise ValueError(f"{term!r}: expected AU<number>=<intensity>, e.g. AU4=3,AU43=1")
        au, value = f"AU{int(match.group(1)):02d}", float(match.group(2))
        limit = 1.0 if au in BINARY_AUS else 5.0
        if not 0 <= value <= limit:
            raise ValueError(f"{au}={value}: intensity must lie in [0, {limit:g}]")
        out[au] = value
    if not out:
        raise ValueError("no AUs given: expected e.g. AU4=3,AU43=1")
    return out


def aus_for_pspi(level: float) -> dict[str, float]:
    """A pain expression of PSPI ``level`` (0-16): eyes close (AU43) from level 8 up, the rest
    shared equally by brow lowering (AU4), orbital tightening (AU6, AU7) and levator
    contraction (AU9, AU10); ``pspi(aus_for_pspi(x)) == x``."""
    if not 0 <= level <= 16:
        raise ValueError(f"PSPI level {level} must lie in [0, 16]")
    closed = 1.0 if level >= 8 else 0.0
    each = (level - closed) / 3
    aus = dict.fromkeys(PAIN_AUS, each)
    aus["AU43"] = closed
    return aus


def retarget(
    mode: str,
    target_neutral: np.ndarray,
    source: np.ndarray | None = None,
    source_neutral: np.ndarray | None = None,
    aus: dict[str, float] | str | None = None,
    size: int = 64,
) -> Retargeted:
    """The target's expression mesh and control image (``size`` px) in one of ``MODES``.

    Meshes are MediaPipe's 478 points in any image frame; ``delta`` and ``au`` need the source
    expression and the source's neutral mesh, ``explicit`` needs ``aus`` (a mapping or text).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {MODES}")
    target = _aligned(target_neutral, "target neutral")
    if mode == "explicit":
        if aus is None:
            raise ValueError("explicit mode needs AUs, e.g. AU4=3,AU43=1")
        wanted = parse_aus(aus) if isinstance(aus, str) else dict(aus)
        mesh = target + au_displacement(wanted) * _iod_ratio(target, _canonical())
    else:
        if source is None or source_neutral is None:
            raise ValueError(f"{mode} mode needs the source expression and the source's neutral")
        wanted = estimate_aus(source, source_neutral)  # delta: for the prompt and records
        if mode == "delta":
            s, n = _aligned(source, "source"), _aligned(source_neutral, "source neutral")
            mesh = target + (s - n) * _iod_ratio(target, n)
        else:
            mesh = target + au_displacement(wanted) * _iod_ratio(target, _canonical())
    mesh = _close(mesh)
    return Retargeted(mesh, render_control(mesh * size, size), wanted, mode)
