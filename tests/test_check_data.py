"""`paincontrol check --data DIR --source ...`: a dataset folder as the pipeline would load and
split it, judged before any compute (before the fix `check` looked at external weights only)."""

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from paincontrol_lib.cli import main


def _img(path: Path, value: int = 128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(path)


def make_delaware(root: Path, people=("F01", "F02", "M03", "M04")) -> Path:
    """Two photographs per person (neutral and pain) and a CSV of FACS codes."""
    rows = []
    for person in people:
        for kind, code in (("neutral", ""), ("pain", "4C+6B+43")):
            _img(root / "photos" / f"{person}_{kind}.jpg")
            rows.append({"Filename": f"{person}_{kind}.jpg", "AUs": code})
    pd.DataFrame(rows).to_csv(root / "codes.csv", index=False)
    return root


def make_unbc(root: Path, people=("042-ll042", "064-ak064", "080-bn080", "095-tv095")) -> Path:
    """Two frames per person in UNBC's tree, AAM points on their 40x40 images."""
    for person in people:
        seq = f"{person.split('-')[1]}t1aaaff"
        for frame, aus in ((1, "4 2\n43 1\n"), (2, "")):
            rel = Path(person) / seq / f"{seq}{frame:03d}"
            _img(root / "Images" / f"{rel}.png")
            for kind, text in (("FACS", aus), ("PSPI", "3\n" if aus else "0\n")):
                label = root / "Frame_Labels" / kind / f"{rel}_facs.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(text)
            aam = root / "AAM_landmarks" / f"{rel}_aam.txt"
            aam.parent.mkdir(parents=True, exist_ok=True)
            aam.write_text("".join(f"{5 + k * 0.4:.2f} {8 + k * 0.3:.2f}\n" for k in range(66)))
    return root


def test_check_data_passes_a_good_layout_and_prints_counts(tmp_path, capsys):
    root = make_delaware(tmp_path / "real")
    assert main(["check", "--data", str(root), "--source", "delaware"]) == 0
    out = capsys.readouterr().out
    assert f"ok       data (delaware adapter): {root}" in out
    assert "4 people, 8 frames, 8 with labels (PSPI known), 4 with pain (PSPI > 0)" in out
    assert "frames per person: F01 2, F02 2, M03 2, M04 2" in out
    assert "ok       people for the train/val/test split" in out
    assert "2 train, 1 val, 1 test people" in out
    assert "MISSING" not in out and "WARN" not in out and "4 of 4 ok" in out


def test_check_data_rejects_too_few_people_for_the_split(tmp_path, capsys):
    """Two people give a train and a test person but no validation person: stages 02-05 fail."""
    root = make_delaware(tmp_path / "real", people=("F01", "M02"))
    assert main(["check", "--data", str(root), "--source", "delaware"]) == 1
    out = capsys.readouterr().out
    assert "MISSING  people for the train/val/test split" in out
    assert "no val people (1 train, 0 val, 1 test;" in out and "3 of 4 ok" in out


def test_check_data_names_the_adapter_error_of_a_bad_layout(tmp_path, capsys):
    root = make_delaware(tmp_path / "real")
    (root / "codes.csv").unlink()
    assert main(["check", "--data", str(root), "--source", "delaware"]) == 1
    out = capsys.readouterr().out
    assert f"MISSING  data (delaware adapter): looked in {root}" in out
    assert "no .csv file" in out and "0 of 1 ok" in out
    assert main(["check", "--data", str(tmp_path / "nowhere"), "--source", "unbc"]) == 1
    assert "does not exist" in capsys.readouterr().out
    assert main(["check", "--source", "unbc"]) == 2
    assert "give --data too" in capsys.readouterr().err


def test_check_data_lists_unreadable_images_and_set_aside_aam_files(tmp_path, capsys):
    """Suspicious files are listed by name as warnings; the layout still passes."""
    root = make_unbc(tmp_path / "unbc")
    frames = sorted((root / "Images").rglob("*.png"))
    frames[0].write_bytes(b"")
    frames[2].write_bytes(b"not an image")
    swapped = sorted((root / "AAM_landmarks").rglob("*_aam.txt"))[-1]
    swapped.write_text("".join(f"{8 + k * 0.3:.2f} {45 + k * 0.4:.2f}\n" for k in range(66)))
    assert main(["check", "--data", str(root), "--source", "unbc"]) == 0
    out = capsys.readouterr().out
    assert "4 people, 8 frames, 8 with labels" in out
    assert "WARN     image files (headers)" in out
    assert f"{frames[0]}: empty file (0 bytes)" in out
    assert f"{frames[2]}: unreadable image" in out
    assert "WARN     AAM landmark files" in out and f"{swapped}: 66 of 66 points lie outside" in out
    assert f"its image {frames[0]} does not open" in out  # its AAM file cannot be checked
    assert "5 of 5 ok (2 with warnings)" in out


def test_check_data_rejects_a_folder_without_one_readable_image(tmp_path, capsys):
    for person in ("a", "b", "c", "d"):
        (tmp_path / "faces" / person).mkdir(parents=True)
        (tmp_path / "faces" / person / "1.png").write_bytes(b"")
    assert main(["check", "--data", str(tmp_path / "faces"), "--source", "folder"]) == 1
    out = capsys.readouterr().out
    assert "MISSING  image files (headers)" in out and "no image file can be read" in out
    assert "WARN     labels (PSPI)" in out and "4 of 4 frames have no label" in out
