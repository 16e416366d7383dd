"""Stage 05 building blocks: splits without subject leakage, the scarcity plan, detectors and
the statistics behind the claim. The whole stage runs on the tiny profile in test_pipeline."""

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


def _table(n_train=8, n_test=3, frames=4):
    """A landmark-table-like frame: each person has a pain and a no-pain sequence."""
    rows = []
    people = [(f"P{i:02d}", "train") for i in range(n_train)]
    people += [(f"T{i:02d}", "test") for i in range(n_test)]
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
    train, test = subject_split(table)
    assert not set(train) & set(test) and len(train) == 8 and len(test) == 3
    table.loc[table["image"] == "P01/q1_f2.png", "split"] = "test"
    with pytest.raises(SubjectLeakageError, match="P01"):
        subject_split(table)


def test_leakage_check_covers_synthetic_sources_and_targets():
    check_no_leakage(["P00"], ["T00"], ["new000"])
    with pytest.raises(SubjectLeakageError, match="training data contains test people"):
        check_no_leakage(["P00", "T00"], ["T00"])
    with pytest.raises(SubjectLeakageError, match="synthetic data"):
        check_no_leakage(["P00"], ["T00"], ["T00"])


def test_cells_are_nested_use_only_training_pain_people_and_respect_the_budget():
    table = _table()
    train, test = subject_split(table)
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
    train, test_people = subject_split(table)
    rows = table[table["split"] == "train"].reset_index(drop=True)
    real = _images(rows["subject"], rows["PSPI"], 100, rng)
    test_rows = table[table["split"] == "test"]
    test = _images(test_rows["subject"], test_rows["PSPI"], 100, rng)
    cells = plan_cells(table, train, [1, "all"], [0, 1], 2, 2, 0)
    params = {"cnn_steps": 30, "cnn_batch_size": 16, "mesh_components": 5}
    clean = _images(["new000"] * 2, [0, 3], 100, rng)
    arms, detectors = ["real", "paincontrol"], ["cnn", "mesh"]
    results = run_sweep(real, rows, test, _bank(cells, clean), cells, train, test_people,
                            arms, detectors, params)  # fmt: skip
    assert len(results) == 2 * 2 * 2 * 2
    n_pairs = results["level"].map({c.level: len(c.pairs) for c in cells})
    synthetic = results["arm"] == "paincontrol"
    assert (results.loc[synthetic, "n_synthetic"] == 2 * n_pairs[synthetic]).all()
    assert results["auc"].min() > 0.9  # both detectors find the planted signal
    # two spawned workers give the same rows as one process
    parallel = run_sweep(real, rows, test, _bank(cells, clean), cells, train, test_people,
                             arms, detectors, params, workers=2)  # fmt: skip
    pd.testing.assert_frame_equal(parallel, results)
    leaky = _images(["T01"] * 2, [0, 3], 100, rng)
    with pytest.raises(SubjectLeakageError, match="T01"):
        run_sweep(real, rows, test, _bank(cells, leaky), cells, train, test_people,
                      arms, ["mesh"], params)  # fmt: skip


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
    found = claim(tests, "cnn")
    assert found["scarce_level"] == 1 and found["full_level"] == 20
    assert found["scarce_gain_auc"] == pytest.approx(0.15, abs=0.02)
    assert found["scarce_gain_p"] < 0.01
    assert abs(found["full_gain_auc"]) < 0.02 and found["full_gain_p"] > 0.05
    assert (tests["p_holm"] >= tests["p"] - 1e-12).all()
    null = claim(arm_tests(_planted(0.0, 0.0, seed=1)), "cnn")
    assert null["scarce_gain_p"] > 0.05
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
    assert set(metrics["claim"]) >= {"scarce_gain_auc", "scarce_gain_p", "full_gain_auc",
                                     "full_gain_p"}  # fmt: skip
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
