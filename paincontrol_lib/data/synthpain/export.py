"""SynthPain written in the layouts of real datasets, so the real-data path can be walked (and
tested) end to end without licensed data: UNBC-McMaster's folder tree (images, FACS, PSPI and
AAM files, :mod:`paincontrol_lib.data.unbc`) and a plain folder with ``labels.csv``
(:mod:`paincontrol_lib.data.folder`). The faces stay SynthPain renderings; only the layout is
real."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.data.synthpain.generate import TABLE
from paincontrol_lib.io import atomic_folder

# UNBC codes these AUs (data/unbc.py: CODED_AUS); SynthPain's others are left out, as UNBC would.
UNBC_AUS = {"AU04": 4, "AU06": 6, "AU07": 7, "AU09": 9, "AU10": 10, "AU12": 12, "AU25": 25,
            "AU26": 26, "AU43": 43}  # fmt: skip
AAM_POINTS = np.linspace(0, 477, 66).round().astype(int)  # 66 of the 478 ground-truth points


def _table(synthpain_dir: Path) -> pd.DataFrame:
    path = Path(synthpain_dir) / TABLE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a SynthPain folder (paincontrol synthesize)")
    return pd.read_parquet(path)


def write_unbc_layout(synthpain_dir, out_dir) -> Path:
    """``out_dir`` (replaced atomically) in UNBC's layout: ``Images/<subject>/<sequence>/``,
    ``Frame_Labels/{FACS,PSPI}/...``, ``AAM_landmarks/...`` (66 points in image pixels)."""
    synthpain_dir = Path(synthpain_dir)
    table = _table(synthpain_dir)
    with atomic_folder(out_dir) as tmp:
        for row in table.itertuples(index=False):
            subject, sequence = str(row.subject), str(row.sequence)
            stem = f"{sequence}{int(row.frame):03d}"
            rel = Path(subject) / sequence
            image = tmp / "Images" / rel / f"{stem}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(synthpain_dir / row.image, image)
            facs = "".join(
                f"   {code:.7e}   {getattr(row, au):.7e}\n"
                for au, code in UNBC_AUS.items()
                if getattr(row, au) > 0
            )
            for kind, text in (("FACS", facs), ("PSPI", f"   {row.PSPI:.7e}\n")):
                path = tmp / "Frame_Labels" / kind / rel / f"{stem}_facs.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            points = np.asarray(row.landmarks_2d, dtype=float).reshape(-1, 2)[AAM_POINTS]
            aam = tmp / "AAM_landmarks" / rel / f"{stem}_aam.txt"
            aam.parent.mkdir(parents=True, exist_ok=True)
            aam.write_text("".join(f"{x:.4f} {y:.4f}\n" for x, y in points))
    return Path(out_dir)


def write_folder_layout(synthpain_dir, out_dir) -> Path:
    """``out_dir`` (replaced atomically) as a plain image folder: ``<subject>/<frame>.png`` and
    ``labels.csv`` (image, subject, AU columns)."""
    synthpain_dir = Path(synthpain_dir)
    table = _table(synthpain_dir)
    rows = []
    with atomic_folder(out_dir) as tmp:
        for row in table.itertuples(index=False):
            name = Path(str(row.subject)) / f"{row.sequence}_{int(row.frame):03d}.png"
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(synthpain_dir / row.image, tmp / name)
            rows.append({"image": str(name), "subject": str(row.subject),
                         **{au: getattr(row, au) for au in UNBC_AUS}})  # fmt: skip
        pd.DataFrame(rows).to_csv(tmp / "labels.csv", index=False)
    return Path(out_dir)
