"""Smoke run of the whole DVC pipeline on the tiny profile, in a copy of the repository, twice.

This checks what unit tests cannot: dvc.yaml's wiring (deps, params, outs, metrics), that each
notebook runs under papermill with the parameters DVC gives it, the metrics files, and that a
second run from scratch in another copy gives the same metrics apart from timing keys
(``io.is_timing_key``).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from paincontrol_lib.config import REPO_ROOT, load_params


def _tiny_copy(root: Path, **sections: dict) -> Path:
    """The tracked files copied to ``root`` with the tiny profile as params.yaml (``sections``
    update its sections), in a git repository of its own."""
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, tracked):
        src = REPO_ROOT / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    params = load_params(profile="tiny")
    for name, values in sections.items():
        params[name].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def _run(root: Path, command: list[str], timeout: int = 1200) -> subprocess.CompletedProcess:
    """``command`` in ``root`` with this environment's tools (dvc, paincontrol) first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                         timeout=timeout)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def _tiny_run(root: Path) -> Path:
    """The tracked files copied to ``root`` and ``dvc repro`` run there on the tiny profile."""
    _run(_tiny_copy(root), [str(Path(sys.executable).parent / "dvc"), "repro"])
    return root


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    return _tiny_run(tmp_path_factory.mktemp("repo"))


def test_two_runs_from_scratch_give_the_same_metrics(tiny_repo, tmp_path_factory):
    """Determinism: every metric but timings is identical in a second, independent run."""
    from paincontrol_lib.io import without_timings

    again = _tiny_run(tmp_path_factory.mktemp("again"))
    names = sorted(p.name for p in (tiny_repo / "reports" / "metrics").glob("*.json"))
    assert names == sorted(p.name for p in (again / "reports" / "metrics").glob("*.json"))
    assert len(names) >= 9
    for name in names:
        first, second = (
            without_timings(_metrics(root, name.removesuffix(".json")))
            for root in (tiny_repo, again)
        )
        assert first == second, f"{name} differs between two runs from scratch"


def test_every_stage_reports_its_wall_time(tiny_repo):
    for name in ("synthpain", "landmarks", "train", "transfer", "eval", "augment", "study"):
        assert _metrics(tiny_repo, name)["seconds"] > 0, name
    # The slow stages say where their time went (a timing key: not compared between runs).
    for name in ("train", "eval", "study"):
        metrics = _metrics(tiny_repo, name)
        phases = metrics["phase_seconds"]
        assert len(phases) >= 3 and 0 < sum(phases.values()) <= metrics["seconds"], name


def _metrics(root: Path, name: str) -> dict:
    return json.loads((root / "reports" / "metrics" / f"{name}.json").read_text())


def test_synthesize_stage(tiny_repo):
    m = _metrics(tiny_repo, "synthpain")
    assert m["n_images"] == 20 and m["mediapipe_detection_rate"] >= 0.9
    assert (tiny_repo / "reports" / "figures" / "synthpain_contact_sheet.png").stat().st_size > 0


def test_landmarks_stage(tiny_repo):
    m = _metrics(tiny_repo, "landmarks")
    assert m["detection_rate"] >= 0.9 and m["nme"] < 0.05 and m["images_per_second"] > 0
    assert (tiny_repo / "data" / "landmarks" / "landmarks.parquet").is_file()
    executed = tiny_repo / "reports" / "notebooks" / "01_landmarks.ipynb"
    assert "parameters" in executed.read_text()


METHODS = {"paincontrol", "paincontrol_warp_start", "warp", "no_identity", "no_landmarks",
           "no_text", "paincontrol_au_guided"}  # fmt: skip


def test_train_stage_tunes_on_val_and_reports_on_test(tiny_repo):
    m = _metrics(tiny_repo, "train")
    assert m["steps"] == 4 and m["n_heldout_samples"] == 4
    for key in (
        "heldout_detection_rate",
        "heldout_nme",
        "heldout_nme_shuffled",
        "heldout_tracking_corr",
        "heldout_identity_top1",
        "heldout_identity_top1_other_reference",
        "heldout_identity_top1_identity_photo",
        "identity_top1_ceiling",
        "identity_top1_other_reference_ceiling",
        "noise_start",
        "reference_recipe",
        "steps_to_reference_nme",
        "reference_steps",
    ):
        assert key in m, key
    assert m["stopped_by"] == "steps" and m["reference_recipe"]["stopped_by"] == "steps"
    assert m["heldout_split"] == "test" and m["identity_scoring"] == "unseen_frame"
    tuning = _metrics(tiny_repo, "tuning")
    assert tuning["split"] == "val" and tuning["n_people"] == 1 and len(tuning["grid"]) == 4
    # the declared objective, a grid with the warp itself and noise, every score, the selection
    assert tuning["objective"] == {"identity_weight": 1.0, "au_error_weight": 2.0}
    assert {r["steps_run"] for r in tuning["grid"]} == {0, 1, 2}
    assert {r["settings"].get("start") for r in tuning["grid"]} == {"noise", "warped_target"}
    for row in tuning["grid"]:
        assert {"objective", "objective_ci", "identity_similarity", "au_error"} <= set(row)
    assert tuning["exact_answer"]["identity_similarity"] > 0.99  # the instrument's ceiling
    assert tuning["steps_run"] == tuning["grid"][tuning["grid_rows"]["selected"]]["steps_run"]
    assert tuning["labels"]["warp_start"] == "PainControl, warp start, 1 of 2 steps"
    assert m["sampler"] == tuning["paincontrol"] and m["sampler_chosen_on"] == "val"
    # AU guidance: drawn on top of PainControl's setting, the only guided row, never "selected"
    guided = tuning["grid"][tuning["grid_rows"]["au_guided"]]
    assert [r["au_guided"] for r in tuning["grid"]] == [False] * 3 + [True]
    assert tuning["au_guided"] == tuning["paincontrol"] | {"au_guidance": 40.0,
                                                          "au_guidance_last": 0.5}  # fmt: skip
    assert guided["label"] == "PainControl + AU guidance (1 of 2 steps)"
    assert tuning["selected"]["au_guidance"] == 0
    assert m["sampler"]["steps"] == 2 and m["sampler"]["start"] == "noise"
    assert m["noise_start"]["steps"] == 4 and "heldout_nme" in m["noise_start"]
    assert m["reference_recipe"]["steps"] == 4
    assert (tiny_repo / "models" / "ours" / "final" / "paincontrol_model.json").is_file()
    assert (tiny_repo / "reports" / "figures" / "train_heldout_grid.png").stat().st_size > 0


def test_transfer_stage(tiny_repo):
    m = _metrics(tiny_repo, "transfer")
    # 1 source sequence of 4 frames x 1 target + 2 explicit PSPI levels x 2 targets, per method
    assert {k: v["n_outputs"] for k, v in m["methods"].items()} == dict.fromkeys(METHODS, 8)
    assert set(m["per_image_seconds"]) == METHODS
    tuning = _metrics(tiny_repo, "tuning")
    assert m["sampler"] == tuning["paincontrol"]
    assert m["warp_start_sampler"] == tuning["warp_start"]
    assert m["labels"]["paincontrol_warp_start"] == tuning["labels"]["warp_start"]
    assert m["steps_run"] == {"paincontrol": 2, "paincontrol_warp_start": 1, "no_identity": 2,
                              "no_landmarks": 2, "no_text": 2,
                              "paincontrol_au_guided": 2}  # fmt: skip
    assert m["au_guided_sampler"] == tuning["au_guided"]
    manifest = pd.read_parquet(tiny_repo / "data" / "transfer" / "manifest.parquet")
    assert (
        len(manifest) == 8 * len(METHODS)
        and manifest["path"].map(lambda p: (tiny_repo / "data" / "transfer" / p).is_file()).all()
    )
    assert not (manifest["source"] == manifest["target"]).any()  # nobody onto themself
    for name in ("transfer_grid", "transfer_sequence"):
        assert (tiny_repo / "reports" / "figures" / f"{name}.png").stat().st_size > 0
    animation = Image.open(tiny_repo / "reports" / "figures" / "transfer_animation.gif")
    # source, exact answer (SynthPain), PainControl, warp start, AU guidance, warp; 4 frames
    side = animation.size[1] - 44  # each tile square under a 44 px header
    assert animation.n_frames == 4 and animation.size[0] == 6 * side


def test_evaluate_stage(tiny_repo):
    m = _metrics(tiny_repo, "eval")
    assert set(m["methods"]) == METHODS and m["identity_scoring"] == "unseen_frame"
    assert m["design"]["n_sources"] == 1 and m["design"]["n_targets"] == 2
    for method in m["methods"].values():
        for key in ("identity_similarity", "source_leakage", "nme", "pspi_mae", "ssim_to_exact"):
            assert key in method and f"{key}_ci_low" in method and f"{key}_ci_high" in method
        assert set(method["au_mae"]) == {"AU04", "AU06", "AU07", "AU09", "AU10", "AU43"}
    # tiny: one source person, so no declared comparison can be tested; each is named
    failed = m["fits_failed"]
    assert m["tests"] == {} and failed["count"] == len(failed["failures"]) > 0
    named = {(f["comparison"], f["endpoint"]) for f in failed["failures"]}
    for metric in ("pspi_mae", "identity_similarity", "nme", "ssim_to_exact"):
        for method in ("paincontrol", "paincontrol_warp_start"):
            assert (f"{method}_vs_warp", metric) in named
        for ablation in ("no_identity", "no_landmarks", "no_text", "paincontrol_warp_start"):
            assert (f"{ablation}_vs_paincontrol", metric) in named
    for endpoint in ("au04_error_vs_exact", "au43_error_vs_exact", "identity_top1_gallery"):
        assert ("paincontrol_au_guided_vs_paincontrol", endpoint) in named  # its own endpoints
    # one sequence per method, and the exact answers'; a 32 px output without a face leaves it out
    motion = m["motion_following"]
    assert set(motion) == METHODS | {"exact_answer"} and motion["exact_answer"]["n_sequences"] == 1
    for entry in motion.values():
        assert entry["n_sequences"] in (0, 1)
        assert entry["mean"] is None if not entry["n_sequences"] else -1 <= entry["mean"] <= 1
    guidance = m["au_guidance"]  # nothing tested with one source: said, never a number
    assert set(guidance["aus"]) == {"AU04", "AU43"} and not guidance["goal_met"]
    assert all("reason" in entry for entry in guidance["aus"].values())
    readers = m["methods"]["paincontrol_au_guided"]["au_readers"]
    assert {"scoring_error_vs_exact", "guide_error_vs_exact", "disagreement"} == set(
        readers["AU43"]
    )
    assert set(m["realism"]) == METHODS | {"features", "reference", "exact_answer"}
    for method in METHODS:
        assert {"c2st_auc_face_features", "c2st_auc_face_features_ci",
                "c2st_auc_au_estimator"} <= set(m["realism"][method])  # fmt: skip
        claim = m["au_claim"]["methods"][method]
        assert {"estimate", "ci_low", "ci_high"} <= set(claim["hard_minus_rest"])
    for method in METHODS:
        assert {"fd", "kid", "kid_ci_low", "kid_ci_high", "precision", "recall"} <= set(
            m["realism"][method]
        )
    assert (
        "training-split people" in m["realism"]["features"]
        and "no identity" in m["realism"]["features"]
    )
    assert set(m["au_estimator"]["backend_per_au"]) == {
        "AU04",
        "AU06",
        "AU07",
        "AU09",
        "AU10",
        "AU43",
    }
    assert set(m["au_estimator"]["exact_answer_error"]) >= {"AU04", "AU43", "PSPI"}
    est = _metrics(tiny_repo, "au_estimator")
    assert set(est["backend_per_au"].values()) <= {"mesh", "learned", "pixels"}
    assert est["n_test_people"] >= 1
    agreement = {"mae", "icc_a1", "icc_a1_ci_low", "icc_a1_ci_high", "icc_c1", "f1"}
    for condition in ("clean", "degraded"):
        assert agreement <= set(est[condition]["AU04"])
        for reader in ("mesh", "learned", "pixels", "guide"):
            assert agreement <= set(est["readers"][reader]["test"][condition]["AU43"])
    assert (tiny_repo / "data" / "au_estimator.npz").stat().st_size > 0
    assert (tiny_repo / "reports" / "plots" / "eval_au_error.csv").stat().st_size > 0
    figures = ("eval_au_error", "eval_identity_pspi", "eval_extremes", "eval_identity_instrument")
    for name in figures:
        assert (tiny_repo / "reports" / "figures" / f"{name}.png").stat().st_size > 0


def test_augment_stage(tiny_repo):
    m = _metrics(tiny_repo, "augment")
    arms = {"real", "paincontrol", "warp", "classic"}
    (level,) = m["levels"]  # tiny: one training person with pain, so levels 1 and "all" coincide
    assert set(m["levels"][level]) == arms
    for cell in m["levels"][level].values():
        assert cell["n_seeds"] == 2 and {"auc_mean", "auc_ci_low", "auc_ci_high"} <= set(cell)
    for comparison in ("paincontrol_vs_real", "paincontrol_vs_warp", "classic_vs_real"):
        for test in m["claim"][comparison].values():
            assert {"estimate", "ci_low", "ci_high", "p_holm"} <= set(test)
    generator = m["generator"]
    assert generator["withheld_pain_frames_seen"] == 0 and not generator["finetuned_per_cell"]
    assert generator["checkpoint"] == "pretrained/tiny-synthpain"
    assert "synthpain(seed=1): 960 people" in generator["pretraining"]
    assert m["design"]["n_val_people"] >= 1 and m["design"]["n_seeds"] == 2
    results = pd.read_csv(tiny_repo / "reports" / "plots" / "augment_results.csv")
    assert len(results) == 2 * 4 * 2  # seeds x arms x detectors
    assert (results.loc[results["arm"] != "real", "n_synthetic"] > 0).all()
    for name in ("augment_samples", "augment_scarcity"):
        assert (tiny_repo / "reports" / "figures" / f"{name}.png").stat().st_size > 0


def test_study_stage(tiny_repo):
    m = _metrics(tiny_repo, "study")
    conditions = METHODS | {"real"}
    # tiny profile: 6 rater slots x (8 conditions x (2 items + 1 repeat) + 1 attention check)
    assert m["simulated"] is True and m["n_raters"] == 6 and m["n_ratings"] == 6 * 25
    assert set(m["methods"]) == conditions and -1 <= m["reliability"] <= 1
    assert set(m["simulation"]["effects"].values()) == {0.0}  # null: no simulated finding
    validation = m["validation"]
    assert validation["n_replications"] == 3 and validation["n_comparisons"] == 3 * 7
    assert 0 <= validation["false_positive_rate"] <= 1 and 0 <= validation["ci_coverage"] <= 1
    for name, method in m["methods"].items():
        assert method["ci_low"] <= method["mean_rating"] <= method["ci_high"], name
        for key in ("effect_estimate", "effect_ci_low", "effect_ci_high", "effect_true"):
            assert key in method, key
    assert m["methods"]["real"]["effect_true"] == 0.0
    assert m["real_items"] == "SynthPain renders"
    assert set(m["pspi_by_condition"]) == conditions  # matching itself: test_study
    key = pd.read_parquet(tiny_repo / "data" / "study" / "key.parquet")
    assert key[key["kind"] == "item"].groupby("method").size().to_dict() == dict.fromkeys(
        conditions, 2
    )
    for name in ("study_trials", "study_ratings", "study_effects"):
        assert (tiny_repo / "reports" / "figures" / f"{name}.png").stat().st_size > 0


def test_notebooks_run_by_hand_without_touching_the_pipeline_outputs(tiny_repo, tmp_path):
    """Each notebook run top to bottom as JupyterLab would (no injected parameters, started in
    notebooks/): parameters come from params.yaml, outputs land under scratch/, and no committed
    report nor any DVC output changes."""
    import papermill

    reports = tiny_repo / "reports"
    before = {p: p.read_bytes() for p in sorted(reports.rglob("*")) if p.is_file()}
    for notebook in sorted((tiny_repo / "notebooks").glob("*.ipynb")):
        where = str(tiny_repo / "notebooks")
        papermill.execute_notebook(str(notebook), str(tmp_path / notebook.name), cwd=where,
                                   progress_bar=False)  # fmt: skip
        scratch = tiny_repo / "scratch" / notebook.stem / "reports"
        assert list((scratch / "metrics").glob("*.json")), f"{notebook.name}: no scratch metrics"
        assert list((scratch / "figures").glob("*.png")), f"{notebook.name}: no scratch figures"
    after = {p: p.read_bytes() for p in sorted(reports.rglob("*")) if p.is_file()}
    assert sorted(after) == sorted(before)
    changed = [str(p.relative_to(tiny_repo)) for p in before if after[p] != before[p]]
    assert not changed, f"interactive runs changed committed files: {changed}"
    dvc = str(Path(sys.executable).parent / "dvc")
    stages = list(yaml.safe_load((tiny_repo / "dvc.yaml").read_text())["stages"])
    status = json.loads(_run(tiny_repo, [dvc, "status", "--json", *stages]).stdout)
    assert not status, f"interactive runs changed pipeline outputs: {status}"


def readme_block(name: str, page: str = "docs/real-data.md") -> str:
    """The bash block of a documentation page (the real-data commands moved from the README to
    docs/real-data.md) between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    text = (REPO_ROOT / page).read_text()
    block = text.split(f"<!-- {name}:begin -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]
    return block.split("```bash", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("layout", ["unbc", "folder"])
def test_readme_real_data_commands_walk_a_real_layout(tmp_path, layout):
    """The documented real-data lines (docs/real-data.md), run as written (the folder layout
    with its adapter named instead), on SynthPain written in a real dataset's layout, through
    evaluation and augmentation. Before the fix the README said `dvc add data/real --file
    data.dvc`, which DVC 3 refuses."""
    commands = readme_block("real-data")
    if layout == "folder":
        commands = commands.replace("--layout unbc", "--layout folder").replace(
            "data.source=unbc", "data.source=folder"
        )
    # Re-split as real data is: two test people (a transfer source and its target) among the
    # tiny profile's five, and every person in pain once, so the two training people are.
    root = _tiny_copy(
        tmp_path / "repo", data={"test_fraction": 0.4}, synthesize={"pain_probability": 1.0}
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run(root, [*git, "add", "-A"])
    _run(root, [*git, "commit", "-qm", "tiny"])  # dvc exp run needs a commit
    _run(root, ["bash", "-euo", "pipefail", "-c", commands], timeout=2400)
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["data"]["source"] == layout and params["data"]["root"] == "data/real"
    assert (
        "md5" in (root / "data.dvc").read_text()
        and "nfiles: 0" not in (root / "data.dvc").read_text()
    )
    landmarks = _metrics(root, "landmarks")
    assert landmarks["n_images"] == 20 and landmarks["detection_rate"] >= 0.9
    if layout == "unbc":
        assert landmarks["pspi_from_facs"] == 0
    from paincontrol_lib.landmarks.table import load_landmark_table

    table = load_landmark_table(root / "data" / "landmarks")
    real = str(root / "data" / "real")
    assert table["dataset"].eq(layout).all() and table["image"].str.startswith(real).all()
    evaluation = _metrics(root, "eval")
    assert set(evaluation["methods"]) == METHODS
    assert "pspi_mae" in evaluation["methods"]["paincontrol"]  # against the dataset's AUs
    readers = _metrics(root, "au_estimator")["backend_per_au"]
    assert set(readers.values()) <= {"mesh", "learned", "pixels"}
    augment = _metrics(root, "augment")
    assert augment["generator"]["withheld_pain_frames_seen"] == 0 and augment["levels"]


def test_sd15_profile_through_dvc_repro(tmp_path):
    """profiles/sd15.yaml reaches stage 02 through params and `dvc repro`: trained and sampled
    on a folder laid out like Stable Diffusion 1.5 (tiny random weights), at tiny sizes. Before
    the fix stage 02 never passed --preset or --pretrained: the 64 px model was trained."""
    from sd15_fakes import fake_sd15

    from paincontrol_lib.config import deep_merge

    root = _tiny_copy(tmp_path / "repo")
    fake_sd15(root / "weights" / "sd15-tiny")
    sd15 = yaml.safe_load((REPO_ROOT / "profiles" / "sd15.yaml").read_text())
    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()), sd15)
    tiny = {"pretrained": "weights/sd15-tiny", "identity_backend": "dlib",
            "precision": "fp32", "resolution": 32, "batch_size": 2, "max_steps": 2,
            "checkpointing_steps": 2, "validation_steps": 0, "threads": 2}  # fmt: skip
    params["train"].update(tiny)
    params["sampler"].update(steps=2)
    grids = [{"start": ["noise"]}, {"start": ["warped_target"], "start_strength": [0.5]}]
    params["tune"].update(n_samples=2, grids=grids)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(root, [str(Path(sys.executable).parent / "dvc"), "repro"], timeout=2400)
    record = json.loads((root / "models" / "ours" / "final" / "training.json").read_text())
    assert record["arguments"]["preset"] == "sd15"
    assert record["arguments"]["pretrained"] == "weights/sd15-tiny"
    config = json.loads((root / "models" / "ours" / "final" / "paincontrol_model.json").read_text())
    assert config["preset"] == "sd15" and config["resolution"] == 32
    assert _metrics(root, "train")["steps"] == 2
    assert _metrics(root, "transfer")["methods"]["paincontrol"]["n_outputs"] > 0
    assert set(_metrics(root, "eval")["methods"]) == METHODS  # and on through stage 06
    assert _metrics(root, "study")["n_raters"] > 0
