"""The sampler's settings and start images: light (no torch), so the CLI and params read them.

``params.yaml: sampler`` is the one place these settings live; :class:`SamplerConfig`'s
defaults equal it (tests/test_sampler.py). Drawing samples is :mod:`paincontrol_lib.model.sampling`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from numbers import Real

import numpy as np

STARTS = ("noise", "warped_target", "target_photo")


@dataclass(frozen=True)
class SamplerConfig:
    """How samples are drawn. The defaults are ``params.yaml: sampler`` (a test checks)."""

    steps: int = 6  # DDIM steps of the full schedule
    guidance_scale: float = 1.0  # classifier-free guidance (1: none)
    identity_scale: float = 1.0  # scale of the identity tokens' attention output (1: as trained)
    control_scale: float = 1.0  # scale of the ControlNet residuals
    start: str = "noise"  # noise (the paper's method) | warped_target | target_photo
    start_strength: float = 0.33  # part of the schedule run from a start image [0-1] (0: the
    # start image itself, no step run; ignored from noise)
    au_guidance: float = 0.0  # step on the predicted clean image down the guide AU reader's
    # squared error against the requested pain AUs (0: unguided; model/au_guidance.py)
    au_guidance_last: float = 1.0  # part of the steps run that are guided, counted back from the
    # last (the early steps' clean image is redrawn by the later ones: guiding only them is void)
    au_guidance_iterations: int = 10  # gradient steps on the clean image per guided step, each
    # au_guidance / iterations long (one long step overshoots: the reader is far from linear)

    def __post_init__(self):
        if self.start not in STARTS:
            raise ValueError(f"sampler start {self.start!r}: expected one of {STARTS}")
        for name in ("steps", "au_guidance_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"sampler {name} {value!r}: expected a whole number >= 1")
        # Checked first and by name: NaN fails every comparison (``nan < 0`` lets it through) and
        # an infinite scale samples an all-black image without an error.
        for name in ("guidance_scale", "identity_scale", "control_scale", "start_strength",
                     "au_guidance", "au_guidance_last"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"sampler {name} {value!r}: expected a finite number")
        for name in ("start_strength", "au_guidance_last"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"sampler {name} {getattr(self, name)}: expected a value in "
                                 "[0, 1]")  # fmt: skip
        for name in ("guidance_scale", "identity_scale", "control_scale", "au_guidance"):
            if getattr(self, name) < 0:
                raise ValueError(f"sampler {name} {getattr(self, name)}: expected >= 0")

    @classmethod
    def from_params(cls, section: dict) -> SamplerConfig:
        """From ``params.yaml: sampler``; unknown keys are an error, not silently ignored."""
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown sampler settings {sorted(unknown)}")
        return cls(**section)

    @property
    def steps_run(self) -> int:
        """DDIM steps actually run: the tail of the schedule from a start image (0 at strength 0:
        the start image is the output), or all from noise. A positive strength runs >= 1 step."""
        if self.start == "noise":
            return self.steps
        if self.start_strength == 0:
            return 0
        return max(1, min(self.steps, round(self.steps * self.start_strength)))

    @property
    def from_start_image(self) -> bool:
        return self.steps_run < self.steps

    @property
    def au_guided_steps(self) -> int:
        """Steps run that AU guidance steers, the last ones (0: unguided); rounded as
        :attr:`steps_run` is, so a positive part steers >= 1 step."""
        if self.au_guidance == 0 or self.au_guidance_last == 0:
            return 0
        return max(1, min(self.steps_run, round(self.steps_run * self.au_guidance_last)))

    @property
    def label(self) -> str:
        """What runs, for tables and figures: "PainControl" is the paper's method (noise start,
        the full schedule); a start image is named with the steps run on top of it."""
        guided = f" + AU guidance ({self.au_guided_steps} of {self.steps_run} steps)"
        guided = guided if self.au_guided_steps else ""
        if not self.from_start_image:
            return "PainControl" + guided
        start = self.start.replace("_", " ").replace("warped target", "warp")
        return f"PainControl{guided}, {start} start, {self.steps_run} of {self.steps} steps"

    def model_alone(self) -> SamplerConfig:
        """The same steps from pure noise with unscaled identity tokens and no AU guidance: the
        model alone."""
        return replace(self, identity_scale=1.0, start="noise", au_guidance=0.0)

    def with_start(self, start: str) -> SamplerConfig:
        return replace(self, start=start)

    def as_dict(self) -> dict:
        return asdict(self)


def start_images(start: str, photos, photo_meshes, meshes) -> np.ndarray | None:
    """The images sampling starts from, (n, H, W, 3) uint8, or None for ``noise``.

    ``photos`` (n, H, W, 3) are the target people's neutral crops with their meshes
    ``photo_meshes`` (n, 478, 3) in pixels; ``meshes`` are the requested meshes. The same warp
    is the ``warp`` baseline's output."""
    from paincontrol_lib.warp import warp_to

    if start not in STARTS:
        raise ValueError(f"start {start!r}: expected one of {STARTS}")
    if start == "noise":
        return None
    if start == "target_photo":
        return np.stack([np.asarray(p) for p in photos])
    return np.stack(
        [warp_to(p, pm, m) for p, pm, m in zip(photos, photo_meshes, meshes, strict=True)]
    )


TUNED = ("paincontrol", "warp_start", "selected", "au_guided")  # samplers tuning.json records


def tuned_sampler(section: dict, tuning_json=None, which: str = "paincontrol") -> SamplerConfig:
    """A sampler stage 02 chose on validation people (``tuning.json``: ``paincontrol``, the best
    from noise; ``warp_start``, the best on the warped target; ``selected``, the best of all), or
    ``params.yaml: sampler`` itself when no tuning file is given."""
    import json
    from pathlib import Path

    if which not in TUNED:
        raise ValueError(f"tuned sampler {which!r}: expected one of {TUNED}")
    if tuning_json is None:
        return SamplerConfig.from_params(section)
    path = Path(tuning_json)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the sampler is chosen on validation people by stage 02 (dvc repro train)"
        )
    return SamplerConfig.from_params(json.loads(path.read_text())[which])
