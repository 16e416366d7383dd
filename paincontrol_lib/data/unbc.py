"""UNBC-McMaster Shoulder Pain Archive adapter (the licensed dataset; never redistributed).

Layout under the dataset root (some mirrors nest ``Frame_Labels`` twice, which is accepted)::

    Images/<subject>/<sequence>/<frame>.png
    Frame_Labels/FACS/<subject>/<sequence>/<frame>_facs.txt   rows "AU intensity"
    Frame_Labels/PSPI/<subject>/<sequence>/<frame>_facs.txt   one number
    AAM_landmarks/<subject>/<sequence>/<frame>_aam.txt        66 rows "x y"
    Sequence_Labels/{AFF,OPR,SEN,VAS}/<subject>/<sequence>.txt   (optional)

UNBC codes AU4, 6, 7, 9, 10, 12, 20, 25, 26 and 43; an AU missing from a frame's FACS file is
0, AUs outside that set are NaN (not coded).

Tolerances (what real mirrors contain):

- a frame whose PSPI file is missing gets PSPI computed from its FACS file (PSPI is defined by
  those AUs, :func:`paincontrol_lib.facs.pspi`); such rows are marked ``pspi_from_facs`` and
  counted in the landmark stage's metrics. A frame without a FACS file is an error.
- AAM points are checked against their image. A file with more than :data:`AAM_OUTSIDE_MAX`
  of its 66 points over :data:`AAM_MARGIN_PX` outside the image (diagnosed as swapped columns
  when "y x" would fit), without 66 "x y" rows, or beside an image that does not open is set
  aside, not guessed at: its frame is kept without AAM points (``aam_66`` None), the reason is
  in the frame's ``aam_problem`` column (empty for good files), and one warning gives their
  count and names the first (``paincontrol check --data`` lists them all).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.data.records import LayoutError, finish_records
from paincontrol_lib.facs import au_name, pspi

CODED_AUS = ("AU04", "AU06", "AU07", "AU09", "AU10", "AU12", "AU20", "AU25", "AU26", "AU43")
LAYOUT = __doc__.split("::", 1)[1].split("\n\n")[1]
AAM_OUTSIDE_MAX = 5  # points of 66 that may lie outside the image (faces cut by its edge)
AAM_MARGIN_PX = 2.0  # how far outside a point may lie before it counts
AAM_PROBLEMS_SHOWN = 3  # set-aside AAM files the warning names (the column has them all)


def _labels_dir(root: Path) -> Path:
    for candidate in (root / "Frame_Labels", root / "Frame_Labels" / "Frame_Labels"):
        if (candidate / "FACS").is_dir() and (candidate / "PSPI").is_dir():
            return candidate
    missing = root / "Frame_Labels" / ("FACS" if (root / "Frame_Labels").is_dir() else "")
    raise LayoutError("unbc", missing, LAYOUT)


def _read_numbers(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"unbc: cannot read {path}: {exc}") from exc
    try:
        return np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"unbc: {path} does not hold numbers ({exc})") from exc


def read_facs(path: Path) -> dict[str, float]:
    values = _read_numbers(path)
    if values.size % 2:
        raise ValueError(
            f"unbc: {path} should hold rows of 'AU intensity', found {values.size} numbers"
        )
    aus = dict.fromkeys(CODED_AUS, 0.0)
    for code, intensity in values.reshape(-1, 2):
        aus[au_name(int(code))] = float(intensity)
    return aus


def read_aam(path: Path) -> np.ndarray:
    values = _read_numbers(path)
    if values.size != 132:
        raise ValueError(f"unbc: {path} should hold 66 'x y' rows, found {values.size} numbers")
    return values.astype(np.float32)


def aam_problem(points: np.ndarray, aam_file: Path, image_file: Path) -> str:
    """Why AAM points cannot be used with their image (e.g. columns swapped); "" when they can."""
    from PIL import Image

    try:
        with Image.open(image_file) as image:
            width, height = image.size
    except OSError as exc:  # stage 01 reports the image itself as unreadable
        return f"unbc: {aam_file}: cannot be checked, its image {image_file} does not open ({exc})"

    def outside(xy: np.ndarray) -> int:
        x, y, m = xy[:, 0], xy[:, 1], AAM_MARGIN_PX
        return int(((x < -m) | (x > width - 1 + m) | (y < -m) | (y > height - 1 + m)).sum())

    xy = points.reshape(-1, 2)
    n = outside(xy)
    if n <= AAM_OUTSIDE_MAX:
        return ""
    hint = " (as 'y x' they would fit: columns swapped?)" if not outside(xy[:, ::-1]) else ""
    return (
        f"unbc: {aam_file}: {n} of {len(xy)} points lie outside the {width}x{height} image "
        f"{image_file}{hint}"
    )


def read_checked_aam(aam_file: Path, image_file: Path) -> tuple[np.ndarray | None, str]:
    """A frame's AAM points and "", or None and why the file was set aside."""
    try:
        points = read_aam(aam_file)
    except ValueError as exc:
        return None, str(exc)
    problem = aam_problem(points, aam_file, image_file)
    return (None if problem else points), problem


def records(root: Path, require_aam: bool = True) -> pd.DataFrame:
    root = Path(root)
    images_dir = root / "Images"
    if not images_dir.is_dir():
        raise LayoutError("unbc", images_dir, LAYOUT)
    labels = _labels_dir(root)
    aam_dir = root / "AAM_landmarks"
    if require_aam and not aam_dir.is_dir():
        raise LayoutError("unbc", f"{aam_dir} (pass require_aam=False to go without)", LAYOUT)
    images = sorted(images_dir.glob("*/*/*"))
    images = [p for p in images if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")]
    if not images:
        raise LayoutError("unbc", images_dir / "<subject>/<sequence>/<frame>.png", LAYOUT)
    rows = []
    for path in images:
        subject, sequence, stem = path.parent.parent.name, path.parent.name, path.stem
        rel = Path(subject) / sequence
        facs_file = labels / "FACS" / rel / f"{stem}_facs.txt"
        pspi_file = labels / "PSPI" / rel / f"{stem}_facs.txt"
        if not facs_file.is_file():
            raise LayoutError("unbc", facs_file, LAYOUT)
        aus = read_facs(facs_file)
        if pspi_file.is_file():
            pspi_value = _read_numbers(pspi_file)
            if pspi_value.size != 1:
                raise ValueError(f"unbc: {pspi_file} should hold one number")
            value = float(pspi_value[0])
        else:
            value = float(pspi(aus))
        digits = re.findall(r"\d+", stem)
        row = {
            "subject": subject,
            "sequence": f"{subject}/{sequence}",
            "frame": int(digits[-1]) if digits else 0,
            "image": str(path),
            **aus,
            "PSPI": value,
            "pspi_from_facs": not pspi_file.is_file(),
        }
        aam_file = aam_dir / rel / f"{stem}_aam.txt"
        if aam_file.is_file():
            row["aam_66"], row["aam_problem"] = read_checked_aam(aam_file, path)
        elif require_aam:
            raise LayoutError("unbc", aam_file, LAYOUT)
        else:
            row["aam_66"], row["aam_problem"] = None, ""
        rows.append(row)
    table = pd.DataFrame(rows)
    if table["pspi_from_facs"].any():
        print(
            f"unbc: {int(table['pspi_from_facs'].sum())} of {len(table)} frames have no PSPI "
            "file; their PSPI is computed from their FACS file"
        )
    set_aside = table.loc[table["aam_problem"] != "", "aam_problem"]
    if len(set_aside):
        _warn_set_aside(list(set_aside), len(table))
    for label in ("AFF", "OPR", "SEN", "VAS"):
        folder = root / "Sequence_Labels" / label
        if folder.is_dir():
            table[label.lower()] = [_sequence_label(folder, seq) for seq in table["sequence"]]
    return finish_records(table, "unbc")


def _warn_set_aside(problems: list[str], n_frames: int) -> None:
    """One warning with the count and the first few set-aside AAM files (the column has all)."""
    more = len(problems) - AAM_PROBLEMS_SHOWN
    warnings.warn(
        f"unbc: the AAM files of {len(problems)} of {n_frames} frames are set aside, the frames "
        "kept without AAM points (records' aam_problem column; `paincontrol check --data` lists "
        "them all): "
        + "; ".join(problems[:AAM_PROBLEMS_SHOWN])
        + (f"; and {more} more" if more > 0 else ""),
        stacklevel=3,
    )


def _sequence_label(folder: Path, sequence: str) -> float:
    path = folder / f"{sequence}.txt"
    if not path.is_file():
        return float("nan")
    values = _read_numbers(path)
    return float(values[0]) if values.size else float("nan")
