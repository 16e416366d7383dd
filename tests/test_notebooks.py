"""Each stage notebook runs end to end on the tiny profile (papermill, as dvc.yaml runs it)."""

import json
from pathlib import Path

import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_notebook(name: str, tmp_path: Path, **parameters) -> Path:
    out = tmp_path / "executed" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(ROOT / "notebooks" / name),
        str(out),
        parameters=parameters,
        cwd=str(ROOT),
        progress_bar=False,
        kernel_name="python3",
    )
    return out


@pytest.fixture(scope="module")
def stage_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    return {"data": root / "data", "reports": root / "reports", "root": root}


def test_00_synthpain_notebook(stage_dirs, tiny_params):
    run_notebook(
        "00_synthpain.ipynb",
        stage_dirs["root"],
        base=tiny_params["base"],
        synthesize=tiny_params["synthesize"],
        data_dir=str(stage_dirs["data"] / "synthpain"),
        reports_dir=str(stage_dirs["reports"]),
    )
    metrics = json.loads((stage_dirs["reports"] / "metrics" / "synthpain.json").read_text())
    assert metrics["n_images"] == 16 and metrics["mediapipe_detection_rate"] >= 0.9
    assert (stage_dirs["reports"] / "figures" / "synthpain_contact_sheet.png").stat().st_size > 0
