"""The shipped generator's identity path (``model/identity_adapter.py``): conditioned on a second
in-domain encoder that never scores, its adapter's record and learning curve, and publishing."""

import json
import re
from pathlib import Path

import pytest

from paincontrol_lib import identity as ident
from paincontrol_lib.config import REPO_ROOT
from paincontrol_lib.model import identity_adapter as adapter
from paincontrol_lib.model.presets import PainControlModel

SHIPPED = REPO_ROOT / "pretrained" / "tiny-synthpain"


def _make_target(name: str) -> list[str]:
    """The recipe lines of a Makefile target."""
    text = (REPO_ROOT / "Makefile").read_text()
    block = re.search(rf"^{name}:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    return [line.strip().removeprefix("$(BIN)/") for line in block.splitlines()]


def test_the_model_is_conditioned_on_an_encoder_that_never_scores_it():
    """The shipped checkpoint reads ``synthface-conditioning``; that encoder has other weights,
    other people (another seed, none a stage's) than the instrument, and params say so."""
    from paincontrol_lib.config import load_params
    from paincontrol_lib.model.identity_encoder import USED_SEEDS

    model = json.loads((SHIPPED / "paincontrol_model.json").read_text())
    assert model["identity_backend"] == adapter.BACKEND == "synthface-conditioning"
    assert load_params()["train"]["identity_backend"] == adapter.BACKEND
    conditioning = ident.make_identity(adapter.BACKEND)
    instrument = ident.make_identity("synthface")
    assert conditioning.name != instrument.name  # other weights
    seeds = [json.loads((folder / "PROVENANCE.json").read_text())["seed"]
             for folder in (ident.CONDITIONING_DIR, ident.ENCODER_DIR)]  # fmt: skip
    assert seeds[0] != seeds[1] and seeds[0] not in USED_SEEDS
    assert (
        adapter.ENCODER_COMMAND
        == json.loads((ident.CONDITIONING_DIR / "PROVENANCE.json").read_text())["command"]
    )


def test_missing_conditioning_weights_name_the_make_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="make identity-adapter"):
        ident.make_identity(adapter.BACKEND, model_dir=tmp_path)


def test_make_identity_adapter_runs_the_recorded_commands():
    record = json.loads((SHIPPED / "PROVENANCE.json").read_text())["identity_adapter"]
    lines = _make_target("identity-adapter")
    assert lines == [f"python -m {c.removeprefix('python -m ')}" for c in record["commands"]]


def test_the_shipped_adapter_says_how_it_was_made_and_how_identity_grew():
    """Steps (the budget, all run), minutes, data, the conditioning encoder's record, and a
    learning curve from the untrained adapter (step 0) to the final step on held-out people."""
    record = json.loads((SHIPPED / "PROVENANCE.json").read_text())
    assert "prepared" in record and "training_runs" in record  # the generator's own record
    made = record["identity_adapter"]
    training = made["training"]
    assert training["trainable"] == "identity_adapter"
    assert training["steps_run"] == training["steps"] and training["stopped_by"] == "steps"
    assert made["people"]["seed"] == record["prepared"]["options"]["seed"]
    curve = made["curve"]
    steps = [point["step"] for point in curve]
    assert steps[0] == 0 and steps[-1] == training["steps"] and steps == sorted(steps)
    for point in curve:
        assert 0 <= point["identity_top1"] <= 1 and point["n_people"] >= 30
    # an untrained adapter carries no identity: the curve starts near chance and rises
    assert curve[0]["identity_top1"] < curve[-1]["identity_top1"]


def test_the_shipped_checkpoint_loads_with_its_adapter():
    model = PainControlModel.from_pretrained(SHIPPED)
    assert model.config.identity_dim == 128
    assert sum(p.numel() for p in model.identity_parameters()) > 0


def test_publish_keeps_the_generator_record_and_adds_the_adapter(tmp_path):
    """Publishing over the generator's own folder (the default) copies the run first, keeps the
    generator's provenance and replaces an older adapter record."""
    out = tmp_path / "tiny"
    (out / "unet").mkdir(parents=True)
    (out / "PROVENANCE.json").write_text(json.dumps({"prepared": 1, "identity_adapter": "old"}))
    final = out / "run" / "final"  # inside the folder it replaces
    (final / "unet").mkdir(parents=True)
    (final / "unet" / "weights").write_text("new")
    adapter.publish(final, out, out, {"steps": 3})
    assert (out / "unet" / "weights").read_text() == "new"
    record = json.loads((out / "PROVENANCE.json").read_text())
    assert record == {"prepared": 1, "identity_adapter": {"steps": 3}}
    assert not list(tmp_path.glob(".staged-*"))


def test_adapter_arguments_are_the_training_scripts_own(tmp_path):
    (tmp_path / "landmarks").mkdir()
    options = adapter.parse_args(["--work", str(tmp_path), "--steps", "10", "--curve_every", "5"])
    args = adapter.training_arguments(options)
    assert args.trainable == "identity_adapter" and args.identity_backend == adapter.BACKEND
    assert args.max_steps == 10 and args.checkpointing_steps == 5
    assert args.checkpoints_total_limit >= 10 // 5  # every curve point kept
    assert Path(args.landmarks_dir) == tmp_path / "landmarks"
    with pytest.raises(SystemExit):
        adapter.parse_args(["--steps", "0"])
