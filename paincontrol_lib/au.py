"""Action-unit estimation backends, one py-feat-style table out (``AU01 … AU43`` + ``PSPI``).

- ``oracle``: the dataset's own FACS coding (SynthPain's ground truth, UNBC's FACS frames);
- ``mesh``: offline, from MediaPipe meshes: the expression displacement from the person's
  neutral mesh explained by the AU->mesh model (``au_geometry.estimate_aus``). Its per-AU error is
  measured against SynthPain's ground truth (:func:`validate_mesh_estimator`) and AUs it cannot
  estimate reliably are flagged (:data:`RELIABLE_ICC`);
- ``pyfeat``: py-feat's detector, when the user has its model weights; without them it stops at
  once and says what to download (nothing is fetched at run time).

FACS scale throughout: 0-5, AU43 0/1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paincontrol_lib.data.records import AU_COLUMNS
from paincontrol_lib.facs import BINARY_AUS, PAIN_AUS, pspi
from paincontrol_lib.stats import icc_3_1

RELIABLE_ICC = 0.75  # ICC(3,1) against ground truth below which an AU is marked unreliable


def _table(values: np.ndarray, index=None) -> pd.DataFrame:
    table = pd.DataFrame(values, columns=list(AU_COLUMNS), index=index)
    table["PSPI"] = pspi(table)
    return table


def oracle(records: pd.DataFrame) -> pd.DataFrame:
    """The dataset's own AU coding (missing AUs NaN) with PSPI."""
    missing = [au for au in PAIN_AUS if au not in records]
    if missing:
        raise ValueError(f"no ground-truth AUs {missing} in these records: use --au mesh")
    values = np.stack([records[a].to_numpy(float) if a in records else np.full(len(records), np.nan)
                       for a in AU_COLUMNS], axis=1)  # fmt: skip
    return _table(values, records.index)


def mesh_aus(meshes: np.ndarray, neutrals: np.ndarray) -> pd.DataFrame:
    """AU estimates for meshes (n, 478, 3) against each one's neutral mesh (n, 478, 3), any
    image frame. AUs outside the AU->mesh model stay NaN."""
    from paincontrol_lib.au_geometry import estimate_aus

    meshes, neutrals = np.asarray(meshes, float), np.asarray(neutrals, float)
    if meshes.shape != neutrals.shape or meshes.ndim != 3:
        raise ValueError(
            f"meshes {meshes.shape} and neutrals {neutrals.shape} must match (n,478,3)"
        )
    rows = []
    for mesh, neutral in zip(meshes, neutrals, strict=True):
        found = estimate_aus(mesh, neutral)
        rows.append([found.get(a, np.nan) for a in AU_COLUMNS])
    return _table(np.array(rows).reshape(-1, len(AU_COLUMNS)))


def validate_mesh_estimator(table: pd.DataFrame, aus=PAIN_AUS) -> pd.DataFrame:
    """Per-AU MAE, ICC(3,1) and reliability of the ``mesh`` backend against ground truth, on a
    landmark table with AU columns and neutral reference frames (SynthPain)."""
    table = table[table["detected"]]
    neutral = (
        table[table["neutral_reference"]]
        .drop_duplicates("subject")
        .set_index("subject")["landmarks"]
    )
    table = table[table["subject"].isin(neutral.index)]
    meshes = np.stack([np.asarray(m, float).reshape(-1, 3) for m in table["landmarks"]])
    neutrals = np.stack([np.asarray(neutral[s], float).reshape(-1, 3) for s in table["subject"]])
    estimate = mesh_aus(meshes, neutrals)
    rows = []
    for au in (*aus, "PSPI"):
        truth, est = table[au].to_numpy(float), estimate[au].to_numpy(float)
        icc = icc_3_1(truth, est)
        rows.append({"au": au, "mae": float(np.nanmean(np.abs(truth - est))), "icc": icc,
                     "reliable": bool(icc is not None and icc >= RELIABLE_ICC),
                     "n": int(np.isfinite(truth).sum())})  # fmt: skip
    return pd.DataFrame(rows).set_index("au")


# py-feat: its detector's AU outputs are 0-1 (probabilities or intensities) named AU01 ... AU43.
# Its weights live on the Hugging Face hub (downloaded on first use, which we never allow).
PYFEAT_REPOS = ("py-feat/retinaface_r34", "py-feat/mobilefacenet", "py-feat/xgb_au")


def from_pyfeat(fex: pd.DataFrame) -> pd.DataFrame:
    """py-feat ``Fex`` output (AU columns on a 0-1 scale) -> our FACS table (0-5; AU43 present
    at probability >= 0.5). AUs py-feat does not report stay NaN."""
    values = np.full((len(fex), len(AU_COLUMNS)), np.nan)
    found = False
    for j, au in enumerate(AU_COLUMNS):
        if au in fex:
            found = True
            col = fex[au].to_numpy(float)
            values[:, j] = (
                (col >= 0.5).astype(float) if au in BINARY_AUS else np.clip(col, 0, 1) * 5
            )
    if not found:
        raise ValueError(
            f"no AU columns in this py-feat output (columns: {list(fex.columns)[:8]}…)"
        )
    return _table(values, fex.index)


class PyFeatAU:
    """py-feat's AU detector on image files, if its weights are already on this machine."""

    def __init__(self):
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"  # never download at run time
        import torch
        from feat import Detectorv1

        grad = torch.is_grad_enabled()  # py-feat's constructor can leave autograd switched off
        try:
            self.detector = Detectorv1(face_model="retinaface", landmark_model="mobilefacenet",
                                     au_model="xgb", emotion_model=None, identity_model=None,
                                     gaze_model=None, device="cpu")  # fmt: skip
        except Exception as exc:  # py-feat raises hub/OS errors of several kinds when offline
            raise FileNotFoundError(
                f"py-feat AU backend: its model weights are not on this machine ({exc}). "
                f"Download {', '.join(PYFEAT_REPOS)} from the Hugging Face hub into the hub "
                "cache (e.g. `huggingface-cli download py-feat/xgb_au`) on a machine with "
                "internet, or use the offline 'mesh' backend."
            ) from exc
        finally:
            torch.set_grad_enabled(grad)

    def __call__(self, paths) -> pd.DataFrame:
        return from_pyfeat(self.detector.detect(list(map(str, paths)), data_type="image"))


def estimate(backend: str, **inputs) -> pd.DataFrame:
    """``oracle`` (records=), ``mesh`` (meshes=, neutrals=) or ``pyfeat`` (paths=)."""
    if backend == "oracle":
        return oracle(inputs["records"])
    if backend == "mesh":
        return mesh_aus(inputs["meshes"], inputs["neutrals"])
    if backend == "pyfeat":
        return PyFeatAU()(inputs["paths"])
    raise ValueError(f"AU backend {backend!r}: expected oracle, mesh or pyfeat")
