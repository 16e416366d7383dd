"""Dataset adapters on small fixture trees written here in each dataset's layout."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from paincontrol_lib.data.records import (
    AU_COLUMNS,
    RECORD_COLUMNS,
    LayoutError,
    assert_subject_independent,
    parse_facs_code,
    subject_split,
)
from paincontrol_lib.data.sources import load_records


def _img(path: Path, value: int = 128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 40, 3), value, np.uint8)).save(path)


def make_unbc(root: Path, nested: bool = False, with_aam: bool = True):
    labels = root / "Frame_Labels" / ("Frame_Labels" if nested else "")
    frames = {
        ("042-ll042", "ll042t1aaaff"): [(1, {4: 2, 43: 1}, 3.0), (2, {}, 0.0)],
        ("064-ak064", "ak064t1aaaff"): [(1, {6: 1, 10: 2}, 3.0)],
    }
    for (subject, seq), rows in frames.items():
        for frame, aus, pspi in rows:
            stem = f"{seq}{frame:03d}"
            _img(root / "Images" / subject / seq / f"{stem}.png")
            facs = labels / "FACS" / subject / seq / f"{stem}_facs.txt"
            facs.parent.mkdir(parents=True, exist_ok=True)
            facs.write_text("".join(f"   {a:.7e}   {i:.7e}\n" for a, i in aus.items()))
            p = labels / "PSPI" / subject / seq / f"{stem}_facs.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"   {pspi:.7e}\n")
            if with_aam:
                aam = root / "AAM_landmarks" / subject / seq / f"{stem}_aam.txt"
                aam.parent.mkdir(parents=True, exist_ok=True)
                aam.write_text("".join(f"{5 + k * 0.4:.2f} {8 + k * 0.3:.2f}\n" for k in range(66)))
    vas = root / "Sequence_Labels" / "VAS" / "042-ll042"
    vas.mkdir(parents=True)
    (vas / "ll042t1aaaff.txt").write_text("5.0000000e+00\n")


@pytest.mark.parametrize("nested", [False, True])
def test_unbc_adapter_reads_labels_and_aam(tmp_path, nested):
    make_unbc(tmp_path, nested=nested)
    rec = load_records("unbc", tmp_path)
    assert list(rec.columns[: len(RECORD_COLUMNS)]) == list(RECORD_COLUMNS)
    assert len(rec) == 3 and rec["dataset"].eq("unbc").all()
    first = rec[(rec.subject == "042-ll042") & (rec.frame == 1)].iloc[0]
    assert first.AU04 == 2 and first.AU43 == 1 and first.AU06 == 0 and first.PSPI == 3
    assert np.isnan(first.AU01)  # not coded in UNBC
    assert first.aam_66.shape == (132,) and first.aam_66[1] == pytest.approx(8.0)
    assert first.vas == 5.0
    neutral = rec[rec.neutral_reference]
    assert set(neutral.subject) == {"042-ll042", "064-ak064"}
    assert neutral[neutral.subject == "042-ll042"].frame.item() == 2  # the frame without AUs


def test_unbc_partial_layout_names_missing_path(tmp_path):
    make_unbc(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "Frame_Labels" / "PSPI")
    with pytest.raises(LayoutError, match=r"Frame_Labels.*Expected layout") as err:
        load_records("unbc", tmp_path)
    assert "Images/<subject>/<sequence>/<frame>.png" in str(err.value)
    with pytest.raises(LayoutError, match="Images"):
        load_records("unbc", tmp_path / "Images")


def test_unbc_missing_aam_and_missing_label_file(tmp_path):
    make_unbc(tmp_path, with_aam=False)
    with pytest.raises(LayoutError, match="AAM_landmarks"):
        load_records("unbc", tmp_path)
    assert load_records("unbc", tmp_path, require_aam=False)["aam_66"].isna().all()
    next((tmp_path / "Frame_Labels" / "FACS").rglob("*_facs.txt")).unlink()
    with pytest.raises(LayoutError, match="_facs.txt"):
        load_records("unbc", tmp_path, require_aam=False)


def test_unbc_pspi_from_facs_when_its_file_is_missing(tmp_path, capsys):
    """Before the fix one frame without a PSPI file aborted the whole load."""
    make_unbc(tmp_path)
    pspi_file = tmp_path / "Frame_Labels" / "PSPI" / "042-ll042" / "ll042t1aaaff"
    (pspi_file / "ll042t1aaaff001_facs.txt").unlink()
    rec = load_records("unbc", tmp_path)
    first = rec[(rec.subject == "042-ll042") & (rec.frame == 1)].iloc[0]
    assert first.PSPI == 3 and first.pspi_from_facs  # AU4 2 + AU43 1
    assert rec["pspi_from_facs"].sum() == 1
    assert "1 of 3 frames have no PSPI file" in capsys.readouterr().out


def test_unbc_aam_file_with_swapped_columns_is_set_aside_and_the_load_goes_on(tmp_path):
    """Before the fix one AAM file with swapped columns aborted the whole load; now its frame is
    kept without AAM points, the reason is in aam_problem and one warning names the file."""
    make_unbc(tmp_path)
    aam = sorted((tmp_path / "AAM_landmarks").rglob("*_aam.txt"))[0]
    image = tmp_path / "Images" / aam.relative_to(tmp_path / "AAM_landmarks").parent
    image = image / aam.name.replace("_aam.txt", ".png")
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(image)  # 60 wide, 40 high
    xy = np.stack([42 + np.arange(66) * 0.25, 5 + np.arange(66) * 0.4], axis=1)
    aam.write_text("".join(f"{y:.2f} {x:.2f}\n" for x, y in xy))
    with pytest.warns(UserWarning, match=r"AAM files of 1 of 3 frames are set aside.*_aam.txt"):
        rec = load_records("unbc", tmp_path)
    assert len(rec) == 3  # the frame is kept, only its AAM points are set aside
    flagged = rec[rec["aam_problem"] != ""]
    assert len(flagged) == 1 and flagged["image"].item() == str(image)
    assert flagged["aam_66"].item() is None
    assert (
        flagged["aam_problem"]
        .str.contains(r"_aam.txt: 66 of 66 points lie outside the 60x40 image .*columns swapped")
        .item()
    )
    aam.write_text("".join(f"{x + 100:.2f} {y:.2f}\n" for x, y in xy))
    with pytest.warns(UserWarning, match=r"points lie outside the 60x40 image [^(]*$"):
        load_records("unbc", tmp_path)
    aam.write_text("1 2\n3 4\n")
    with pytest.warns(UserWarning, match=r"should hold 66 'x y' rows, found 4 numbers"):
        assert len(load_records("unbc", tmp_path)) == 3
    aam.write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in xy))
    rec = load_records("unbc", tmp_path)  # x y on the image: accepted
    assert len(rec) == 3 and rec["aam_problem"].eq("").all() and rec["aam_66"].notna().all()


def test_delaware_with_facs_codes(tmp_path):
    for name in ("F01_neutral.jpg", "F01_pain.jpg", "M02_pain.jpg"):
        _img(tmp_path / "photos" / name)
    pd.DataFrame(
        {
            "Filename": ["F01_neutral.jpg", "F01_pain.jpg", "M02_pain.jpg"],
            "AUs": ["", "4C+6B+7+43", "L9A+10E"],
        }
    ).to_csv(tmp_path / "codes.csv", index=False)
    rec = load_records("delaware", tmp_path)
    pain = rec[rec.image.str.endswith("F01_pain.jpg")].iloc[0]
    assert (pain.AU04, pain.AU06, pain.AU07, pain.AU43, pain.AU12) == (3, 2, 1, 1, 0)
    assert pain.PSPI == 3 + 2 + 0 + 1
    assert rec[rec.image.str.endswith("M02_pain.jpg")].PSPI.item() == 5
    assert set(rec.subject) == {"F01", "M02"}
    assert rec[rec.neutral_reference].image.str.endswith("neutral.jpg").any()


def test_delaware_with_au_columns_and_errors(tmp_path):
    _img(tmp_path / "a.png")
    pd.DataFrame({"image": ["a.png"], "subject": ["p1"], "AU4": [2], "au_43": [1]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    rec = load_records("delaware", tmp_path)
    assert rec.AU04.item() == 2 and rec.AU43.item() == 1 and rec.subject.item() == "p1"
    pd.DataFrame({"image": ["missing.png"], "AU4": [1]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_records("delaware", tmp_path)
    (tmp_path / "labels.csv").unlink()
    with pytest.raises(LayoutError, match="no .csv file"):
        load_records("delaware", tmp_path)
    with pytest.raises(ValueError, match="FACS code"):
        parse_facs_code("4B+smile")


def test_folder_adapter_with_and_without_labels(tmp_path):
    _img(tmp_path / "alice" / "1.png")
    _img(tmp_path / "alice" / "2.png")
    _img(tmp_path / "bob" / "1.jpg")
    rec = load_records("folder", tmp_path)
    assert sorted(rec.subject.unique()) == ["alice", "bob"]
    assert rec[AU_COLUMNS[0]].isna().all() and rec.PSPI.isna().all()
    pd.DataFrame(
        {
            "file": ["alice/1.png", "bob/1.jpg"],
            "id": ["A", "B"],
            "AU04": [3, 0],
            "AU06": [1, 0],
            "AU07": [0, 0],
            "AU09": [0, 0],
            "AU10": [0, 0],
            "AU43": [0, 0],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    rec = load_records("folder", tmp_path)
    assert list(rec.subject) == ["A", "B"] and list(rec.PSPI) == [4, 0]
    with pytest.raises(LayoutError, match="no image files"):
        load_records("folder", _empty(tmp_path))


def test_delaware_finds_its_labels_under_a_relative_root(tmp_path, monkeypatch):
    """Before the fix ``data.root: data/real`` (the documented setting) looked for
    data/real/data/real/labels.csv: the CSV found under the root was joined with it again."""
    monkeypatch.chdir(tmp_path)
    root = Path("data/real")
    for name in ("F01_neutral.jpg", "F01_pain.jpg", "M02_pain.jpg"):
        _img(root / "photos" / name)
    pd.DataFrame(
        {"image": ["photos/F01_neutral.jpg", "F01_pain.jpg", "M02_pain.jpg"], "AU4": [0, 3, 2]}
    ).to_csv(root / "labels.csv", index=False)
    rec = load_records("delaware", "data/real")
    assert len(rec) == 3 and set(rec.subject) == {"F01", "M02"}
    assert all(Path(p).is_file() for p in rec.image)
    from paincontrol_lib.data import delaware

    assert len(delaware.records(root, labels="labels.csv")) == 3  # named, relative to the root


def test_unbc_and_folder_load_from_a_relative_root(tmp_path, monkeypatch):
    """The other adapters with the documented relative ``data.root`` (no root joined twice)."""
    monkeypatch.chdir(tmp_path)
    make_unbc(Path("data/unbc"))
    rec = load_records("unbc", "data/unbc")
    assert len(rec) == 3 and all(Path(p).is_file() for p in rec.image)
    _img(Path("data/folder/alice/1.png"))
    _img(Path("data/folder/bob/1.png"))
    pd.DataFrame({"file": ["alice/1.png", "bob/1.png"], "AU04": [3, 0]}).to_csv(
        "data/folder/labels.csv", index=False
    )
    rec = load_records("folder", "data/folder")
    assert list(rec.subject) == ["alice", "bob"] and list(rec.AU04) == [3, 0]
    assert all(Path(p).is_file() for p in rec.image)


def test_delaware_reads_semicolon_separated_labels(tmp_path):
    """Before the fix a ``;``-separated export (European spreadsheets, decimal commas) was read
    as one column and refused as having no image column."""
    for name in ("F01_neutral.jpg", "F01_pain.jpg"):
        _img(tmp_path / name)
    (tmp_path / "labels.csv").write_text(
        "Filename;Subject;AU4;AU43\nF01_neutral.jpg;F01;0;0\nF01_pain.jpg;F01;2,5;1\n"
    )
    rec = load_records("delaware", tmp_path)
    pain = rec[rec.image.str.endswith("F01_pain.jpg")].iloc[0]
    assert (pain.AU04, pain.AU43, pain.subject) == (2.5, 1, "F01")


def test_delaware_labels_without_an_image_column_name_separator_and_columns(tmp_path):
    """Before the fix the error said only "has no image column", not what was read."""
    _img(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("picture;AU4\na.png;1\n")
    with pytest.raises(ValueError, match=r"no image column .*separator ';'.*\['picture', 'AU4'\]"):
        load_records("delaware", tmp_path)


def test_folder_keeps_people_in_same_named_leaf_folders_apart(tmp_path):
    """Before the fix site_a/2019/p01 and site_b/2019/p01 became one subject p01."""
    for site in ("site_a", "site_b"):
        _img(tmp_path / site / "2019" / "p01" / "1.png")
        _img(tmp_path / site / "2019" / "p01" / "2.png")
    _img(tmp_path / "solo.png")
    rec = load_records("folder", tmp_path)
    assert sorted(rec.subject.unique()) == ["site_a__2019__p01", "site_b__2019__p01", "solo"]
    assert rec.groupby("subject").size().to_dict() == {
        "site_a__2019__p01": 2, "site_b__2019__p01": 2, "solo": 1
    }  # fmt: skip
    assert not any("/" in s for s in rec.subject)  # ids are used as file names downstream


def test_folder_refuses_two_folders_that_give_one_subject_id(tmp_path):
    """Ids join folders with "__": a folder already named so would merge two people."""
    _img(tmp_path / "a__b" / "1.png")
    _img(tmp_path / "a" / "b" / "1.png")
    with pytest.raises(ValueError, match=r"/a/b and .*/a__b both give the subject id 'a__b'"):
        load_records("folder", tmp_path)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_unknown_source_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="unknown data.source"):
        load_records("biovid", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_records("folder", tmp_path / "nope")


def test_subject_split_never_leaks():
    rec = pd.DataFrame({"subject": [f"s{i % 7}" for i in range(70)]})
    for seed in range(5):
        split = subject_split(rec, 0.3, seed)
        train, test = rec[split == "train"], rec[split == "test"]
        assert_subject_independent(train, test)
        assert len(test) and len(train)
        three = subject_split(rec, 0.3, seed, val_fraction=0.3)
        parts = [rec[three == name] for name in ("train", "val", "test")]
        assert_subject_independent(*parts)
        assert [p["subject"].nunique() for p in parts] == [3, 2, 2]
        assert (three[split == "test"] == "test").all()  # the same test people with or without val
    with pytest.raises(AssertionError, match="s1"):
        assert_subject_independent(rec[rec.subject == "s1"], rec[rec.subject.isin(["s1", "s2"])])
