"""Delaware Pain Database adapter: a folder of photographs plus a CSV of AU codes.

Layout under the dataset root::

    <any sub-folders>/<image files>
    <one .csv file> (or pass labels=..., relative to the root) separated by "," or, as European
    spreadsheets export it, ";" (then "," is the decimal mark; tab works too), with
      an image column   (image | filename | file | image_name), relative to the root or a bare name,
      optionally a subject column (subject | id | participant | identity | person),
      AUs as columns (AU4, AU04, au_04 ...: intensities 0-5 or 0/1)
      or as FACS codes in one column (aus | facs | au_codes: "4B+6C+7B+43").

AUs not listed for an image are 0 (the photographs are fully FACS-coded). Without a subject
column, the subject is the part of the file name before the first "_" or "-".
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from paincontrol_lib.data.records import (
    AU_COLUMNS,
    LayoutError,
    au_columns_of,
    finish_records,
    list_images,
    parse_facs_code,
)

LAYOUT = __doc__.split("::", 1)[1].split("\n\nAUs not")[0]
IMAGE_KEYS = ("image", "filename", "file", "image_name", "imagename", "photo")
SUBJECT_KEYS = ("subject", "id", "participant", "identity", "person", "personid", "subject_id")
CODE_KEYS = ("aus", "facs", "au_codes", "aucodes", "au_code", "facs_code")
SEPARATORS = (",", ";", "\t")


def _find(frame: pd.DataFrame, keys) -> str | None:
    lower = {str(c).strip().lower().replace(" ", "_"): c for c in frame.columns}
    return next((lower[k] for k in keys if k in lower), None)


def csv_separator(path: Path) -> str:
    """The separator the header line uses most: spreadsheets in comma-decimal locales export
    ``;`` and a ``,``-only reader would see one column named after the whole header."""
    with open(path, encoding="utf-8-sig", errors="replace") as file:
        header = next((line for line in file if line.strip()), "")
    return max(SEPARATORS, key=header.count)  # a tie (e.g. a one-column header) gives ","


def read_label_table(path: Path, root: Path, dataset: str) -> pd.DataFrame:
    """A label CSV -> rows with ``image`` (resolved path), optional ``subject``, AU columns."""
    sep = csv_separator(path)
    try:
        labels = pd.read_csv(path, sep=sep, decimal="," if sep == ";" else ".")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{dataset}: cannot read {path} as CSV ({exc})") from exc
    image_col = _find(labels, IMAGE_KEYS)
    if image_col is None:
        raise ValueError(
            f"{dataset}: {path} has no image column (one of {IMAGE_KEYS}): read with "
            f"separator {sep!r}, it has the columns {[str(c) for c in labels.columns]}"
        )
    by_name = {p.name: p for p in list_images(root)}
    resolved, missing = [], []
    for name in labels[image_col].astype(str):
        candidate = root / name
        path_found = candidate if candidate.is_file() else by_name.get(Path(name).name)
        resolved.append(str(path_found) if path_found else None)
        if path_found is None:
            missing.append(name)
    if missing:
        raise FileNotFoundError(
            f"{dataset}: {len(missing)} image(s) named in {path} are not under {root}, "
            f"e.g. {missing[:3]}"
        )
    out = pd.DataFrame({"image": resolved})
    subject_col = _find(labels, SUBJECT_KEYS)
    if subject_col is not None:
        out["subject"] = labels[subject_col].astype(str).to_numpy()
    au_cols = au_columns_of(labels)
    code_col = _find(labels, CODE_KEYS)
    if au_cols:
        for col, name in au_cols.items():
            out[name] = pd.to_numeric(labels[col], errors="raise").to_numpy(float)
    elif code_col is not None:
        parsed = [parse_facs_code(code) for code in labels[code_col]]
        for name in AU_COLUMNS:
            out[name] = [p.get(name, 0.0) for p in parsed]
        unknown = {k for p in parsed for k in p} - set(AU_COLUMNS)
        for name in sorted(unknown):
            out[name] = [p.get(name, 0.0) for p in parsed]
    return out


def subject_from_name(path: str) -> str:
    return re.split(r"[_\-]", Path(path).stem, maxsplit=1)[0]


def records(root: Path, labels: str | Path | None = None) -> pd.DataFrame:
    root = Path(root)
    if labels is None:
        csvs = sorted(root.glob("*.csv"))
        if len(csvs) != 1:
            what = "no .csv file" if not csvs else f"{len(csvs)} .csv files (pass labels=...)"
            raise LayoutError("delaware", f"{root}/<labels>.csv ({what})", LAYOUT)
        label_path = csvs[0]  # found under the root, so already joined with it
    else:
        label_path = Path(labels) if Path(labels).is_absolute() else root / labels
    if not label_path.is_file():
        raise LayoutError("delaware", label_path, LAYOUT)
    table = read_label_table(label_path, root, "delaware")
    if not au_columns_of(table):
        raise ValueError(f"delaware: {label_path} has neither AU columns nor a FACS-code column")
    for name in AU_COLUMNS:
        if name not in table:
            table[name] = 0.0
    if "subject" not in table:
        table["subject"] = [subject_from_name(p) for p in table["image"]]
    table["sequence"] = table["subject"]
    table["frame"] = table.groupby("subject").cumcount()
    return finish_records(table, "delaware")
