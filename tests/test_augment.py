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
    Predictions,
    inference,
    metrics_json,
    mixed_model,
    people_auc,
    summarise,
    verdict,
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


def test_sweep_keeps_every_fits_test_predictions_for_the_people_bootstrap():
    rng = np.random.default_rng(0)
    table = _table()
    train, val_people, test_people = subject_split(table)
    rows = table[table["split"] == "train"].reset_index(drop=True)
    real = _images(rows["subject"], rows["PSPI"], 100, rng)
    test_rows, val_rows = table[table["split"] == "test"], table[table["split"] == "val"]
    test = _images(test_rows["subject"], test_rows["PSPI"], 100, rng)
    val = _images(val_rows["subject"], val_rows["PSPI"], 100, rng)
    cells = plan_cells(table, train, [1], [0], 2, 2, 0)
    clean = _images(["new000"] * 2, [0, 3], 100, rng)
    results = run_sweep(real, rows, val, test, _bank(cells, clean), cells, train, val_people,
                        test_people, ["real", "paincontrol"], ["mesh"],
                        {"mesh_components": [3]})  # fmt: skip
    prob = np.stack(results["test_prob"].to_numpy())
    assert prob.shape == (2, len(test))
    _, person = np.unique(test.identity, return_inverse=True)
    ones = np.ones(person.max() + 1)
    for p, auc in zip(prob, results["auc"], strict=True):  # the AUC the sweep reported
        assert people_auc(p, test.pspi > 0, person, ones)[0] == pytest.approx(auc)


def test_detection_scores_known_answers():
    truth = np.array([0, 0, 4, 8, 0, 12])
    perfect = detection_scores(truth, (truth > 0) * 0.5 + truth / 48, truth)
    assert perfect == {"auc": 1.0, "f1": 1.0, "pcc": pytest.approx(1.0)}
    # a missing prediction is a miss, not a free pass
    missed = detection_scores(truth, [0, 0, np.nan, 1, 0, 1], [0, 0, np.nan, 8, 0, 12])
    assert missed["auc"] < 1 and missed["f1"] == pytest.approx(0.8)
    assert detection_scores([0, 0], [0.1, 0.2], [0, 0])["auc"] is None


def _planted(gain_scarce, gain_full, n_seeds=6, n_people=15, per_person=30, person_sd=0.0,
             seed=0):  # fmt: skip
    """A sweep's results and test predictions with planted gains in the pain signal (levels 1,
    4 and 20; the warp gains half as much). ``person_sd``: how much the gain differs from one
    test person to another (arm-by-person heterogeneity, which seeds cannot see)."""
    rng = np.random.default_rng(seed)
    person = np.repeat([f"T{i:02d}" for i in range(n_people)], per_person)
    pain = np.tile(np.arange(per_person) % 3 == 0, n_people)
    by_person = rng.normal(0, person_sd, n_people)[np.repeat(np.arange(n_people), per_person)]
    rows, prob = [], []
    for s in range(n_seeds):
        for level, gain in ((1, gain_scarce), (4, gain_scarce / 2), (20, gain_full)):
            for arm, g in (("real", 0.0), ("paincontrol", gain), ("warp", gain / 2)):
                signal = pain * (1.0 + g + (by_person if arm != "real" else 0.0))
                p = 1 / (1 + np.exp(-(signal + rng.normal(0, 1, len(pain)))))
                prob.append(p)
                rows.append({"detector": "cnn", "level": level, "arm": arm, "seed": s,
                             "auc": roc_auc(pain, p), "f1": 0.5, "pcc": 0.5})  # fmt: skip
    return pd.DataFrame(rows), Predictions(np.stack(prob), pain, person)


def roc_auc(y, p):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, p)


SETTINGS = {"n_bootstrap": 1000, "alpha": 0.05, "equivalence_margin": 0.02,
            "claims": {"paincontrol_vs_real": [1, "all"], "paincontrol_vs_warp": [1]},
            "allow_failed_fits": False}  # fmt: skip


def test_people_auc_is_sklearns_with_people_counted_as_drawn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    person = np.repeat(np.arange(6), 10)
    pain = rng.random(60) < 0.4
    prob = np.round(rng.random(60) + 0.3 * pain, 1)  # ties count half
    counts = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 1, 3, 0, 0], [0, 0, 6, 0, 0, 0]], float)
    aucs = people_auc(prob, pain, person, counts)
    for auc, c in zip(aucs[:2], counts[:2], strict=True):
        assert auc == pytest.approx(roc_auc_score(pain, prob, sample_weight=c[person]))
    one = pain[person == 2]
    assert np.isnan(aucs[2]) == (one.all() or not one.any())  # one person: maybe one class


def test_claim_recovers_a_planted_effect_and_no_effect():
    results, predictions = _planted(0.8, 0.0)
    found = inference(results, predictions, "cnn", SETTINGS, seed=0)
    assert found["failures"] == []
    vs_real, vs_warp = found["claim"]["paincontrol_vs_real"], found["claim"]["paincontrol_vs_warp"]
    assert set(vs_real) == {"1", "4", "20"}
    observed = results.pivot_table(index=["level", "seed"], columns="arm", values="auc")
    gain = (observed["paincontrol"] - observed["real"]).groupby("level").mean()
    assert vs_real["1"]["estimate"] == pytest.approx(gain[1], rel=1e-9)  # the paired mean
    assert vs_real["1"]["ci_low"] > 0 and vs_real["1"]["verdict"] == "gain"
    assert vs_real["1"]["family"] == vs_real["20"]["family"] == "claims"
    assert vs_real["4"]["family"] == "exploratory" and vs_warp["1"]["family"] == "claims"
    assert vs_real["1"]["family_size"] == 2 * 3  # 3 declared claims, difference + TOST each
    for levels in found["claim"].values():
        for row in levels.values():
            assert row["p"] <= row["p_holm"] and row["p_tost"] <= row["p_tost_holm"] <= 1
            assert row["n_seeds"] == 6 and row["n_test_people"] == 15
    assert "classic_vs_real" not in found["claim"]  # no classic arm in these results
    assert found["cells"]["1"]["real"]["auc_ci_low"] < found["cells"]["1"]["real"]["auc"]
    null = inference(*_planted(0.0, 0.0, seed=1), "cnn", SETTINGS, seed=0)
    assert null["claim"]["paincontrol_vs_real"]["1"]["p_holm"] > 0.05


def test_intervals_resample_test_people_not_only_seeds():
    """The gain differs by test person and hardly by seed: a t-interval over seeds (the old
    claim) is far too narrow; the bootstrap over people and seeds is not."""
    from paincontrol_lib import stats

    results, predictions = _planted(0.3, 0.3, n_seeds=6, person_sd=1.5, seed=2)
    block = inference(results, predictions, "cnn", SETTINGS, seed=0)
    test = block["claim"]["paincontrol_vs_real"]["20"]
    wide = results.pivot_table(index=["level", "seed"], columns="arm", values="auc").loc[20]
    _, low, high = stats.t_interval(wide["paincontrol"] - wide["real"])
    assert test["ci_high"] - test["ci_low"] > 1.5 * (high - low)


def test_no_gain_is_claimed_only_by_an_equivalence_test():
    """Verdicts: an equal detector is "equivalent" only when the bootstrap puts the difference
    inside the margin; a wide, non-significant difference is "inconclusive", never "no gain"."""
    same, predictions = _planted(0.0, 0.0, n_people=40, per_person=60, seed=3)
    copy = predictions.prob.copy()
    real = same.index[same["arm"] == "real"]
    for arm in ("paincontrol", "warp"):  # each synthetic arm predicts what real-only predicts
        copy[same.index[same["arm"] == arm]] = copy[real] + 1e-4
    block = inference(same, Predictions(copy, predictions.pain, predictions.person), "cnn",
                      SETTINGS, seed=0)  # fmt: skip
    assert block["equivalence"]["paincontrol_vs_real"]["20"]["verdict"] == "equivalent"
    assert block["equivalence"]["paincontrol_vs_real"]["20"]["margin"] == 0.02
    noisy = inference(*_planted(0.0, 0.0, n_seeds=2, n_people=4, seed=4), "cnn", SETTINGS, 0)
    entry = noisy["equivalence"]["paincontrol_vs_real"]["20"]
    assert entry["p_tost"] > 0.05 and entry["verdict"] == "inconclusive"
    assert verdict({"estimate": 0.01, "p_holm": 0.01, "p_tost_holm": 0.01}) == (
        "gain within the margin"
    )
    assert verdict({"estimate": -0.1, "p_holm": 0.01, "p_tost_holm": 0.9}) == "loss"


def test_untestable_cells_and_failed_fits_are_named():
    from paincontrol_lib.stages.augment import _check_failures
    from paincontrol_lib.stats import FitError

    results, predictions = _planted(0.5, 0.0)
    gone = results[~((results["level"] == 4) & (results["arm"] == "warp"))]
    block = inference(gone, predictions, "cnn", SETTINGS, seed=0)
    reason = "an arm has no fits at this level"
    assert block["failures"] == [{"comparison": c, "level": 4, "reason": reason}
                                 for c in ("paincontrol_vs_warp", "warp_vs_real")]  # fmt: skip
    assert "4" not in block["claim"]["warp_vs_real"]
    with pytest.raises(RuntimeError, match="comparison=paincontrol_vs_warp level=4"):
        _check_failures(block["failures"], SETTINGS)
    _check_failures(block["failures"], SETTINGS | {"allow_failed_fits": True})
    with pytest.raises(ValueError, match="level 8, which the sweep did not run"):
        inference(results, predictions, "cnn", SETTINGS | {"claims": {"warp_vs_real": [8]}}, 0)
    with pytest.raises(FitError, match="two seeds"):
        mixed_model(results[results["seed"] == 0], "cnn")
    with pytest.raises(FitError, match="did not converge"):  # no seed effect to estimate
        mixed_model(results, "cnn")
    shift = np.random.default_rng(5).normal(0, 0.05, 6)  # seeds that differ: it converges
    fit = mixed_model(results.assign(auc=results["auc"] + shift[results["seed"]]), "cnn")
    assert fit.params["C(arm, Treatment('real'))[T.paincontrol]"] > 0


def test_metrics_follow_the_contract():
    results, predictions = _planted(0.5, 0.0)
    blocks = {"cnn": inference(results, predictions, "cnn", SETTINGS, seed=0)}
    summary = summarise(results, blocks)
    metrics = metrics_json(summary, blocks, "cnn", SETTINGS, {"n_test_people": 15})
    cell = metrics["levels"]["1"]["paincontrol"]
    assert {"auc_mean", "auc_ci_low", "auc_ci_high", "n_seeds"} <= set(cell)
    assert cell["auc_ci_low"] == blocks["cnn"]["cells"]["1"]["paincontrol"]["auc_ci_low"]
    assert set(metrics["claim"]) >= {"paincontrol_vs_real", "paincontrol_vs_warp", "method"}
    for test in metrics["claim"]["paincontrol_vs_warp"].values():
        assert {"estimate", "ci_low", "ci_high", "p_holm", "family", "verdict"} <= set(test)
    for levels in metrics["equivalence"].values():
        for entry in levels.values():
            assert {"margin", "p_tost", "verdict"} <= set(entry)
    assert metrics["inference"]["claims_family"] == {"paincontrol_vs_real": ["1", "all"],
                                                     "paincontrol_vs_warp": ["1"]}  # fmt: skip
    assert metrics["n_test_people"] == 15 and "cnn" in metrics["detectors"]


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
    # the shipped checkpoint's record names seed 1 and its 960 training people, for the
    # generator and for its identity adapter (trained on the same people)
    shipped = generator_training_data(Path(__file__).parent.parent / "pretrained/tiny-synthpain")
    assert [t.dataset for t in shipped] == ["synthpain(seed=1)"] * 2
    assert all(len(t.people) == 960 and t.people == shipped[0].people for t in shipped)
    assert not any(t.frames for t in shipped)  # rendered people: (seed, subject), not frames
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
