"""Action-unit estimation backends, one py-feat-style table out (``AU01 … AU43`` + ``PSPI``).

- ``oracle``: the dataset's own FACS coding (SynthPain's ground truth, UNBC's FACS frames);
- ``mesh``: offline, from MediaPipe meshes: the expression displacement from the person's
  neutral mesh explained by the AU->mesh model (``au_geometry.estimate_aus``);
- ``learned``: offline, the same meshes read by a regression trained on the dataset's training
  people (``au_model``), robust to generated-image degradations;
- ``pyfeat``: py-feat's detector, when the user has its model weights; without them it stops at
  once and says what to download (nothing is fetched at run time). :func:`backend_agreement`
  compares it with ``learned`` on the same images.

:func:`validate_backends` measures ``learned`` and ``mesh`` against ground truth on test people
and picks one per AU on validation people; AUs still below :data:`RELIABLE_ICC` are flagged.

FACS scale throughout: 0-5, AU43 0/1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paincontrol_lib.data.records import AU_COLUMNS
from paincontrol_lib.facs import BINARY_AUS, PAIN_AUS, pspi

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


def mesh_read(meshes: np.ndarray, neutrals: np.ndarray) -> pd.DataFrame:
    """:func:`mesh_aus` with NaN rows where either mesh is missing (no face found)."""
    meshes, neutrals = np.asarray(meshes, float), np.asarray(neutrals, float)
    found = np.isfinite(meshes).all((1, 2)) & np.isfinite(neutrals).all((1, 2))
    out = pd.DataFrame(np.nan, index=range(len(meshes)), columns=[*AU_COLUMNS, "PSPI"])
    if found.any():
        out.loc[found] = mesh_aus(meshes[found], neutrals[found]).to_numpy()
    return out


def validate_backends(reads, alphas, copies_grid) -> tuple:
    """Train and choose the ``learned`` estimator (``au_model.select_and_validate``), score the
    ``mesh`` backend on the same crops, and pick per AU the backend with the higher ICC on
    *degraded validation* crops (outputs are degraded). ``(learned model, report)``: the report
    is ``reports/metrics/au_estimator.json`` (test people; ``unreliable_aus``: ICC(3,1) of the
    chosen backend on degraded test crops below :data:`RELIABLE_ICC`)."""
    from paincontrol_lib.au_model import score_backend, select_and_validate

    model, report = select_and_validate(reads, alphas, copies_grid)
    split = reads.rows["split"].to_numpy()
    mesh_val = score_backend(reads, mesh_read, split == "val")
    mesh_test = score_backend(reads, mesh_read, split == "test")
    backend_per_au, chosen_icc = {}, {}
    for au in PAIN_AUS:
        learned, mesh = report["val"]["degraded"][au]["icc"], mesh_val["degraded"][au]["icc"]
        backend_per_au[au] = "mesh" if (mesh or -1) > (learned or -1) else "learned"
        chosen = mesh_test if backend_per_au[au] == "mesh" else report
        chosen_icc[au] = chosen["degraded"][au]["icc"]
    report.update(
        {
            "mesh_backend": mesh_test,
            "backend_per_au": backend_per_au,
            "backend_choice": "per AU, the higher ICC(3,1) on degraded val crops; PSPI derived",
            "reliable_icc": RELIABLE_ICC,
            "unreliable_aus": [
                au for au, icc in chosen_icc.items() if icc is None or icc < RELIABLE_ICC
            ],  # fmt: skip
        }
    )
    return model, report


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


def backend_agreement(a: pd.DataFrame, b: pd.DataFrame, aus=(*PAIN_AUS, "PSPI")) -> dict:
    """Two backends on the same images (e.g. ``pyfeat`` and ``learned`` on real data, where
    neither is ground truth): per AU, ICC(3,1) [CI], MAE and presence F1 of ``b`` against ``a``
    over the AUs both report."""
    from paincontrol_lib.au_model import agreement

    if len(a) != len(b):
        raise ValueError(f"backend tables have {len(a)} and {len(b)} rows: same images needed")
    shared = [
        au for au in aus if au in a and au in b and a[au].notna().any() and b[au].notna().any()
    ]
    if not shared:
        raise ValueError("the two backends report no AU in common")
    return agreement(a.reset_index(drop=True), b.reset_index(drop=True), shared)


def estimate(backend: str, **inputs) -> pd.DataFrame:
    """``oracle`` (records=), ``mesh`` (meshes=, neutrals=), ``learned`` (meshes=, neutrals=
    in unit crop coordinates, model= path of a stage-04 estimator) or ``pyfeat`` (paths=)."""
    if backend == "oracle":
        return oracle(inputs["records"])
    if backend == "mesh":
        return mesh_aus(inputs["meshes"], inputs["neutrals"])
    if backend == "learned":
        from paincontrol_lib.au_model import LearnedAU

        return LearnedAU.load(inputs["model"]).read(inputs["meshes"], inputs["neutrals"])
    if backend == "pyfeat":
        return PyFeatAU()(inputs["paths"])
    raise ValueError(f"AU backend {backend!r}: expected oracle, mesh, learned or pyfeat")
