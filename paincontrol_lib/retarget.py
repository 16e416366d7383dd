"""Expression retargeting in landmark space: what the target's face should look like.

All work happens in the canonical frame of ``landmarks.align`` (unit square, y down, faces
normalised for position, size and in-plane rotation), where control images are drawn.

- ``delta``: the source's expression displacement (expression mesh - neutral mesh), scaled by
  the ratio of the two faces' inter-ocular distances, added to the target's neutral mesh;
- ``au``: the source's AUs estimated from that displacement (``au_basis.estimate_aus``:
  bounded least squares on the AU->mesh model's FACS basis, offline, no AU-detector weights),
  then the target's expression synthesised as target neutral + the AU displacements;
- ``explicit``: AU intensities (``"AU4=3,AU43=1"``) or a PSPI level asked for directly.

Every mode returns the target's expression mesh and its control image. Eyelid and lip pairs
that would cross are collapsed to a closed line, as in SynthPain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from paincontrol_lib.au_basis import (
    FLIP_Y,
    canonical_basis,
    canonical_mesh,
    canonical_neutral,
    canonical_scale,
    estimate_aus,
    iod_ratio,
)
from paincontrol_lib.facs import BINARY_AUS, PAIN_AUS, pspi
from paincontrol_lib.landmarks.control import render_control

MODES = ("delta", "au", "explicit")


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


def _close(aligned: np.ndarray) -> np.ndarray:
    """Collapse crossed lid and lip pairs (done in the AU model's y-up frame and units)."""
    from paincontrol_lib.au_to_mesh import close_crossed_pairs

    scale = canonical_scale()
    return close_crossed_pairs(aligned * FLIP_Y / scale) * FLIP_Y * scale


def au_displacement(aus: dict[str, float]) -> np.ndarray:
    """Canonical-frame displacement (478, 3) of FACS intensities ``{"AU04": 3, ...}``."""
    columns, basis = canonical_basis()
    unknown = set(aus) - set(columns)
    if unknown:
        raise ValueError(f"AUs not in the AU->mesh model: {sorted(unknown)} (known: {columns})")
    facs = np.array([float(aus.get(a, 0.0)) for a in columns])
    return np.tensordot(facs, basis, axes=([0], [0]))


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
    target = canonical_mesh(target_neutral, "target neutral")
    if mode == "explicit":
        if aus is None:
            raise ValueError("explicit mode needs AUs, e.g. AU4=3,AU43=1")
        wanted = parse_aus(aus) if isinstance(aus, str) else dict(aus)
        mesh = target + au_displacement(wanted) * iod_ratio(target, canonical_neutral())
    else:
        if source is None or source_neutral is None:
            raise ValueError(f"{mode} mode needs the source expression and the source's neutral")
        wanted = estimate_aus(source, source_neutral)  # delta: for the prompt and records
        if mode == "delta":
            s = canonical_mesh(source, "source")
            n = canonical_mesh(source_neutral, "source neutral")
            mesh = target + (s - n) * iod_ratio(target, n)
        else:
            mesh = target + au_displacement(wanted) * iod_ratio(target, canonical_neutral())
    mesh = _close(mesh)
    return Retargeted(mesh, render_control(mesh * size, size), wanted, mode)
