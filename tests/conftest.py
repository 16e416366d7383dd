"""Shared fixtures: a tiny SynthPain dataset rendered once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")  # quieter MediaPipe
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_params():
    from paincontrol_lib.config import load_params

    return load_params(profile="tiny")


@pytest.fixture(scope="session")
def tiny_config(tiny_params):
    from paincontrol_lib.data.synthpain.generate import SynthPainConfig

    return SynthPainConfig.from_params(tiny_params["synthesize"], tiny_params["base"]["seed"])


@pytest.fixture(scope="session")
def tiny_synthpain(tmp_path_factory, tiny_config):
    """(data_dir, table) of a tiny SynthPain set (4 people x 4 frames)."""
    from paincontrol_lib.data.synthpain.generate import generate

    out = tmp_path_factory.mktemp("synthpain") / "synthpain"
    table = generate(tiny_config, out, workers=1)
    return out, table
