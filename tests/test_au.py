"""AU backends (oracle, mesh, py-feat conversion), the estimator's validation, and the identity
metric on real photographs."""

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paincontrol_lib import retarget as rt
from paincontrol_lib.au_reading import backends as au
from paincontrol_lib.data.records import AU_COLUMNS
from paincontrol_lib.facs import PAIN_AUS
from paincontrol_lib.landmarks.align import canonical_landmarks


def test_oracle_is_the_dataset_coding(tiny_synthpain):
    _, table = tiny_synthpain
    out = au.oracle(table)
    assert list(out.columns) == [*AU_COLUMNS, "PSPI"]
    np.testing.assert_allclose(out["PSPI"], table["PSPI"])
    with pytest.raises(ValueError, match="no ground-truth AUs"):
        au.oracle(table.drop(columns=["AU04"]))


def test_mesh_backend_recovers_known_expressions():
    neutral = canonical_landmarks() * 250 + 30
    asked = [{"AU04": 4.0}, {"AU43": 1.0, "AU04": 2.0}, {}]
    meshes = np.stack([rt.retarget("explicit", neutral, aus=a or {"AU04": 0}).aligned * 180
                       for a in asked])  # fmt: skip
    out = au.mesh_aus(meshes, np.stack([neutral] * 3))
    assert out.loc[0, "AU04"] == pytest.approx(4.0, abs=0.8) and out.loc[0, "AU43"] < 0.3
    assert out.loc[1, "AU43"] > 0.6 and out.loc[1, "AU04"] == pytest.approx(2.0, abs=0.8)
    assert out.loc[2, "PSPI"] < 0.5  # neutral reads as (nearly) no pain
    with pytest.raises(ValueError, match="must match"):
        au.mesh_aus(meshes, neutral[None])


def test_backends_validated_on_test_people_chosen_on_val(tiny_synthpain, tmp_path):
    """au_estimator.json's contract on a tiny table: every reader chosen on val people and
    reported on test people, clean and degraded, with absolute-agreement ICCs and intervals
    over people; one scoring reader per AU, never the guide."""
    from paincontrol_lib.au_reading.learned import read_table
    from paincontrol_lib.au_reading.pixels import PixelAU, network
    from paincontrol_lib.data.sources import load_records
    from paincontrol_lib.landmarks.batch import build_landmark_table
    from paincontrol_lib.landmarks.table import load_landmark_table

    data_dir, _ = tiny_synthpain
    build_landmark_table(load_records("synthpain", data_dir), data_dir, tmp_path / "lm", 64,
                         workers=1, progress=False)  # fmt: skip
    table = load_landmark_table(tmp_path / "lm")
    reads = read_table(table, seed=0, copies=2)
    weights = PixelAU(network(3), {"trained_on": "nothing (a test)"}).save(tmp_path / "pixels")
    settings = {"alphas": [1.0, 10.0], "degraded_copies": [0, 1], "path": tmp_path / "est.npz",
                "pixels": {"weights": weights, "guide": weights, "fine_tune_steps": 2,
                           "eval_every": 1, "learning_rate": 1e-3, "batch_size": 4}}  # fmt: skip
    readers, report = au.validate_backends(reads, settings, seed=0, n_boot=20)
    test_people = set(table.loc[table["split"] == "test", "subject"])
    assert report["n_test_people"] == len(test_people) > 0
    assert (tmp_path / "est.npz").is_file()
    pixels = report["readers"]["pixels"]
    assert [c["step"] for c in pixels["selection"]["curve"]] == [0, 1, 2]
    assert set(pixels["training"]["fine_tune_people"]).isdisjoint(
        test_people | set(table.loc[table["split"] == "val", "subject"])
    )
    assert len(report["readers"]["learned"]["selection"]["grid"]) == 4
    for condition in ("clean", "degraded"):
        for entry in (
            report[condition],
            *(r["test"][condition] for r in report["readers"].values()),
        ):
            assert set(entry) == {*PAIN_AUS, "PSPI"}
            assert {"mae", "icc_a1", "icc_a1_ci_low", "icc_c1", "icc_c1_ci_high", "f1",
                    "n_people"} <= set(entry["AU04"])  # fmt: skip
    assert set(report["readers"]) == {"pixels", "learned", "mesh", "guide"}
    assert set(report["backend_per_au"]) == set(PAIN_AUS)
    assert set(report["backend_per_au"].values()) <= {"learned", "mesh", "pixels"}
    assert set(readers.read_all(reads.faces())) == {"pixels", "learned", "mesh", "guide"}
    assert set(report["unreliable_aus"]) <= set(PAIN_AUS)


def test_pyfeat_output_converts_without_weights():
    fex = pd.DataFrame({"AU01": [0.2, 1.0], "AU04": [0.8, 0.0], "AU06": [0.4, 0.0],
                        "AU07": [0.2, 0.0], "AU09": [0.1, 0.0], "AU10": [0.3, 0.0],
                        "AU43": [0.7, 0.3], "FaceScore": [0.99, 0.98]})  # fmt: skip
    out = au.from_pyfeat(fex)
    assert out.loc[0, "AU04"] == pytest.approx(4.0) and out.loc[1, "AU01"] == pytest.approx(5.0)
    assert list(out["AU43"]) == [1.0, 0.0] and np.isnan(out.loc[0, "AU12"])
    assert out.loc[0, "PSPI"] == pytest.approx(4 + 2 + 1.5 + 1) and out.loc[1, "PSPI"] == 0
    # a pain AU py-feat did not report leaves PSPI unknown, never silently lower
    assert np.isnan(au.from_pyfeat(fex.drop(columns=["AU10"])).loc[0, "PSPI"])
    with pytest.raises(ValueError, match="no AU columns"):
        au.from_pyfeat(pd.DataFrame({"x": [1]}))


def test_pyfeat_backend_fails_at_once_offline():
    import torch

    with pytest.raises(FileNotFoundError, match="mesh"):
        au.estimate("pyfeat", paths=[])
    assert torch.is_grad_enabled()  # py-feat's failed constructor must not switch autograd off
    with pytest.raises(ValueError, match="AU backend"):
        au.estimate("openface")


def test_identity_metric_separates_people_on_real_photographs():
    """dlib distances: frames of one video (same person) vs photos of different people, all from
    py-feat's own test data."""
    import cv2
    import feat

    from paincontrol_lib.identity import make_identity
    from paincontrol_lib.landmarks.image import load_image
    from paincontrol_lib.landmarks.mesher import FaceMesher

    folder = Path(feat.__file__).parent / "tests" / "data"
    people = {}
    for video in ("WolfgangLanger_Pexels.mp4", "single_face.mp4"):
        capture = cv2.VideoCapture(str(folder / video))
        n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for i in np.linspace(0, n - 1, 4).astype(int):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(i))
            ok, frame = capture.read()
            assert ok, f"{video}: frame {i} unreadable"
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        people[video] = frames
    for photo in ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg"):
        people[photo] = [load_image(folder / photo)]
    mesher, backend = FaceMesher(), make_identity("dlib")
    embeddings = {}
    for name, images in people.items():
        found = [(im, mesher(im)) for im in images]
        assert all(f.detected for _, f in found), name
        embeddings[name] = [backend.embed(im, f.landmarks) for im, f in found]
    mesher.close()
    same = [
        np.linalg.norm(a - b) for e in embeddings.values() for a, b in itertools.combinations(e, 2)
    ]
    different = [np.linalg.norm(a - b) for x, y in itertools.combinations(embeddings, 2)
                 for a in embeddings[x] for b in embeddings[y]]  # fmt: skip
    auc = np.mean([s < d for s in same for d in different])
    assert auc >= 0.95, (np.round(same, 2), np.round(sorted(different)[:5], 2))
    assert np.median(same) < 0.6 < np.median(different)  # dlib's own same-person threshold


# ---------------------------------------------------------------------------------------------
# Evaluation metrics on hand-made cases with known answers


def test_frechet_distance_and_image_similarity_known_answers():
    from paincontrol_lib.evaluate import ssim_psnr
    from paincontrol_lib.realism import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-4)
    shifted = frechet_distance(a, a + np.array([3.0, 0, 0]))
    assert shifted == pytest.approx(9.0, rel=0.01)  # |mean shift|^2, same covariance
    assert frechet_distance(a, a * 2) == pytest.approx(3 * (1 - 2) ** 2, rel=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], a)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    ssim, psnr = ssim_psnr(image, image)
    assert ssim == pytest.approx(1.0) and psnr == np.inf
    noisy = np.clip(image.astype(int) + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    assert ssim_psnr(image, noisy)[0] < 0.99 and 20 < ssim_psnr(image, noisy)[1] < 30


def test_clustered_summary_and_crossed_tests_against_the_warp():
    from paincontrol_lib.evaluate import compare_methods, summarise
    from paincontrol_lib.stats import bootstrap_ci

    mean, lo, hi = bootstrap_ci(np.r_[np.ones(50), np.zeros(50), np.nan], n_boot=500)
    assert mean == pytest.approx(0.5) and lo < 0.5 < hi and hi - lo < 0.3
    rng = np.random.default_rng(1)
    rows = []
    sources = [f"S{i}" for i in range(6)]
    targets = {t: rng.normal(0, 0.5) for t in (f"T{i}" for i in range(6))}  # person effects
    for source in sources:
        for target, person in targets.items():
            for frame in range(3):
                base = 2 + person + rng.normal(0, 0.2)
                for method, shift in (("warp", 0.0), ("paincontrol", -1.0), ("no_text", 0.0)):
                    rows.append({"method": method, "mode": "delta", "source": source,
                                 "target": target, "frame": frame, "detected": True,
                                 "path": f"{method}/{source}_to_{target}_f{frame}.png",
                                 "error_PSPI": base + shift + rng.normal(0, 0.1),
                                 "nme": 0.02 + rng.normal(0, 0.001),
                                 "identity_similarity": 0.9 + rng.normal(0, 0.01),
                                 "identity_top1_gallery": float(target != "T0" or frame > 0),
                                 })  # fmt: skip
    scores = pd.DataFrame(rows)
    summary = summarise(scores)
    top1 = summary[summary["metric"] == "identity_top1_gallery"].set_index("method")
    assert top1.loc["warp", "mean"] < 1 and (top1["lo"] < top1["mean"]).all()
    assert (top1["hi"] == 1).all()  # a proportion's interval stops at 1 (the t-interval does not)
    pspi_err = summary[summary["metric"] == "error_PSPI"].set_index("method")
    assert pspi_err.loc["warp", "mean"] - pspi_err.loc["paincontrol", "mean"] == pytest.approx(
        1.0, abs=0.05
    )
    # the CI is over people (two-way): as wide as the targets' spread, not the images' noise
    assert pspi_err.loc["warp", "hi"] - pspi_err.loc["warp", "lo"] > 0.3
    endpoints = {"pspi_mae": "error_PSPI", "identity_similarity": "identity_similarity",
                 "nme": "nme", "ssim_to_exact": "ssim_to_exact"}  # fmt: skip
    family = {"vs_warp": {"baseline": "warp", "methods": ["paincontrol", "no_text"]}}
    tests, failures = compare_methods(scores, endpoints, family)
    assert failures == []
    ours = tests["pspi_mae"]["paincontrol_vs_warp"]
    assert ours["estimate"] == pytest.approx(-1.0, abs=0.05) and ours["ci_high"] < 0
    assert ours["p_holm"] < 0.001 < tests["pspi_mae"]["no_text_vs_warp"]["p_holm"]
    assert set(tests) == {"pspi_mae", "identity_similarity", "nme"}  # no exact answers here
    n_tests = sum(len(t) for t in tests.values())
    assert all(t["p_holm"] >= t["p"] or np.isnan(t["p"]) for m in tests.values()
               for t in m.values()) and n_tests == 6  # fmt: skip


def test_requested_aus_use_the_source_ground_truth(tiny_synthpain):
    import json

    from paincontrol_lib.evaluate import requested_aus

    _, table = tiny_synthpain
    frame = table.sort_values("PSPI").iloc[-1]
    manifest = pd.DataFrame([
        {"mode": "delta", "source_image": frame["image"], "aus": json.dumps({"AU04": 0.1})},
        {"mode": "explicit", "source_image": None, "aus": json.dumps({"AU04": 3, "AU43": 1})},
    ])  # fmt: skip
    asked = requested_aus(manifest, table)
    assert asked.loc[0, "PSPI"] == pytest.approx(frame["PSPI"])  # ground truth, not the estimate
    assert asked.loc[1, "AU04"] == 3 and asked.loc[1, "PSPI"] == 4


def test_backend_agreement_between_two_readers():
    a = pd.DataFrame({"AU04": [0, 1, 2, 3, 4, 5.0], "AU43": [0, 1] * 3})
    report = au.backend_agreement(a, a + 0.0)
    assert set(report) == {"AU04", "AU43"} and report["AU04"]["icc_a1"] == pytest.approx(1)
    with pytest.raises(ValueError, match="same images"):
        au.backend_agreement(a, a.iloc[:3])
    with pytest.raises(ValueError, match="no AU in common"):
        au.backend_agreement(a[["AU04"]], a[["AU43"]])
