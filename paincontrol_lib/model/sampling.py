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
) -> np.ndarray:
    """Images (n, H, W, 3) uint8 for control images (n, 3, H, W) in [0, 1], identity embeddings
    (n, d) (None or zeros: no identity) and prompts. Image ``i`` is seeded with ``seeds[i]``, so
    its noise does not depend on the batch it is in; the frames of a sequence share their noise
    when they share a seed.

    ``starts`` (n, H, W, 3) uint8, a start image per sample (:func:`start_images`), are noised
    with that same noise and denoised through the last ``sampler.start_strength`` of the
    schedule (at strength 0 they are returned as they are); without them, or with
    ``sampler.start == "noise"``, sampling starts from noise."""
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
    pipe = model.pipeline()
    if from_start:
        pipe.scheduler = TailDDIMScheduler.from_config(pipe.scheduler.config)
        pipe.scheduler.keep = keep
        pipe.scheduler.set_timesteps(steps)
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
