"""Sampling with the stock ``StableDiffusionControlNetPipeline`` (what users run, too).

One :class:`~paincontrol_lib.model.sampler.SamplerConfig` (``params.yaml: sampler``) decides
how every sample is drawn: stage 02's held-out scores, transfer, augmentation and the CLI read
the same settings.

Transfer has a photo of the target person, not only its identity embedding, so sampling can
start from that photo instead of pure noise (SDEdit, Meng et al. 2022): a start image is noised
to an intermediate step and only the last ``start_strength`` of the DDIM schedule is run.
:func:`~paincontrol_lib.model.sampler.start_images` makes the start: the target's neutral crop
warped onto the requested mesh (``warped_target``), so skin, hair, background and the coarse
geometry come from the person's photo and the model adds what the warp cannot (closed lids,
teeth); or the unwarped photo (``target_photo``); or none (``noise``, the model alone). The
docs/design.md's design notes measure what it does to identity, landmark following and amplitude.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from paincontrol_lib.model.sampler import SamplerConfig


class TailDDIMScheduler(DDIMScheduler):
    """DDIM that runs only the last ``keep`` of its timesteps (all when ``keep`` is None).

    The stride between steps is that of the full schedule, so the tail is exactly the end of
    the schedule the pure-noise sampler runs."""

    keep: int | None = None

    def set_timesteps(self, num_inference_steps: int, device=None):
        super().set_timesteps(num_inference_steps, device)
        if self.keep is not None:
            self.timesteps = self.timesteps[len(self.timesteps) - self.keep :]


class AUGuidedDDIMScheduler(TailDDIMScheduler):
    """DDIM (of which the tail runs, as :class:`TailDDIMScheduler`) whose last ``guided`` steps
    move the predicted clean image down ``gradient`` (clean latents -> the AU loss's gradient;
    :mod:`paincontrol_lib.model.au_guidance`) in ``inner`` steps of ``scale / inner`` and rewrite
    the noise prediction to agree, before DDIM's own update."""

    gradient = None
    scale: float = 0.0
    guided: int = 0
    inner: int = 1

    def step(self, model_output, timestep, sample, *args, **kwargs):
        index = int((self.timesteps == timestep).nonzero()[0, 0])
        if self.gradient is not None and index >= len(self.timesteps) - self.guided:
            alpha = self.alphas_cumprod[int(timestep)].to(sample.device)
            clean = (sample - (1 - alpha).sqrt() * model_output) / alpha.sqrt()
            # x0 - s g  <=>  eps + sqrt(a / (1 - a)) s g, for the same x_t
            moved = clean
            for _ in range(self.inner):
                moved = moved - self.scale / self.inner * self.gradient(moved)
            model_output = model_output + (alpha / (1 - alpha)).sqrt() * (clean - moved)
        return super().step(model_output, timestep, sample, *args, **kwargs)


@torch.no_grad()
def sample(
    model,
    controls: torch.Tensor,
    identity: np.ndarray | torch.Tensor | None,
    prompts: list[str],
    sampler: SamplerConfig,
    seeds: list[int],
    starts: np.ndarray | None = None,
    batch_size: int = 32,
    guide=None,
) -> np.ndarray:
    """Images (n, H, W, 3) uint8 for control images (n, 3, H, W) in [0, 1], identity embeddings
    (n, d) (None or zeros: no identity) and prompts. Image ``i`` is seeded with ``seeds[i]``, so
    its noise does not depend on the batch it is in; the frames of a sequence share their noise
    when they share a seed.

    ``starts`` (n, H, W, 3) uint8, a start image per sample (:func:`start_images`), are noised
    with that same noise and denoised through the last ``sampler.start_strength`` of the
    schedule (at strength 0 they are returned as they are); without them, or with
    ``sampler.start == "noise"``, sampling starts from noise.

    ``guide`` (an :class:`~paincontrol_lib.model.au_guidance.AUGuide`, one row per image) steers
    the last ``sampler.au_guided_steps`` steps toward its requested AUs; a sampler with AU
    guidance needs one."""
    n = len(prompts)
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} images")
    size = controls.shape[-1]
    if starts is not None and tuple(np.shape(starts)) != (n, size, size, 3):
        raise ValueError(f"start images of shape {np.shape(starts)}: expected {(n, size, size, 3)}")
    steps, keep = sampler.steps, sampler.steps_run
    from_start = starts is not None and sampler.from_start_image
    if from_start and keep == 0:  # strength 0: the start image is the output (e.g. the warp)
        return np.array(starts, dtype=np.uint8)
    if sampler.au_guided_steps and (guide is None or len(guide) != n):
        raise ValueError(f"a sampler with AU guidance needs an AU guide of {n} rows (requested "
                         "AUs and neutral crops); got " + ("none" if guide is None else
                                                           f"{len(guide)}"))  # fmt: skip
    pipe = model.pipeline()
    if from_start or sampler.au_guided_steps:
        pipe.scheduler = AUGuidedDDIMScheduler.from_config(pipe.scheduler.config)
        pipe.scheduler.keep = keep if from_start else None
        pipe.scheduler.scale, pipe.scheduler.guided = sampler.au_guidance, sampler.au_guided_steps
        pipe.scheduler.inner = sampler.au_guidance_iterations
        pipe.scheduler.set_timesteps(steps)
    if from_start:
        first_step = pipe.scheduler.timesteps[:1]
        start_pixels = torch.from_numpy(np.asarray(starts)).permute(0, 3, 1, 2) / 127.5 - 1
    pipe.set_ip_adapter_scale(sampler.identity_scale)
    if identity is None:
        identity = np.zeros((n, model.config.identity_dim), np.float32)
    device = model.unet.device
    identity = torch.as_tensor(np.asarray(identity), dtype=torch.float32, device=device)
    out = []
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        ids = identity[sl][:, None, :]
        if sampler.guidance_scale > 1:
            ids = torch.cat([torch.zeros_like(ids), ids])
        generators = [torch.Generator().manual_seed(seeds[i]) for i in range(sl.start, sl.stop)]
        if sampler.au_guided_steps:
            pipe.scheduler.gradient = partial(guide.gradient, model, rows=sl)
        latents = None
        if from_start:
            clean = model.to_latent(start_pixels[sl].to(device), deterministic=True)
            noise = randn_tensor(clean.shape, generator=generators, device=device)
            latents = pipe.scheduler.add_noise(clean, noise, first_step.repeat(len(clean)))
            latents = latents.to(model.unet.dtype)
        result = pipe(
            prompt=prompts[sl],
            image=controls[sl],
            ip_adapter_image_embeds=[ids],
            num_inference_steps=steps,
            guidance_scale=sampler.guidance_scale,
            controlnet_conditioning_scale=sampler.control_scale,
            generator=generators,
            latents=latents,
            height=size,
            width=size,
            output_type="latent" if model.pixel_space else "np",
        ).images
        if model.pixel_space:
            pixels = model.from_latent(result).clamp(-1, 1)
            images = ((pixels + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        else:
            images = (np.asarray(result) * 255).round().clip(0, 255).astype(np.uint8)
        out.append(images)
    return np.concatenate(out)
