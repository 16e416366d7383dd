"""The evaluation protocol: choices on validation people, final numbers on test people, identity
against frames no method saw, realism metrics with known answers, a design where nobody is
transferred onto themself."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from paincontrol_lib.model.tuning import (
    amplitude_ratio,
    check_objective,
    grid_settings,
    require_split,
    select,
)


def _examples(splits):
    table = pd.DataFrame({"subject": [f"P{i}" for i in range(len(splits))], "split": splits})
    return SimpleNamespace(table=table)


def test_tuning_reads_val_people_only_and_the_final_scorer_test_people_only():
    from paincontrol_lib.model.sampler import SamplerConfig
    from paincontrol_lib.model.tuning import tune_sampler

    tune = {"n_samples": 2, "grids": [{"start": ["noise"]}],
            "objective": {"identity_weight": 1.0, "au_error_weight": 2.0}}  # fmt: skip
    with pytest.raises(ValueError, match="expected 'val' people only"):
        tune_sampler(None, _examples(["val", "test"]), SamplerConfig(), tune, 0, exact=None)
    require_split(_examples(["test", "test"]), "test")
    with pytest.raises(ValueError, match="expected 'test' people only"):
        require_split(_examples(["test", "val"]), "test")


def test_the_tuning_grid_holds_the_warp_and_noise_and_draws_nothing_twice():
    from paincontrol_lib.model.sampler import SamplerConfig

    grids = [
        {"start": ["noise"], "identity_scale": [1.0, 3.0], "start_strength": [0.2, 0.5],
         "guidance_scale": [1.0]},
        {"start": ["warped_target"], "start_strength": [0.0, 0.5, 1.0],
         "identity_scale": [1.0, 3.0]},
    ]  # fmt: skip
    settings = grid_settings(grids, SamplerConfig())
    assert settings == [
        {"guidance_scale": 1.0, "identity_scale": 1.0, "start": "noise"},  # strength unused
        {"guidance_scale": 1.0, "identity_scale": 3.0, "start": "noise"},
        {"start": "warped_target", "start_strength": 0.0},  # the warp itself, drawn once
        {"identity_scale": 1.0, "start": "warped_target", "start_strength": 0.5},
        {"identity_scale": 3.0, "start": "warped_target", "start_strength": 0.5},
    ]
    assert SamplerConfig(**settings[2]).steps_run == 0  # (strength 1 from the warp is noise)
    with pytest.raises(ValueError, match="unknown sampler settings"):
        grid_settings([{"reference_strength": [0.3]}], SamplerConfig())


def test_the_tuning_objective_is_declared_and_picks_the_closest_to_the_exact_answer():
    rows = [
        {"settings": {"start": "noise"}, "steps_run": 6, "objective": 0.40},
        {"settings": {"start": "warped_target"}, "steps_run": 1, "objective": 0.55},
        {"settings": {"start": "warped_target", "start_strength": 0.0}, "steps_run": 0,
         "objective": 0.60},
    ]  # fmt: skip
    assert select(rows, lambda r: True)["steps_run"] == 0  # if the warp is closest, it wins
    assert select(rows, lambda r: r["settings"]["start"] == "noise")["objective"] == 0.40
    assert select(rows, lambda r: r["steps_run"] > 5 and r["objective"] > 1) is None
    assert check_objective({"identity_weight": 1, "au_error_weight": 0.5})
    for bad in ({"identity_weight": 1}, {"identity_weight": 1, "au_error_weight": -1},
                {"identity_weight": 1, "au_error_weight": float("nan")}):  # fmt: skip
        with pytest.raises(ValueError, match="tune.objective"):
            check_objective(bad)
    assert amplitude_ratio({"eye": 0.4, "brow": 0.9}, {"eye": 0.8, "brow": 0.9}) == 0.75


def test_closeness_to_the_exact_answer_scores_the_exact_answer_at_the_ceiling():
    """The objective's instrument against known answers: the exact answer itself gets similarity
    1 and AU error 0; another person's face gets less similarity; no face found counts 0."""
    from paincontrol_lib.model.tuning import ExactAnswers

    exact = ExactAnswers.__new__(ExactAnswers)
    colours = np.array([[250, 10, 10], [10, 250, 10], [10, 10, 250]], np.uint8)
    images = np.repeat(np.repeat(colours[:, None, None], 8, 1), 8, 2)

    class Found:
        detected, landmarks = True, None

    class Blank:
        detected = False

    class Reader:
        def predict(self, crops, neutrals):
            return np.asarray(crops, float).mean((1, 2))[:, [0, 1, 2, 0, 1, 2]] / 255

    class Backend:
        dim = 3

        def embed(self, image, landmarks):
            v = np.asarray(image, float).reshape(-1, 3).mean(0)
            return v / np.linalg.norm(v)

    exact.identity = SimpleNamespace(backend=Backend())
    exact.mesher = lambda image: Blank() if image.max() == 0 else Found()
    exact.reader, exact.neutrals, exact.images = Reader(), images, images
    exact.embeddings, exact.aus = exact._embed(images), Reader().predict(images, images)
    weights = {"identity_weight": 1.0, "au_error_weight": 2.0}
    itself = exact.closeness(images, weights)
    np.testing.assert_allclose(itself["identity_similarity"], 1.0, atol=1e-6)
    np.testing.assert_allclose(itself["au_error"], 0.0, atol=1e-9)
    swapped = exact.closeness(images[[1, 2, 0]], weights)
    assert (swapped["identity_similarity"] < 0.2).all() and (swapped["au_error"] > 0).all()
    assert (swapped["objective"] < itself["objective"]).all()
    blank = exact.closeness(np.zeros_like(images), weights)
    np.testing.assert_array_equal(blank["identity_similarity"], 0.0)


class _MeanColour:
    """A fake identity backend: the embedding is the image's mean colour."""

    def embed(self, image, landmarks):
        return np.asarray(image, float).reshape(-1, 3).mean(0)


def test_a_copy_of_the_identity_photo_is_scored_against_an_unseen_frame_not_the_photo():
    """Stage 02's identity top-1: output = the identity photo (the copy stage 02 scores as the
    ceiling) is perfect against the photo it copies, but is scored against a frame no sampler
    saw, where it gets only what the photo itself gets."""
    from paincontrol_lib.model.heldout import IdentityScorer, identity_photo_images, score_images

    red, green, blue = (1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0)
    colours = [red, red, green, green, blue, blue]  # each person's identity photo, then a frame
    images = torch.stack([torch.tensor(c).view(3, 1, 1).expand(3, 8, 8) for c in colours])
    meshes = np.random.default_rng(0).uniform(0.2, 0.8, (6, 478, 3))
    table = pd.DataFrame({"key": ["a0", "a1", "b0", "b1", "c0", "c1"],
                          "subject": ["A", "A", "B", "B", "C", "C"],
                          "aligned": list(meshes.reshape(6, -1))})  # fmt: skip
    # Embeddings: [identity photo, unseen frame]; B's unseen frame looks like C's photo.
    references = {"A": [(255, 0, 0), (255, 0, 30)], "B": [(0, 255, 0), (0, 30, 255)],
                  "C": [(0, 0, 255), (40, 0, 255)]}  # fmt: skip
    examples = SimpleNamespace(
        table=table, images=images, references=references,
        reference_keys={s: [f"{s.lower()}0", f"{s.lower()}1"] for s in "ABC"},
    )  # fmt: skip
    rows = np.array([1, 3, 5])
    copies = identity_photo_images(examples, rows)
    np.testing.assert_array_equal(copies[2], np.full((8, 8, 3), (0, 0, 255), np.uint8))
    found = iter(meshes[rows] * 16)  # the mesher finds each row's control mesh
    mesher = lambda image: SimpleNamespace(detected=True, landmarks=next(found))  # noqa: E731
    scorer = IdentityScorer(_MeanColour(), references, "mean colour")
    scores = score_images(copies, examples, rows, 16, mesher, scorer)
    assert scores["identity_top1_identity_photo"] == 1.0  # scoring the photo rewards copying
    assert scores["identity_top1"] == pytest.approx(2 / 3)  # C's copy is nearest B's frame


def test_scoring_frames_are_frames_no_method_receives(tiny_synthpain):
    from paincontrol_lib.landmarks.table import scoring_rows

    _, table = tiny_synthpain
    table = table.assign(detected=True)
    picked = scoring_rows(table, sorted(table["subject"].unique()), seed=0)
    assert len(picked) == table["subject"].nunique()
    assert not picked["neutral_reference"].any()  # never the identity photo
    again = scoring_rows(table, sorted(table["subject"].unique()), seed=0)
    assert list(again["image"]) == list(picked["image"])
    two_sequences = pd.concat([table, table.assign(sequence=table["sequence"] + "_b",
                                                   neutral_reference=False)])  # fmt: skip
    other = scoring_rows(two_sequences, ["S000"], seed=0)
    photo_sequence = table.loc[
        table["neutral_reference"] & (table["subject"] == "S000"), "sequence"
    ]
    assert not other["sequence"].isin(photo_sequence).any()  # another sequence when there is one


@pytest.fixture(scope="module")
def landmark_table(tmp_path_factory, tiny_synthpain):
    from paincontrol_lib.data.sources import load_records
    from paincontrol_lib.landmarks.batch import build_landmark_table

    data_dir, _ = tiny_synthpain
    out = tmp_path_factory.mktemp("lm") / "landmarks"
    records = load_records("synthpain", data_dir)
    return build_landmark_table(records, data_dir, out, 64, workers=1, progress=False)[0]


def test_output_equal_to_the_identity_photo_scores_the_ceiling_not_above(landmark_table, tmp_path):
    """Stage 04: identity is scored against an unseen frame, and the ceiling is the identity photo
    scored exactly as outputs are, so copying the photo cannot beat it."""
    import json

    from paincontrol_lib.evaluate import identity_ceiling, identity_photo_crop, score_outputs
    from paincontrol_lib.io import save_image

    targets = sorted(landmark_table["subject"].unique())[:2]
    records = []
    for target in targets:
        save_image(tmp_path / f"{target}.png", identity_photo_crop(landmark_table, target, 64))
        records.append({"method": "copy", "mode": "explicit", "source": "explicit",
                        "target": target, "frame": None, "source_image": None,
                        "aus": json.dumps({}), "path": f"{target}.png",
                        "target_aligned": landmark_table.loc[
                            landmark_table["subject"] == target, "aligned"].iloc[0]})  # fmt: skip
    manifest = pd.DataFrame(records)
    scores = score_outputs(manifest, tmp_path, landmark_table, seed=0)
    ceiling = identity_ceiling(manifest, landmark_table, 64, seed=0).set_index("target")
    for _, row in scores.iterrows():
        assert row["identity_similarity"] <= ceiling.loc[row["target"], "identity_similarity"]
        assert row["identity_similarity"] == pytest.approx(
            ceiling.loc[row["target"], "identity_similarity"]
        )
    assert (scores["identity_similarity"] < scores["identity_similarity_to_photo"]).all()


def test_realism_metrics_known_answers():
    from paincontrol_lib.realism import frechet_distance, kid, precision_recall, realism_scores

    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = rng.normal(size=(300, 8))
    far = rng.normal(size=(300, 8)) + 3
    value, low, high = kid(same, real, seed=0)
    assert abs(value) < 0.05 and low <= value <= high
    assert kid(far, real, seed=0)[0] > 10 * max(abs(value), 1e-3)
    assert frechet_distance(far, real) > frechet_distance(same, real)
    precision, recall = precision_recall(same, real)
    assert precision > 0.8 and recall > 0.8
    collapsed = np.repeat(real[:1], 300, axis=0) + rng.normal(0, 1e-3, (300, 8))
    precision, recall = precision_recall(collapsed, real)
    assert precision > 0.9 and recall < 0.1  # a collapsed generator: real-looking, no variety
    assert precision_recall(far, real)[0] < 0.1
    assert set(realism_scores(same, real, seed=0)) >= {"fd", "kid", "kid_ci_low", "precision"}
    with pytest.raises(ValueError, match="at least 2"):
        kid(real[:1], real)


def test_the_transfer_design_balances_targets_and_never_transfers_onto_oneself():
    from paincontrol_lib.stages.transfer import frames_across_pspi, plan_design

    people = [f"P{i:02d}" for i in range(12)]
    rows = [{"subject": p, "sequence": f"{p}_q{q}", "frame": f, "detected": True,
             "split": "test", "PSPI": float((i + q) % 5 and f in (4, 5))}
            for i, p in enumerate(people) for q in range(2) for f in range(10)]  # fmt: skip
    table = pd.DataFrame(rows)
    design = plan_design(table, n_sources=10, n_targets=10, targets_per_source=3, seed=0)
    assert len(design.sources) == 10 and len(design.targets) == 10 and len(design.pairs) == 30
    assert all(s != t for s, t in design.pairs)
    assert len(set(design.sources) & set(design.targets)) >= 8  # 10 + 10 of 12: some are both
    received = pd.Series([t for _, t in design.pairs]).value_counts()
    assert received.max() - received.min() <= 1 and set(received.index) <= set(design.targets)
    with pytest.raises(ValueError, match="cannot give"):
        plan_design(table, n_sources=13, n_targets=10, targets_per_source=3, seed=0)
    frames = table[table["sequence"] == "P01_q0"]
    picked = frames_across_pspi(frames, 3)
    assert list(picked["frame"]) == sorted(picked["frame"]) and picked["PSPI"].max() > 0


def test_au_guidance_is_tuned_on_top_of_the_chosen_paincontrol_and_chooses_nothing_else(
    monkeypatch,
):
    """The guidance grid is drawn with PainControl's chosen setting and nothing else changed;
    its rows never win PainControl, the warp start or the best of all, even when they score
    higher; ``au_guided`` is the best of them."""
    from dataclasses import replace

    from paincontrol_lib.model import tuning
    from paincontrol_lib.model.sampler import SamplerConfig

    drawn = []

    def fake_draw(model, examples, rows, config, seed, guide_dir):
        drawn.append(config)
        # closer to the exact answer with identity scale 3 and with AU guidance 80
        score = config.identity_scale + (5.0 - abs(config.au_guidance - 80) / 40) * (
            config.au_guidance > 0
        ) + (config.au_guidance_last == 0.5)  # fmt: skip
        return np.full((len(rows), 1), score)

    monkeypatch.setattr(tuning, "draw_samples", fake_draw)
    monkeypatch.setattr(tuning, "mesh_images", lambda images, mesher: None)
    monkeypatch.setattr(tuning, "score_images", lambda *a, **k: {"detection_rate": 1.0})
    n = 4
    exact = SimpleNamespace(
        images=None, subjects=np.array([f"P{i}" for i in range(n)]), mesher=None,
        identity=SimpleNamespace(label="encoder"), reader=SimpleNamespace(record={}),
        closeness=lambda images, objective, meshed=None: {
            "objective": np.zeros(n) if images is None else images[:, 0].astype(float)},
    )  # fmt: skip
    examples = _examples(["val"] * n)
    tune = {
        "n_samples": n,
        "objective": {"identity_weight": 1.0, "au_error_weight": 2.0},
        "grids": [
            {"start": ["noise"], "identity_scale": [1.0, 3.0]},
            {"start": ["warped_target"], "start_strength": [0.0, 0.5]},
        ],
        "au_guidance_grid": {"au_guidance": [40.0, 80.0], "au_guidance_last": [0.17, 0.5]},
    }
    monkeypatch.setattr(tuning, "tuning_rows", lambda examples, tune, seed: np.arange(n))
    report, per_row = tuning.tune_sampler(None, examples, SamplerConfig(), tune, 0, exact)
    chosen = SamplerConfig.from_params(report["paincontrol"])
    guided = SamplerConfig.from_params(report["au_guided"])
    assert chosen.identity_scale == 3.0 and chosen.au_guidance == 0
    assert guided == replace(chosen, au_guidance=80.0, au_guidance_last=0.5)
    assert [c.identity_scale for c in drawn[-4:]] == [3.0] * 4  # on top of the chosen one
    assert sum(row["au_guided"] for row in report["grid"]) == 4 == len(per_row) - 4
    assert SamplerConfig.from_params(report["selected"]).au_guidance == 0
    assert report["grid"][report["grid_rows"]["au_guided"]]["au_guided"]
