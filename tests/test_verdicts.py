"""The README's and docs' verdicts follow issue 30's rules, rendered from metrics: a gain only
when the Holm-adjusted test rejects, "no gain" only when the equivalence test does, the study's
validation rates with their Monte Carlo intervals. Metrics are built here by the same code the
stages use (planted data), written to a scratch metrics folder and rendered by
scripts/results.py."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).parent))

import results  # noqa: E402
from test_augment import SETTINGS, _planted  # noqa: E402


@pytest.fixture()
def metrics_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "METRICS", tmp_path)
    return tmp_path


def _augment_json(predictions_edit=None):
    from paincontrol_lib.augment.statistics import inference, metrics_json, summarise

    data, predictions = _planted(0.8, 0.0, n_people=30, per_person=40, seed=0)
    if predictions_edit:
        predictions_edit(data, predictions)
    blocks = {"cnn": inference(data, predictions, "cnn", SETTINGS, seed=0)}
    config = {"generator": {"checkpoint": "x", "pretraining": "y", "finetuned_per_cell": False,
                            "withheld_pain_frames_seen": 0}, "design": {"n_seeds": 6},
              "n_train_people": 33, "n_pain_people_available": 20, "n_val_people": 12,
              "n_test_people": 30, "n_test_images": 1200, "n_test_pain": 400}  # fmt: skip
    return metrics_json(summarise(data, blocks), blocks, "cnn", SETTINGS, config)


def test_augmentation_verdicts_follow_the_rules(metrics_dir):
    m = _augment_json()
    (metrics_dir / "augment.json").write_text(json.dumps(m))
    scarce, full = m["claim"]["paincontrol_vs_real"]["1"], m["claim"]["paincontrol_vs_real"]["20"]
    assert scarce["verdict"] == "gain" and full["verdict"] == "inconclusive"  # noisy planted AUCs
    reading = results.augment_reading()
    assert "1 real pain person: PainControl vs real only, a gain, significant after Holm" in reading
    assert "20 real pain people: PainControl vs real only, inconclusive" in reading
    assert "no gain" not in reading  # nothing was shown equivalent
    assert "(exploratory family)" in reading  # cells outside the README's claims say so
    table = results.augment()
    assert "The claims family: paincontrol_vs_real at 1, all; paincontrol_vs_warp at 1" in table
    assert results._claim(full).endswith(": inconclusive")


def test_no_gain_is_rendered_only_from_an_equivalence_test(metrics_dir):
    def same_as_real(data, predictions):  # synthetic arms predict what real-only predicts
        real = data.index[data["arm"] == "real"]
        for arm in ("paincontrol", "warp"):
            predictions.prob[data.index[data["arm"] == arm]] = predictions.prob[real]

    m = _augment_json(same_as_real)
    full = m["claim"]["paincontrol_vs_real"]["20"]
    assert full["verdict"] == "equivalent" and m["equivalence"]["paincontrol_vs_real"]["20"][
        "p_tost"] < 0.05  # fmt: skip
    assert results._gain_verdict(full).startswith("no gain: equivalent within the margin")
    assert results._supports(full, "equivalent").startswith("yes: no gain")
    assert results._supports(full, "gain").startswith("no: no gain")


def test_claims_are_supported_only_by_their_verdict():
    inconclusive = {"verdict": "inconclusive", "family": "claims"}
    assert results._supports(inconclusive, "equivalent").startswith("not shown: inconclusive")
    assert results._supports({"verdict": "gain", "family": "claims"}, "equivalent").startswith(
        "no: a gain"
    )
    small = {"verdict": "gain within the margin", "family": "claims"}
    assert results._supports(small, "gain").startswith("partly")


def test_study_validation_is_rendered_with_monte_carlo_intervals(metrics_dir):
    import pandas as pd

    from paincontrol_lib.study.validation import summarise

    rng = np.random.default_rng(0)
    null = pd.DataFrame({"replication": np.repeat(np.arange(100), 6), "method": "m",
                         "true": 0.0, "estimate": 0.0, "ci_low": -1.0, "ci_high": 1.0,
                         "p": rng.random(600)})  # fmt: skip
    effect = null.assign(true=-2.0, replication=null["replication"] + 100)  # outside every CI
    validation = summarise(null) | {"effect_panels": summarise(effect)}
    (metrics_dir / "study.json").write_text(json.dumps({"validation": validation}, default=float))
    fpr = validation["false_positive_rate_mc"]
    assert fpr["mc_half_width"] <= 0.03 and fpr["mc_ci_low"] < fpr["rate"] < fpr["mc_ci_high"]
    table = results.study()
    assert f"{fpr['rate']:.3f} [{fpr['mc_ci_low']:.3f}, {fpr['mc_ci_high']:.3f}]" in table
    assert "panels with known effects: coverage of the 95 % CIs | 0.000" in table
    assert results._coverage(validation).startswith("; coverage of known effects 0.000")


def test_inference_check_script_writes_and_renders(metrics_dir, capsys):
    import inference_check

    out = metrics_dir / "inference_check.json"
    code = inference_check.main(["--datasets", "3", "--others", "3", "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == (0 if report["chosen_passes"] else 1)
    assert set(report["scenarios"]) == set(inference_check.SCENARIOS)
    block = report["scenarios"]["heterogeneity"]["null"]
    assert block["n_datasets"] == 3 and set(block["difference_tests"]) == {
        "crossed_intercepts", "crossed_slopes", "two_way_bootstrap", "two_way_cluster"
    }  # fmt: skip
    assert "difference: two_way_cluster" in capsys.readouterr().out
    rendered = results.inference_check()
    assert (
        "difference: two way cluster (stage 04)" in rendered
        and "mean: target bootstrap" in rendered
    )
