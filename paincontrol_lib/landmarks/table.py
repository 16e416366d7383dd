"""The landmark table: one row per record with its mesh, the image -> canonical transform and
its control image (written by ``batch.build_landmark_table``), read back here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.landmarks.align import Similarity

LANDMARK_TABLE = "landmarks.parquet"


def load_landmark_table(out_dir: str | Path):
    import os

    import pandas as pd

    path = Path(out_dir) / LANDMARK_TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the landmark stage (`dvc repro landmarks`)")
    table = pd.read_parquet(path)
    if "data_root" in table:  # images stored relative to the data root, it relative to out_dir
        table["image"] = [
            os.path.normpath(os.path.join(out_dir, root, image))
            for root, image in zip(table.pop("data_root"), table["image"], strict=True)
        ]
    return table


def row_transform(row) -> Similarity:
    """The image -> canonical similarity stored in a landmark-table row."""
    return Similarity(row.align_scale, row.align_angle, row.align_tx, row.align_ty)


def stack_landmarks(table, column: str = "landmarks") -> np.ndarray:
    """(n, 478, 3) array from a landmark-table column; rows without a face are NaN."""
    out = np.full((len(table), facemesh.N_POINTS, 3), np.nan)
    for i, value in enumerate(table[column]):
        if value is not None:
            out[i] = np.asarray(value).reshape(facemesh.N_POINTS, 3)
    return out


def landmark_metrics(table, seconds: float, raw_rate: float | None) -> dict:
    """``reports/metrics/landmarks.json``: detection, NME against ground truth where known,
    throughput of the stage and its ratio to raw MediaPipe measured in the same run."""
    detected = table["detected"].to_numpy(bool)
    nme = None
    if "landmarks_2d" in table and detected.any():
        truth = np.stack([np.asarray(v).reshape(-1, 2) for v in table["landmarks_2d"][detected]])
        found = stack_landmarks(table[detected])
        nme = float(facemesh.nme(found, truth).mean())
    rate = len(table) / seconds
    return {
        "n_images": int(len(table)),
        "detection_rate": float(detected.mean()),
        "nme": nme,
        "images_per_second": rate,
        "raw_mediapipe_images_per_second": raw_rate,
        "throughput_ratio_vs_mediapipe": rate / raw_rate if raw_rate else None,
        "errors": table.loc[~detected, "error"].value_counts().to_dict(),
    }


def mesh_of(row) -> np.ndarray:
    """A landmark-table row's MediaPipe mesh (478, 3), pixels."""
    return np.asarray(row["landmarks"], dtype=np.float64).reshape(-1, 3)


def neutral_row(table, subject: str):
    """The person's detected neutral reference frame (a clear error when there is none)."""
    rows = table[(table["subject"] == subject) & table["neutral_reference"] & table["detected"]]
    if rows.empty:
        raise ValueError(f"{subject} has no detected neutral reference frame")
    return rows.iloc[0]


def scoring_rows(table, subjects, seed: int):
    """Per person, the frame its identity is scored against: one no method receives. Methods get
    the person's neutral identity photo (``neutral_reference``); the scoring frame is a seeded
    random detected frame of another of the person's sequences (a near-copy of the photo from
    the same sequence would reward copying it), or of the same sequence when there is no other.
    People with a single detected frame have none (left out)."""
    import pandas as pd

    from paincontrol_lib.seeds import stream

    rng = stream("scoring_frames", seed)
    picked = []
    for subject in sorted(subjects):
        rows = table[(table["subject"] == subject) & table["detected"]]
        photo = rows[rows["neutral_reference"]]
        others = rows.drop(photo.index)
        elsewhere = others[~others["sequence"].isin(photo["sequence"])]
        pool = elsewhere if len(elsewhere) else others
        if len(pool):
            picked.append(pool.iloc[[int(rng.integers(len(pool)))]])
    return pd.concat(picked) if picked else table.head(0)
