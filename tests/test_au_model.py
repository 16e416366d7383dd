"""The learned AU estimator (``au_model``): it reads AUs of people it never saw from MediaPipe
meshes of rendered faces, never touches the synthesis basis, survives a save/load, and the
checks built on it (backend choice, the AU4/AU43 claim, paired realism test) can fail."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paincontrol_lib.au_reading import learned as au_model
from paincontrol_lib.facs import PAIN_AUS, pspi

LIBRARY = Path(__file__).resolve().parent.parent / "paincontrol_lib"


def _random_aus(rng) -> dict[str, float]:
    aus = {au: float(rng.integers(1, 6)) * (rng.random() < 0.6) for au in PAIN_AUS[:-1]}
    aus["AU43"] = float(rng.random() < 0.3)
    return aus


@pytest.fixture(scope="module")
def rendered_people():
    """Meshes read from aligned crops of 9 SynthPain people (not the default dataset's: seed
    11), each with a neutral frame and random pain expressions; 6 to train, 3 held out."""
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import default_renderer
    from paincontrol_lib.landmarks.align import align, aligned_crop

    renderer, rng = default_renderer(128), np.random.default_rng(3)
    crops, neutral_crops, rows = [], {}, []
    for index in range(9):
        person = sample_identity(renderer.model, 11, index)
        n_frames = 16 if index < 6 else 6
        for frame in range(-1, n_frames):
            aus = {} if frame < 0 else _random_aus(rng)
            truth = renderer.render(person, aus)
            points = np.column_stack([truth.landmarks_2d, truth.landmarks_3d[:, 2]])
            crop = aligned_crop(truth.image, align(points)[1], au_model.CLEAN_SIZE)
            if frame < 0:
                neutral_crops[index] = crop
                continue
            crops.append(crop)
            rows.append({"subject": index, "split": "train" if index < 6 else "test",
                         **{au: aus.get(au, 0.0) for au in PAIN_AUS}})  # fmt: skip
    rows = pd.DataFrame(rows)
    meshes = au_model.read_meshes(crops)
    neutral = dict(zip(neutral_crops, au_model.read_meshes(list(neutral_crops.values())),
                       strict=True))  # fmt: skip
    neutrals = np.stack([neutral[s] for s in rows["subject"]])
    return rows, meshes, neutrals


def test_learned_estimator_reads_people_it_never_saw(rendered_people):
    rows, meshes, neutrals = rendered_people
    assert np.isfinite(meshes).all(), "MediaPipe should find every rendered face"
    train = (rows["split"] == "train").to_numpy()
    model = au_model.LearnedAU.fit(
        au_model.displacement(meshes[train], neutrals[train]), rows[train], alpha=1.0
    )
    held = rows[~train].reset_index(drop=True)
    estimate = model.read(meshes[~train], neutrals[~train])
    mae = (estimate[list(PAIN_AUS)] - held[list(PAIN_AUS)]).abs().mean()
    baseline = (held[list(PAIN_AUS)] - rows[train][list(PAIN_AUS)].mean()).abs().mean()
    # Stated bounds; measured on SynthPain v2 renders: MAE AU04 0.61, AU06 0.48, AU07 1.34,
    # AU09 0.31, AU10 0.50, AU43 0.06, against 1.84 / 2.02 / 1.70 / 1.56 / 1.69 / 0.38 for
    # guessing the training mean (96 training frames of 6 people only; the stage trains on
    # ~1000). AU7's lower-lid bulge and line (appearance) pull MediaPipe's lower-lid points:
    # on geometry-only renders its MAE was 0.99, so the mesh reader gets a looser AU7 bound.
    assert mae["AU04"] < 1.0 and mae["AU43"] < 0.2, mae
    bound = 0.7 * baseline
    bound["AU07"] = 0.85 * baseline["AU07"]
    assert (mae < bound).all(), f"estimator {mae.to_dict()} vs mean {baseline.to_dict()}"
    pspi_error = np.abs(estimate["PSPI"] - pspi(held)).mean()
    assert pspi_error < 0.6 * np.abs(pspi(held) - pspi(held).mean()).mean()


def test_learned_estimator_is_not_the_synthesis_basis():
    """The backend must learn what MediaPipe sees, not invert the AU->mesh model that made the
    data: ``au_reading.learned`` imports nothing that holds that model (or the renderer)."""
    tree = ast.parse((LIBRARY / "au_reading" / "learned.py").read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    forbidden = {"paincontrol_lib.au_to_mesh", "paincontrol_lib.au_basis",
                 "paincontrol_lib.au_reading.backends", "paincontrol_lib.retarget",
                 "paincontrol_lib.data.synthpain"}  # fmt: skip
    assert not any(m in forbidden or m.startswith("paincontrol_lib.data.synthpain")
                   for m in imported), imported  # fmt: skip


def test_estimator_round_trip_and_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 478 * 3))
    targets = pd.DataFrame({"AU04": np.clip(x[:, 0] + 2, 0, 5), "AU43": (x[:, 1] > 0) * 1.0})
    model = au_model.LearnedAU.fit(x, targets, alpha=1.0, record={"people": ["a"]})
    path = model.save(tmp_path / "est.npz")
    again = au_model.LearnedAU.load(path)
    pd.testing.assert_frame_equal(model.predict(x), again.predict(x))
    assert again.record == {"people": ["a"]} and again.columns == ("AU04", "AU43")
    out = model.predict(x)
    assert out["AU43"].between(0, 1).all() and out["AU04"].between(0, 5).all()
    assert out["AU06"].isna().all()  # never trained on: not guessed
    with pytest.raises(ValueError, match="reads 1434"):
        model.predict(x[:, :10])
    with pytest.raises(FileNotFoundError, match="stage 04"):
        au_model.LearnedAU.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="no AU ground truth"):
        au_model.LearnedAU.fit(x, pd.DataFrame({"AU04": [np.nan] * 40}), alpha=1.0)
    with pytest.raises(ValueError, match="478"):
        au_model.displacement(np.zeros((2, 10, 3)), np.zeros((2, 10, 3)))
    missing = x.copy()
    missing[0] = np.nan
    assert model.predict(missing).iloc[0].isna().all()  # no face: no AUs, no PSPI


def test_degradation_is_seeded_and_generator_sized():
    crop = (np.random.default_rng(1).random((128, 128, 3)) * 255).astype(np.uint8)
    a = au_model.degrade(crop, np.random.default_rng(5))
    b = au_model.degrade(crop, np.random.default_rng(5))
    c = au_model.degrade(crop, np.random.default_rng(6))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_agreement_known_answers():
    truth = pd.DataFrame({au: [0, 1, 2, 3, 4, 5.0] for au in PAIN_AUS}).assign(AU43=[0, 1] * 3)
    truth["PSPI"] = pspi(truth)
    people = np.array(["a", "a", "b", "b", "c", "c"])
    perfect = au_model.agreement(truth, truth, groups=people, n_boot=50)
    assert perfect["AU04"]["icc_a1"] == pytest.approx(1) and perfect["AU04"]["mae"] == 0
    assert perfect["AU04"]["icc_a1_ci_low"] == pytest.approx(1) and perfect["AU04"]["n_people"] == 3
    assert perfect["AU43"]["f1"] == 1 and perfect["PSPI"]["f1"] is None
    biased = au_model.agreement(truth, truth + 1.0, n_boot=0)["AU04"]
    assert biased["icc_c1"] == pytest.approx(1) and biased["icc_a1"] < 0.9  # bias costs A1 only
    assert biased["icc_a1_ci_low"] is None  # n_boot 0: no interval
    none_called = au_model.agreement(truth, truth * 0, n_boot=0)
    assert none_called["AU04"]["f1"] == 0 and none_called["AU04"]["mae"] == pytest.approx(2.5)


def test_output_aus_take_each_au_from_its_backend():
    from paincontrol_lib.au_reading.backends import AUReaders, mesh_reads
    from paincontrol_lib.landmarks.align import canonical_landmarks

    def fixed(faces):
        return pd.DataFrame({au: np.full(len(faces), 2.0) for au in PAIN_AUS})

    neutral = np.stack([canonical_landmarks()] * 3)  # no expression: the mesh backend reads ~0
    crops = np.zeros((3, 8, 8, 3), np.uint8)
    faces = au_model.Faces(neutral, neutral, crops, crops)
    backends = dict.fromkeys(PAIN_AUS, "pixels") | {"AU06": "mesh"}
    readers = AUReaders({"mesh": mesh_reads, "pixels": fixed, "guide": fixed}, backends)
    out = readers(faces)
    assert (out["AU04"] == 2).all() and (out["AU06"] < 0.1).all()
    assert np.allclose(out["PSPI"], 2 + 2 + 2 + 2)  # AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43
    assert set(readers.read_all(faces)) == {"mesh", "pixels", "guide"}  # the guide is read too
    missing = np.full_like(neutral, np.nan)  # no face found: nothing is read, PSPI included
    assert AUReaders()(au_model.Faces(missing, missing, crops, crops)).isna().all().all()
    with pytest.raises(ValueError, match="not given"):
        AUReaders({"mesh": mesh_reads}, {"AU04": "pixels"})


def _scores(hard: float, rest: float, method: str = "m", n_targets: int = 8,
            noise: float = 0.0) -> pd.DataFrame:  # fmt: skip
    """Outputs of ``method`` whose reading misses the request by ``hard`` (AU4, AU43) or
    ``rest`` standard deviations of the requests beyond the reader's own error on the exact
    answer, give or take a jitter that cancels within each person; the reader's noise (a
    degraded exact answer) misses by ``noise`` more everywhere."""
    rng = np.random.default_rng(0)
    rows = []
    for target in range(n_targets):
        jitter = rng.normal(0, 0.05, (3, len(PAIN_AUS)))
        for k in range(6):
            row = {"method": method, "target": f"T{target}", "path": f"{method}/r{k}_{target}"}
            for au in PAIN_AUS:
                asked = float(rng.integers(0, 2)) if au == "AU43" else float(rng.integers(0, 6))
                own = abs(rng.normal(0, 0.1))  # the reader's error on the exact answer
                base = hard if au in ("AU04", "AU43") else rest
                row |= {f"requested_{au}": asked, "_own_" + au: own,
                        "_miss_" + au: own + base
                        + jitter[k // 2, PAIN_AUS.index(au)] * (-1) ** k,
                        "_null_" + au: own + noise}  # fmt: skip
            rows.append(row)
    frame = pd.DataFrame(rows)
    spread = frame[[f"requested_{au}" for au in PAIN_AUS]].std()
    for au in PAIN_AUS:
        unit, asked = spread[f"requested_{au}"], frame[f"requested_{au}"]
        frame[f"estimator_error_{au}"] = frame.pop("_own_" + au) * unit
        frame[f"exact_estimated_{au}"] = asked + frame[f"estimator_error_{au}"]
        frame[f"estimated_{au}"] = asked + frame.pop("_miss_" + au) * unit
        frame[f"null_estimated_{au}"] = asked + frame.pop("_null_" + au) * unit
    return frame


def test_hard_au_claim_finds_a_planted_difference_and_its_absence():
    from paincontrol_lib.evaluate import hard_au_claim

    harder = hard_au_claim(_scores(0.6, 0.2), n_boot=200)["methods"]["m"]
    assert harder["hard_minus_rest"]["estimate"] == pytest.approx(0.4, abs=0.02)
    assert harder["hard_minus_rest"]["ci_low"] > 0.3
    assert set(harder["ranking"][:2]) == {"AU04", "AU43"}
    assert harder["excess"]["AU06"]["mean"] == pytest.approx(0.2, abs=0.02)  # in request SDs
    equal = hard_au_claim(_scores(0.2, 0.2), n_boot=200)["methods"]["m"]["hard_minus_rest"]
    assert abs(equal["estimate"]) < 1e-9 and equal["ci_low"] < 1e-9  # not supported
    # the reader's noise is subtracted: a method no worse than a degraded exact answer is 0
    noisy = hard_au_claim(_scores(0.3, 0.3, noise=0.3), n_boot=200)["methods"]["m"]
    assert noisy["beyond_null"]["AU04"]["mean"] == pytest.approx(0.0, abs=0.02)


def test_hard_au_claim_says_which_method_the_ranking_describes():
    from paincontrol_lib.evaluate import hard_au_claim

    def claim(ours, warp):
        scores = pd.concat([_scores(*ours, method="paincontrol"), _scores(*warp, method="warp")])
        return hard_au_claim(scores, n_boot=200)

    task = claim((0.5, 0.2), (0.9, 0.2))  # the warp shows the pattern more strongly
    assert task["verdict"]["describes"] == "the task" and task["paincontrol_vs_warp"]["ci_high"] < 0
    ours = claim((0.9, 0.2), (0.2, 0.2))
    assert ours["verdict"]["describes"] == "paincontrol"
    assert ours["paincontrol_vs_warp"]["estimate"] == pytest.approx(0.7, abs=0.03)
    assert claim((0.2, 0.2), (0.2, 0.2))["verdict"]["describes"] == "neither"


def test_transfer_slopes_recover_a_planted_under_transfer():
    from paincontrol_lib.evaluate import transfer_slopes

    rng = np.random.default_rng(1)
    rows = []
    for target in range(10):
        for _ in range(12):
            asked = {au: float(rng.integers(0, 6)) for au in PAIN_AUS[:-1]}
            asked["AU43"] = float(rng.integers(0, 2))
            row = {"method": "half", "target": f"T{target}"}
            for au, value in {**asked, "PSPI": pspi(asked)}.items():
                row |= {f"requested_{au}": value, f"exact_estimated_{au}": value,
                        f"estimated_{au}": 0.5 * value + rng.normal(0, 0.1)}  # fmt: skip
            rows.append(row)
    slopes = transfer_slopes(pd.DataFrame(rows), n_boot=200)
    half = slopes["methods"]["half"]
    assert half["PSPI"]["estimate"] == pytest.approx(0.5, abs=0.03)
    assert 0.4 < half["PSPI"]["ci_low"] < half["PSPI"]["ci_high"] < 0.6
    assert slopes["exact_answer"]["AU04"]["estimate"] == pytest.approx(1.0)  # a perfect reading


def test_paired_two_sample_auc_tells_shifted_from_identical():
    from paincontrol_lib.realism import paired_two_sample_auc

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(120, 4))
    groups = np.repeat(np.arange(12), 10)
    same = paired_two_sample_auc(rng.normal(size=truth.shape), truth, groups)
    shifted = paired_two_sample_auc(truth + 2.0, truth, groups)
    assert shifted > 0.95 and abs(same - 0.5) < 0.15
    assert paired_two_sample_auc(truth, truth, np.zeros(120)) is None  # one person: no test
    from paincontrol_lib.realism import paired_two_sample_auc_ci

    blurred = truth + rng.normal(size=truth.shape)
    interval = paired_two_sample_auc_ci(blurred, truth, groups)
    assert interval["auc"] == paired_two_sample_auc(blurred, truth, groups)  # the same test
    assert interval["ci_low"] < interval["auc"] < interval["ci_high"]  # people resampled
    assert paired_two_sample_auc_ci(truth + 2.0, truth, groups)["ci_low"] > 0.9
    from sklearn.metrics import roc_auc_score

    from paincontrol_lib.realism import _rank_auc

    labels, tied = np.r_[np.ones(50), np.zeros(50)], np.round(rng.normal(size=100), 1)
    assert _rank_auc(labels, tied) == pytest.approx(roc_auc_score(labels, tied), abs=1e-12)


def test_penalty_path_equals_separate_ridge_solves():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 30))
    targets = pd.DataFrame({"AU04": np.clip(x[:, :3].sum(1) + 2, 0, 5)})
    path = au_model.LearnedAU.fit_path(x, targets, [0.1, 10.0])
    z = (x - x.mean(0)) / x.std(0)
    y = targets["AU04"].to_numpy()[:, None]
    for model, alpha in zip(path, [0.1, 10.0], strict=True):
        direct = np.linalg.solve(z.T @ z + alpha * np.eye(30), z.T @ (y - y.mean()))
        assert np.allclose(model.coef, direct, atol=1e-8) and model.alpha == alpha


def test_parallel_reading_gives_the_same_meshes():
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import default_renderer

    renderer = default_renderer(128)
    crops = [renderer.render(sample_identity(renderer.model, 11, i), {"AU04": i}).image
             for i in range(4)]  # fmt: skip
    alone, parallel = au_model.read_meshes(crops), au_model.read_meshes_parallel(crops, 2)
    assert np.isfinite(alone).all() and np.array_equal(alone, parallel)
