"""AU guidance (issue 32): its settings, the scheduler step it rewrites, and that it steers."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from paincontrol_lib.facs import PAIN_AUS
from paincontrol_lib.model.au_guidance import GUIDE, AUGuide, requested_aus
from paincontrol_lib.model.sampler import SamplerConfig

SHIPPED = Path(__file__).resolve().parents[1] / "pretrained" / "tiny-synthpain"


def test_au_guidance_settings_say_which_steps_are_steered():
    assert SamplerConfig().au_guided_steps == 0  # the paper's method is unguided
    guided = SamplerConfig(steps=6, au_guidance=20.0, au_guidance_last=0.5)
    assert guided.au_guided_steps == 3 and guided.steps_run == 6
    assert guided.label == "PainControl + AU guidance (3 of 6 steps)"
    assert replace(guided, au_guidance_last=0.0).au_guided_steps == 0
    warp = replace(guided, start="warped_target", start_strength=0.33)
    assert warp.au_guided_steps == 1 and warp.label.endswith("warp start, 2 of 6 steps")
    alone = guided.model_alone()
    assert alone.au_guided_steps == 0 and alone.label == "PainControl"
    for bad in ({"au_guidance": -1.0}, {"au_guidance": float("nan")},
                {"au_guidance_last": 1.5}, {"au_guidance_last": True}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            SamplerConfig(**bad)


def test_a_guided_step_moves_the_predicted_clean_image_by_the_step_and_nothing_else():
    """x0 - s g exactly, the same x_t; an unguided step is DDIM's own."""
    from diffusers import DDIMScheduler

    from paincontrol_lib.model.sampling import AUGuidedDDIMScheduler

    config = {"timestep_spacing": "trailing", "clip_sample": False}
    plain = DDIMScheduler(**config)
    guided = AUGuidedDDIMScheduler.from_config(plain.config)
    for scheduler in (plain, guided):
        scheduler.set_timesteps(6)
    direction = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    guided.gradient, guided.scale, guided.guided = (lambda clean: direction), 0.7, 2
    sample = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    for index, t in enumerate(plain.timesteps):
        ours, theirs = guided.step(eps, t, sample), plain.step(eps, t, sample)
        if index < 4:  # the first 4 of 6 steps are not steered
            torch.testing.assert_close(ours.prev_sample, theirs.prev_sample)
        else:
            torch.testing.assert_close(
                ours.pred_original_sample, theirs.pred_original_sample - 0.7 * direction,
                rtol=1e-4, atol=1e-4,
            )  # fmt: skip


def test_the_guide_checks_what_it_is_given():
    neutrals = np.zeros((2, 64, 64, 3), np.uint8)
    assert requested_aus([{"AU04": 3.0}, {}]).tolist() == [
        [3.0, 0, 0, 0, 0, 0],
        [0.0] * len(PAIN_AUS),
    ]
    with pytest.raises(ValueError, match="targets"):
        AUGuide.load(np.zeros((3, len(PAIN_AUS))), neutrals)
    with pytest.raises(ValueError, match="finite"):
        AUGuide.load(np.full((2, len(PAIN_AUS)), np.nan), neutrals)
    clipped = AUGuide.load(np.full((2, len(PAIN_AUS)), 9.0), neutrals).targets
    assert clipped[:, PAIN_AUS.index("AU43")].max() == 1.0 and clipped.max() == 5.0


def _face():
    """A synthetic face crop (skin ellipse, dark irises) and its canonical mesh."""
    from paincontrol_lib import facemesh
    from paincontrol_lib.landmarks.align import align, canonical_landmarks
    from paincontrol_lib.landmarks.face import Face

    aligned = align(canonical_landmarks() * 300)[0]
    image = np.full((64, 64, 3), 200, np.uint8)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    image[((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.35) ** 2 < 1] = (220, 170, 140)
    for eye in (facemesh.RIGHT_IRIS_CENTER, facemesh.LEFT_IRIS_CENTER):
        x, y = aligned[eye, :2]
        image[(xx - x) ** 2 + (yy - y) ** 2 < 0.03**2] = 20
    return Face(image, aligned * 64, aligned, align(aligned * 64)[1], "synthetic")


def _draw(model, sampler, guide, n=3):
    from paincontrol_lib.landmarks.control import render_control
    from paincontrol_lib.model.sampling import sample
    from paincontrol_lib.retarget import aus_for_pspi, retarget

    face = _face()
    expr = retarget("explicit", face.landmarks, aus=aus_for_pspi(12), size=64)
    control = torch.from_numpy(np.array(render_control(expr.aligned * 64, 64)))
    control = control.permute(2, 0, 1).float()
    controls = (control / 255)[None].repeat(n, 1, 1, 1)
    identity = np.zeros((n, model.config.identity_dim), np.float32)
    images = sample(model, controls, identity, ["brows lowered, eyes closed"] * n, sampler,
                    list(range(n)), guide=guide)  # fmt: skip
    return images, face.crop(64), expr


def test_guidance_brings_the_guide_reading_toward_the_request():
    """The shipped model drawn with and without AU guidance on the same noise: the guide reads
    the guided images closer to the request (here PSPI 12: brows lowered, eyes closed)."""
    from paincontrol_lib.au_reading.pixels import SCALE, PixelAU
    from paincontrol_lib.model.presets import PainControlModel

    model = PainControlModel.from_pretrained(SHIPPED)
    reader = PixelAU.load(GUIDE)
    sampler = SamplerConfig(steps=4)
    plain, photo, expr = _draw(model, sampler, None)
    n = len(plain)
    guide = AUGuide(reader, requested_aus([expr.aus] * n), [photo] * n)
    steered, _, _ = _draw(model, replace(sampler, au_guidance=20.0), guide)
    with pytest.raises(ValueError, match="AU guide"):
        _draw(model, replace(sampler, au_guidance=20.0), None)

    def error(images):
        read = reader.predict(images, np.stack([photo] * n))
        return (np.abs(read - guide.targets) / SCALE).mean()

    assert error(steered) < 0.8 * error(plain), (error(steered), error(plain))
