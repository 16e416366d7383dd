"""One sampler: its settings live in one params section, and the library and CLI defaults are it."""

import re
from dataclasses import fields

import numpy as np
import pytest
import yaml

from paincontrol_lib.config import REPO_ROOT, load_params
from paincontrol_lib.model.sampler import SamplerConfig, start_images

SETTINGS = {f.name for f in fields(SamplerConfig)}


def test_sampler_settings_live_in_one_params_section():
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    holders = {name for name, section in raw.items() if SETTINGS & set(section or {})}
    assert holders == {"sampler"}, f"sampler settings found in {sorted(holders)}"
    assert set(raw["sampler"]) == SETTINGS
    old_names = {"sampling_steps", "reference_strength"}
    for name, section in raw.items():
        assert not old_names & set(section or {}), f"{name} still sets {old_names}"


def test_library_defaults_are_the_params_defaults_and_the_cli_uses_the_tuned_sampler(
    tmp_path, monkeypatch
):
    import json

    from paincontrol_lib import cli

    params = SamplerConfig.from_params(load_params()["sampler"])
    assert SamplerConfig() == params
    transfer = cli.build_parser()._subparsers._group_actions[0].choices["transfer"]
    defaults = {a.dest: a.default for a in transfer._actions}
    assert all(defaults[name] is None for name in SETTINGS)  # unset: the tuned sampler's
    # The CLI's defaults are the samplers stage 02 chose on val people (tuning.json)...
    tuned = params.as_dict() | {"identity_scale": 3.0, "steps": 6}
    variant = tuned | {"start": "warped_target", "start_strength": 0.17}
    (tmp_path / cli.TUNING).parent.mkdir(parents=True)
    (tmp_path / cli.TUNING).write_text(json.dumps({"paincontrol": tuned, "warp_start": variant}))
    monkeypatch.chdir(tmp_path)
    sampler, warp_start, guidance, origin = cli.tuned_sampler()
    assert sampler == SamplerConfig.from_params(tuned) and "tuned on val people" in origin
    assert warp_start == SamplerConfig.from_params(variant)
    # ...and what it says names the steps that actually run
    assert cli.describe_sampler(warp_start).startswith("1 of 6 DDIM steps run from warped_target")
    assert cli.describe_sampler(sampler).startswith("6 of 6 DDIM steps run from pure")


def test_bad_settings_fail_before_any_work():
    with pytest.raises(ValueError, match="unknown sampler settings"):
        SamplerConfig.from_params({"steps": 6, "reference_strength": 0.3})
    with pytest.raises(ValueError, match="start"):
        SamplerConfig(start="photo")
    with pytest.raises(ValueError, match="steps"):
        SamplerConfig(steps=0)
    with pytest.raises(ValueError, match="identity_scale"):
        SamplerConfig(identity_scale=-1)


def test_the_model_alone_starts_from_noise_at_identity_scale_one():
    alone = SamplerConfig().model_alone()
    assert alone.start == "noise" and alone.identity_scale == 1.0
    assert alone.steps_run == alone.steps and not alone.from_start_image
    assert SamplerConfig(steps=6, start="warped_target", start_strength=0.33).steps_run == 2
    assert SamplerConfig(steps=6, start_strength=0.33).steps_run == 6  # from noise: every step


def test_start_images_warp_the_photo_onto_the_requested_mesh():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mesh = np.column_stack([rng.uniform(8, 24, (478, 2)), np.zeros(478)])
    assert start_images("noise", [photo], [mesh], [mesh]) is None
    np.testing.assert_array_equal(start_images("target_photo", [photo], [mesh], [mesh])[0], photo)
    same = start_images("warped_target", [photo], [mesh], [mesh])[0]
    moved = start_images("warped_target", [photo], [mesh], [mesh + [2.0, 0.0, 0.0]])[0]
    assert np.abs(same.astype(int) - photo).mean() < 1  # the identity warp keeps the photo
    assert not np.array_equal(moved, same)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "3", True])
@pytest.mark.parametrize(
    "name", ["guidance_scale", "identity_scale", "control_scale", "start_strength"]
)
def test_non_finite_or_non_numeric_sampler_values_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=re.escape(f"sampler {name} {value!r}: expected a finite")):
        SamplerConfig(**{name: value})


@pytest.mark.parametrize("steps", [True, 2.0, "6"])
def test_steps_that_are_not_a_whole_number_are_refused(steps):
    with pytest.raises(ValueError, match=re.escape(f"sampler steps {steps!r}: expected a whole")):
        SamplerConfig(steps=steps)


def test_cli_transfer_with_an_infinite_identity_scale_exits_with_one_line(tmp_path, capsys):
    """It used to run and write an all-black image: now it stops before loading anything."""
    from paincontrol_lib.cli import main

    out = tmp_path / "out"
    argv = ["transfer", "--source", str(tmp_path / "s.png"), "--target", str(tmp_path / "t.png"),
            "--out", str(out), "--identity-scale", "inf"]  # fmt: skip
    assert main(argv) == 2
    error = "paincontrol transfer: error: sampler identity_scale inf: expected a finite number"
    assert capsys.readouterr().err == error + "\n"
    assert not out.exists()
