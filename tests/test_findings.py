"""Each notebook's closing findings are rendered from its metrics files: every number follows
the metrics, and values a run or a dataset cannot have read "n/a" instead of breaking."""

from __future__ import annotations

import json
import shutil

import pytest

from paincontrol_lib import findings
from paincontrol_lib.config import REPO_ROOT

METRICS = REPO_ROOT / "reports" / "metrics"


@pytest.mark.parametrize("notebook", sorted(findings.RENDERERS))
def test_findings_render_from_the_committed_metrics(notebook):
    text = findings.render(notebook, REPO_ROOT / "reports")
    assert text.startswith("## Findings\n") and text.count("\n- ") >= 2
    assert "n/a" not in text, "the default run measures everything its findings report"


def _copy(tmp_path):
    shutil.copytree(METRICS, tmp_path / "metrics")
    return tmp_path


def _edit(root, name, change):
    path = root / "metrics" / name
    metrics = json.loads(path.read_text())
    change(metrics)
    path.write_text(json.dumps(metrics))


def test_a_changed_metric_changes_the_text(tmp_path):
    root = _copy(tmp_path)
    _edit(root, "eval.json", lambda m: m["methods"]["paincontrol"].update(pspi_mae=9.8765))
    assert "9.877" in findings.render("04_au_identity", root)
    assert "9.877" not in findings.render("04_au_identity", REPO_ROOT / "reports")


def test_unmeasured_and_absent_values_read_na(tmp_path):
    root = _copy(tmp_path)
    _edit(root, "train.json", lambda m: m.update(heldout_nme=None, init_from=None))
    _edit(root, "landmarks.json", lambda m: m.pop("nme"))  # real data: no ground-truth mesh
    assert "NME n/a" in findings.render("02_train_controlnet", root)
    assert "from random weights" in findings.render("02_train_controlnet", root)
    assert "ground truth" not in findings.render("01_landmarks", root)


def test_missing_metrics_say_which_file_and_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="eval.json.*dvc repro"):
        findings.render("04_au_identity", tmp_path)
    with pytest.raises(KeyError, match="known"):
        findings.render("07_nothing", tmp_path)
