"""One record schema for every dataset and subject-level splits (the adapters build on them;
their registry, ``load_records``, is ``data.sources``).

A record table has one row per image with the columns in ``RECORD_COLUMNS``: where the image
is, who and which sequence/frame it shows, every AU of py-feat's 20-AU space (NaN where the
dataset did not code it), PSPI, the subject-level split and whether the frame is that subject's
neutral reference. Adapters may add columns of their own (``landmarks_2d`` for SynthPain's
ground truth, ``aam_66`` for UNBC's AAM points).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.facs import PAIN_AUS, au_name, pspi
from paincontrol_lib.seeds import stream

AU_COLUMNS = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43",
)  # fmt: skip
RECORD_COLUMNS = (
    "dataset", "subject", "sequence", "frame", "image", "split", "neutral_reference",
    *AU_COLUMNS, "PSPI",
)  # fmt: skip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class LayoutError(FileNotFoundError):
    """A dataset folder does not have the layout its adapter expects."""

    def __init__(self, dataset: str, missing: Path | str, expected: str):
        super().__init__(f"{dataset}: {missing} not found. Expected layout:\n{expected.strip()}")


def finish_records(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Fill in the schema: missing AU columns as NaN, PSPI from the AUs where not given,
    a neutral reference per subject, and the columns in schema order (extras after)."""
    out = frame.copy()
    out["dataset"] = dataset
    for col in AU_COLUMNS:
        if col not in out:
            out[col] = np.nan
    computed = pspi(out[list(PAIN_AUS)].astype(float))
    known = out[list(PAIN_AUS)].notna().all(axis=1).to_numpy()
    if "PSPI" not in out:
        out["PSPI"] = np.where(known, computed, np.nan)
    else:
        out["PSPI"] = (
            out["PSPI"]
            .astype(float)
            .fillna(pd.Series(np.where(known, computed, np.nan), index=out.index))
        )
    if "split" not in out:
        out["split"] = ""
    for col, default in (("sequence", None), ("frame", 0)):
        if col not in out:
            out[col] = out["subject"] if default is None else default
    out = out.sort_values(["subject", "sequence", "frame"], kind="stable").reset_index(drop=True)
    if "neutral_reference" not in out:
        out["neutral_reference"] = mark_neutral_references(out)
    extras = [c for c in out.columns if c not in RECORD_COLUMNS]
    return out[list(RECORD_COLUMNS) + extras]


def mark_neutral_references(records: pd.DataFrame) -> np.ndarray:
    """Per subject, the first frame without any coded AU (else with the lowest PSPI)."""
    aus = records[list(AU_COLUMNS)].fillna(0).to_numpy()
    activity = aus.sum(axis=1) + 100 * records["PSPI"].fillna(0).to_numpy()
    flags = np.zeros(len(records), bool)
    for _, idx in records.groupby("subject", sort=False).indices.items():
        flags[idx[np.argmin(activity[idx])]] = True  # argmin keeps the first of ties
    return flags


def subject_split(
    records: pd.DataFrame, test_fraction: float, seed: int, val_fraction: float = 0.0
) -> pd.Series:
    """``train``/``val``/``test`` per row, whole subjects at a time (seeded; at least one train
    and one test subject): ``val`` people are for every choice, ``test`` for final numbers."""
    subjects = np.array(sorted(records["subject"].unique()))
    if len(subjects) < 2:
        raise ValueError("a subject-independent split needs at least two subjects")
    rng = stream("subject_split", seed)
    n_test = min(max(1, int(round(test_fraction * len(subjects)))), len(subjects) - 1)
    n_val = min(int(round(val_fraction * len(subjects))), len(subjects) - 1 - n_test)
    order = rng.permutation(subjects)
    split = {s: "test" for s in order[:n_test]} | {s: "val" for s in order[n_test : n_test + n_val]}
    return records["subject"].map(lambda s: split.get(s, "train"))


def with_subject_split(
    records: pd.DataFrame, test_fraction: float, seed: int, val_fraction: float = 0.0
) -> pd.DataFrame:
    """``records`` with its own split kept, or (real data without one) split by subject here."""
    if (records["split"] != "").any():
        return records
    return records.assign(split=subject_split(records, test_fraction, seed, val_fraction))


def assert_subject_independent(*splits: pd.DataFrame) -> None:
    """Raise if any subject appears in more than one of the given tables."""
    seen: dict[str, int] = {}
    for k, table in enumerate(splits):
        for subject in set(table["subject"]):
            if subject in seen and seen[subject] != k:
                raise AssertionError(f"subject {subject!r} is in split {seen[subject]} and {k}")
            seen[subject] = k


def au_columns_of(frame: pd.DataFrame) -> dict[str, str]:
    """Map a table's AU-looking columns (``AU4``, ``au_04``, ``AU04_r``) to schema names."""
    found = {}
    for col in frame.columns:
        match = re.fullmatch(r"(?i)au[_ ]?0*(\d+)(?:_r|_int|_intensity)?", str(col).strip())
        if match:
            found[col] = au_name(match.group(1))
    return found


def parse_facs_code(code) -> dict[str, float]:
    """FACS notation to intensities: ``"4B+6C+7+43"`` -> AU04=2, AU06=3, AU07=1, AU43=1.

    Intensity letters A-E are 1-5; an AU without a letter counts as 1 (present). Laterality
    prefixes (L/R/U) are ignored.
    """
    out: dict[str, float] = {}
    if code is None or (isinstance(code, float) and np.isnan(code)):
        return out
    for token in re.split(r"[+,;\s]+", str(code).strip()):
        if not token:
            continue
        match = re.fullmatch(r"(?i)[LRUT]?(?:AU)?(\d+)([A-E])?", token)
        if not match:
            raise ValueError(f"cannot read FACS code {token!r} in {code!r}")
        letter = (match.group(2) or "A").upper()
        out[au_name(match.group(1))] = float("ABCDE".index(letter) + 1)
    return out


def list_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
