"""Stage 05 building blocks: splits without subject leakage, the scarcity plan, detectors and
the statistics behind the claim. The whole stage runs on the tiny profile in test_pipeline."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paincontrol_lib.augment.bank import CROP, Images, classic_augment, new_synthpain_faces
from paincontrol_lib.augment.cells import (
    SubjectLeakageError,
    check_no_leakage,
    pair_frames,
    plan_cells,
    real_training_rows,
    resolve_levels,
    subject_split,
)
from paincontrol_lib.augment.detectors import detection_scores
from paincontrol_lib.augment.statistics import (
    arm_tests,
    claim,
    metrics_json,
    mixed_model,
    summarise,
)
from paincontrol_lib.augment.sweep import run_sweep


def _table(n_train=8, n_test=3, frames=4, n_val=2):
    """A landmark-table-like frame: each person has a pain and a no-pain sequence."""
    rows = []
    people = [(f"P{i:02d}", "train") for i in range(n_train)]
    people += [(f"T{i:02d}", "test") for i in range(n_test)]
    people += [(f"V{i:02d}", "val") for i in range(n_val)]
    for subject, split in people:
        for q, peak in enumerate((0.0, 6.0)):
            for f in range(frames):
                pspi = peak * np.sin(np.pi * f / (frames - 1)) if f else 0.0
                rows.append({
                    "subject": subject, "sequence": f"{subject}_q{q}", "frame": f,
                    "image": f"{subject}/q{q}_f{f}.png", "split": split, "detected": True,
                    "neutral_reference": q == 0 and f == 0, "PSPI": round(pspi),
                })  # fmt: skip
    # one training person without any pain: never a "pain person"
    table = pd.DataFrame(rows)
    table.loc[(table["subject"] == "P07"), "PSPI"] = 0
    return table


def test_subject_split_refuses_a_person_on_both_sides():
    table = _table()
    train, val, test = subject_split(table)
    assert not set(train) & set(test) and len(train) == 8 and len(test) == 3 and len(val) == 2
    table.loc[table["image"] == "P01/q1_f2.png", "split"] = "test"
    with pytest.raises(SubjectLeakageError, match="P01"):
        subject_split(table)
    with pytest.raises(ValueError, match="val_fraction"):
        subject_split(_table(n_val=0))


def test_leakage_check_covers_synthetic_sources_and_targets():
    check_no_leakage(["P00"], ["T00"], ["new000"])
    with pytest.raises(SubjectLeakageError, match="training data contains test people"):
        check_no_leakage(["P00", "T00"], ["T00"])
    with pytest.raises(SubjectLeakageError, match="synthetic data"):
        check_no_leakage(["P00"], ["T00"], ["T00"])


def test_cells_are_nested_use_only_training_pain_people_and_respect_the_budget():
    table = _table()
    train, _, test = subject_split(table)
    cells = plan_cells(table, train, [1, 3, "all"], seeds=[0, 1], pairs_per_cell=5,
                           n_targets=4, base_seed=0)  # fmt: skip
    assert [c.level for c in cells] == [1, 3, 7, 1, 3, 7]  # P07 has no pain: 7 pain people
    for seed in (0, 1):
        mine = [c for c in cells if c.seed == seed]
        for small, large in zip(mine, mine[1:], strict=False):
            assert set(small.pain_people) < set(large.pain_people)
    for cell in cells:
        assert len(cell.pain_people) == cell.level and "P07" not in cell.pain_people
        assert not set(cell.pain_people) & set(test)
        assert 0 < len(cell.pairs) <= 5
        sources = {seq.split("_")[0] for seq, _ in cell.pairs}
        assert sources <= set(cell.pain_people)
        assert all(0 <= target < 4 for _, target in cell.pairs)
        rows = real_training_rows(table, train, cell.pain_people)
        assert set(rows.loc[rows["PSPI"] > 0, "subject"]) == set(cell.pain_people)
        assert not set(rows["subject"]) & set(test)
    # one pain person spreads its single sequence over several new identities
    assert len({t for _, t in cells[0].pairs}) == 4
    assert cells[0].pain_people != cells[3].pain_people or cells[0].pairs != cells[3].pairs


def test_levels_are_checked():
    assert resolve_levels([4, "all", 1, 4], 6) == [1, 4, 6]
    for bad in ([0], [7], ["most"], []):
        with pytest.raises(ValueError):
            resolve_levels(bad, 6)


def test_pair_frames_carry_a_no_pain_frame_and_the_apex():
    table = _table(frames=6)
    rows = pair_frames(table, "P00_q1", 2)
    assert rows["PSPI"].iloc[0] == 0 and rows["PSPI"].iloc[1:].min() > 0
    assert rows["PSPI"].max() == table.loc[table["sequence"] == "P00_q1", "PSPI"].max()
    with pytest.raises(ValueError, match="P00_q0 needs"):
        pair_frames(table, "P00_q0", 2)


def _images(people, pspi, signal, rng):
    """Crops whose centre brightness and first feature carry the pain label."""
    n = len(people)
    crops = rng.integers(60, 120, (n, CROP, CROP, 3)).astype(np.uint8)
    crops[:, 24:40, 24:40] += (np.asarray(pspi) > 0)[:, None, None, None].astype(np.uint8) * signal
    features = rng.normal(0, 0.1, (n, 936))  # a mesh: 468 points that move together
    features[:, :40] += 0.3 * (np.asarray(pspi) > 0)[:, None]
    people = np.asarray(people, dtype=object)
    return Images(crops, np.asarray(pspi, float), people, people, features)


def _bank(cells, images):
    return {("paincontrol", pair): images for cell in cells for pair in cell.pairs}


def test_sweep_fits_and_scores_and_refuses_test_people_in_synthetic_data():
    rng = np.random.default_rng(0)
    table = _table()
    train, val_people, test_people = subject_split(table)
    rows = table[table["split"] == "train"].reset_index(drop=True)
    real = _images(rows["subject"], rows["PSPI"], 100, rng)
    test_rows, val_rows = table[table["split"] == "test"], table[table["split"] == "val"]
    test = _images(test_rows["subject"], test_rows["PSPI"], 100, rng)
    val = _images(val_rows["subject"], val_rows["PSPI"], 100, rng)
    cells = plan_cells(table, train, [1, "all"], [0, 1], 2, 2, 0)
    params = {"cnn_steps": 30, "cnn_eval_every": 10, "cnn_batch_size": 16,
              "mesh_components": [3, 5]}  # fmt: skip
    clean = _images(["new000"] * 2, [0, 3], 100, rng)
    arms, detectors = ["real", "paincontrol"], ["cnn", "mesh"]
    args = (cells, train, val_people, test_people, arms, detectors, params)
    results = run_sweep(real, rows, val, test, _bank(cells, clean), *args)
    assert len(results) == 2 * 2 * 2 * 2
    n_pairs = results["level"].map({c.level: len(c.pairs) for c in cells})
    synthetic = results["arm"] == "paincontrol"
    assert (results.loc[synthetic, "n_synthetic"] == 2 * n_pairs[synthetic]).all()
    assert results["auc"].min() > 0.9  # both detectors find the planted signal
    # settings chosen on validation people, from the candidates given
    cnn, mesh = results[results["detector"] == "cnn"], results[results["detector"] == "mesh"]
    assert cnn["cnn_steps"].isin([10, 20, 30]).all() and mesh["mesh_components"].isin([3, 5]).all()
    assert results["threshold"].between(0, 1).all()
    # two spawned workers give the same rows as one process
    parallel = run_sweep(real, rows, val, test, _bank(cells, clean), *args[:-1], params,
                         workers=2)  # fmt: skip
    pd.testing.assert_frame_equal(parallel, results)
    for person in ("T01", "V01"):  # synthetic images onto a test or a validation person
        leaky = _images([person] * 2, [0, 3], 100, rng)
        with pytest.raises(SubjectLeakageError, match=person):
            run_sweep(real, rows, val, test, _bank(cells, leaky), cells, train, val_people,
                      test_people, arms, ["mesh"], params)  # fmt: skip


def test_detection_scores_known_answers():
    truth = np.array([0, 0, 4, 8, 0, 12])
    perfect = detection_scores(truth, (truth > 0) * 0.5 + truth / 48, truth)
    assert perfect == {"auc": 1.0, "f1": 1.0, "pcc": pytest.approx(1.0)}
    # a missing prediction is a miss, not a free pass
    missed = detection_scores(truth, [0, 0, np.nan, 1, 0, 1], [0, 0, np.nan, 8, 0, 12])
    assert missed["auc"] < 1 and missed["f1"] == pytest.approx(0.8)
    assert detection_scores([0, 0], [0.1, 0.2], [0, 0])["auc"] is None


def _planted(gain_scarce, gain_full, n_seeds=6, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seeds):
        for level, gain in ((1, gain_scarce), (4, gain_scarce / 2), (20, gain_full)):
            base = 0.6 + 0.01 * level + rng.normal(0, 0.05)
            for arm, g in (("real", 0.0), ("paincontrol", gain), ("warp", gain / 2)):
                auc = base + g + rng.normal(0, noise)
                rows.append({"detector": "cnn", "level": level, "arm": arm, "seed": s,
                             "auc": auc, "f1": 0.5, "pcc": 0.5})  # fmt: skip
    return pd.DataFrame(rows)


def test_claim_recovers_a_planted_effect_and_no_effect():
    results = _planted(0.15, 0.0)
    tests = arm_tests(results)
    assert (tests["p_holm"] >= tests["p"] - 1e-12).all()
    found = claim(results, "cnn")
    vs_real, vs_warp = found["paincontrol_vs_real"], found["paincontrol_vs_warp"]
    assert set(vs_real) == {"1", "4", "20"}
    assert vs_real["1"]["estimate"] == pytest.approx(0.15, abs=0.02)
    assert vs_real["1"]["ci_low"] > 0.1 and vs_real["1"]["p_holm"] < 0.01
    assert abs(vs_real["20"]["estimate"]) < 0.02 and vs_real["20"]["p_holm"] > 0.05
    # planted: the warp gains half as much, so PainControl beats it by 0.075 at level 1
    assert vs_warp["1"]["estimate"] == pytest.approx(0.075, abs=0.02)
    assert vs_warp["1"]["p_holm"] < 0.05 and vs_warp["1"]["n_seeds"] == 6
    for levels in (vs_real, vs_warp):
        assert all(row["p_holm"] >= row["p"] - 1e-12 for row in levels.values())
    assert "classic_vs_real" not in found  # no classic arm in these results
    null = claim(_planted(0.0, 0.0, seed=1), "cnn")
    assert null["paincontrol_vs_real"]["1"]["p_holm"] > 0.05
    assert (
        null["paincontrol_vs_real"]["1"]["ci_low"] < 0 < null["paincontrol_vs_real"]["1"]["ci_high"]
    )
    summary = summarise(results)
    cell = summary[(summary["level"] == 1) & (summary["arm"] == "paincontrol")].iloc[0]
    assert cell["n_seeds"] == 6 and cell["auc_ci_low"] < cell["auc_mean"] < cell["auc_ci_high"]
    fit = mixed_model(results, "cnn")
    assert fit is not None
    term = "C(arm, Treatment('real'))[T.paincontrol]"
    assert fit.params[term] == pytest.approx(0.15, abs=0.03)


def test_metrics_follow_the_contract():
    results = _planted(0.15, 0.0)
    tests, summary = arm_tests(results), summarise(results)
    metrics = metrics_json(summary, tests, results, "cnn", {"n_test_people": 3})
    cell = metrics["levels"]["1"]["paincontrol"]
    assert {"auc_mean", "auc_ci_low", "auc_ci_high", "n_seeds"} <= set(cell)
    assert set(metrics["claim"]) >= {"paincontrol_vs_real", "paincontrol_vs_warp"}
    for test in metrics["claim"]["paincontrol_vs_warp"].values():
        assert {"estimate", "ci_low", "ci_high", "p_holm"} <= set(test)
    assert metrics["n_test_people"] == 3 and "cnn" in metrics["detectors"]


def test_classic_augmentation_is_seeded_and_changes_the_image():
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    a = classic_augment(image, np.random.default_rng(1))
    b = classic_augment(image, np.random.default_rng(1))
    assert a.shape == image.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert np.abs(a.astype(int) - image).mean() > 5


def test_new_identities_never_reuse_the_dataset_seed(tiny_synthpain):
    data_dir, table = tiny_synthpain
    with pytest.raises(SubjectLeakageError, match="dataset's own seed"):
        new_synthpain_faces(data_dir, 1, seed=0, mesher=None)
    from paincontrol_lib.landmarks.mesher import FaceMesher

    with FaceMesher() as mesher:
        (face,) = new_synthpain_faces(data_dir, 1, seed=7, mesher=mesher)
    assert face.name == "new000" and face.landmarks.shape == (478, 3)
    first = table[table["neutral_reference"]]["image"].iloc[0]
    from paincontrol_lib.landmarks.image import load_image

    assert np.abs(face.image.astype(int) - load_image(data_dir / first)).mean() > 5


def test_generator_that_saw_withheld_pain_is_refused(tmp_path):
    """From the generator's own training record: a stage-02-style checkpoint trained on every
    training person has seen the pain frames a scarce cell withholds, and the check refuses it;
    a generator trained on another dataset (the shipped checkpoint's case) saw none."""
    import json

    from paincontrol_lib.augment.generator import (
        TrainingData,
        check_cells,
        generator_training_data,
        people_seen,
        withheld_pain_frames_seen,
    )

    table = _table()
    train, _, _ = subject_split(table)
    cells = plan_cells(table, train, [1, "all"], [0], 2, 2, 0)
    scarce = cells[0]
    everyone = [TrainingData("synthpain(seed=0)", frozenset(train), "training.json")]
    trained_on = people_seen(everyone, table, "synthpain(seed=0)", train)
    assert trained_on == set(train)
    seen = withheld_pain_frames_seen(trained_on, table, train, scarce.pain_people)
    pain_frames = table[table["subject"].isin(train) & (table["PSPI"] > 0)]
    own = pain_frames["subject"].isin(scarce.pain_people).sum()
    assert seen == len(pain_frames) - own > 0
    with pytest.raises(SubjectLeakageError, match="withholds"):
        check_cells(everyone, table, "synthpain(seed=0)", train, cells)
    # at full data nothing is withheld; another dataset's people are other people
    assert withheld_pain_frames_seen(trained_on, table, train, cells[-1].pain_people) == 0
    other = [TrainingData("synthpain(seed=1)", frozenset(train), "PROVENANCE.json")]
    assert check_cells(other, table, "synthpain(seed=0)", train, cells) == 0
    # the shipped checkpoint's record names seed 1 and its 960 training people
    (shipped,) = generator_training_data(Path(__file__).parent.parent / "pretrained/tiny-synthpain")
    assert shipped.dataset == "synthpain(seed=1)" and len(shipped.people) == 960
    assert not shipped.frames  # rendered people are named by (seed, subject), never rendered
    # a checkpoint whose record names no training data cannot be cleared
    (tmp_path / "training.json").write_text(json.dumps({"arguments": {"examples": "x.npz"}}))
    with pytest.raises(ValueError, match="names no people"):
        generator_training_data(tmp_path)
    with pytest.raises(FileNotFoundError, match="cannot be shown"):
        generator_training_data(tmp_path / "nothing")


def _write_frames(root: Path, table: pd.DataFrame, shade: int) -> None:
    """One small PNG per row of ``table`` under ``root`` (its ``image`` column), all distinct."""
    from PIL import Image

    for k, image in enumerate(table["image"]):
        path = root / image
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), (shade, k % 256, k // 256), np.uint8)).save(path)


def _stage02_generator(checkpoint: Path, landmarks_dir: Path, data_root: Path, table) -> Path:
    """A checkpoint whose training.json names a landmark table stored as stage 01 writes it:
    images relative to the data root, the root relative to the table's folder."""
    import json
    import os

    landmarks_dir.mkdir(parents=True)
    table.assign(data_root=os.path.relpath(data_root, landmarks_dir)).to_parquet(
        landmarks_dir / "landmarks.parquet", index=False
    )
    checkpoint.mkdir(parents=True)
    arguments = {"landmarks_dir": str(landmarks_dir)}
    (checkpoint / "training.json").write_text(json.dumps({"arguments": arguments}))
    return checkpoint


def test_generator_trained_on_a_copy_of_the_dataset_at_another_path_is_caught(tmp_path):
    """Before the fix datasets were compared by resolved path, so a generator trained on a copy
    of the data folder (here also under other subject ids) was cleared; now its people are
    recognised by their frames' bytes. Another dataset with the same ids is other people."""
    import shutil

    from paincontrol_lib.augment.generator import (
        check_cells,
        dataset_id,
        generator_training_data,
    )

    table = _table()
    train, _, _ = subject_split(table)
    cells = plan_cells(table, train, [1, "all"], [0], 2, 2, 0)
    data = tmp_path / "data" / "real"
    _write_frames(data, table, shade=0)
    shutil.copytree(data, tmp_path / "elsewhere" / "copy")
    renamed = table.assign(subject="copy-" + table["subject"])
    copied = _stage02_generator(tmp_path / "gen_copy", tmp_path / "lm_copy",
                                tmp_path / "elsewhere" / "copy", renamed)  # fmt: skip
    training = generator_training_data(copied)
    here = table.assign(image=[str(data / image) for image in table["image"]])
    with pytest.raises(SubjectLeakageError, match="withholds"):
        check_cells(training, here, dataset_id(data), train, cells)
    assert training[0].dataset != dataset_id(data) and len(training[0].frames) == 8 * 8
    other = tmp_path / "other"
    _write_frames(other, table, shade=200)
    unrelated = _stage02_generator(tmp_path / "gen_other", tmp_path / "lm_other", other, table)
    assert check_cells(generator_training_data(unrelated), here, dataset_id(data), train,
                       cells) == 0  # fmt: skip
