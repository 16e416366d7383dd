"""Pipeline parameters: ``params.yaml`` (the default profile) plus optional profile overrides.

Profiles (``profiles/<name>.yaml``) are partial copies of ``params.yaml`` deep-merged over it,
so the tiny test profile and a GPU profile run the very same code with other sizes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` merged into a copy of ``base``; nested dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"parameter file {path} not found")
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise ValueError(f"{path} must hold a mapping of sections, got {type(content).__name__}")
    return content


def load_params(path: str | Path | None = None, profile: str | None = None) -> dict:
    """The parameters of ``params.yaml`` with ``profiles/<profile>.yaml`` merged over them."""
    path = Path(path) if path else REPO_ROOT / "params.yaml"
    params = _read_yaml(path)
    if profile:
        override = _read_yaml(path.parent / "profiles" / f"{profile}.yaml")
        unknown = set(override) - set(params)
        if unknown:
            raise KeyError(f"profile {profile!r} overrides unknown sections {sorted(unknown)}")
        params = deep_merge(params, override)
    return params
