"""Sampling with the stock ``StableDiffusionControlNetPipeline`` (what users run, too).

Transfer has a photo of the target person, not only its identity embedding, so sampling can
start from that photo instead of pure noise (SDEdit, Meng et al. 2022): a start image is noised
to an intermediate step and only the last ``reference_strength`` of the DDIM schedule is run.
Callers pass the target's neutral crop warped onto the requested mesh, so skin, hair,
background and the coarse geometry come from the person's photo and the model adds what the
warp cannot (closed lids, teeth). The README's design notes measure what it does to identity,
landmark following and expression amplitude.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor


class TailDDIMScheduler(DDIMScheduler):
    """DDIM that runs only the last ``keep`` of its timesteps (all when ``keep`` is None).

    The stride between steps is that of the full schedule, so the tail is exactly the end of
    the schedule the pure-noise sampler runs."""

    keep: int | None = None

    def set_timesteps(self, num_inference_steps: int, device=None):
        super().set_timesteps(num_inference_steps, device)
        if self.keep is not None:
            self.timesteps = self.timesteps[len(self.timesteps) - self.keep :]


def steps_run(steps: int, reference_strength: float) -> int:
    """DDIM steps actually run from a reference noised to ``reference_strength`` (0-1]."""
    if not 0 < reference_strength <= 1:
        raise ValueError(f"reference_strength {reference_strength}: expected a value in (0, 1]")
    return max(1, min(steps, round(steps * reference_strength)))


@torch.no_grad()
def sample(
    model,
    controls: torch.Tensor,
    identity: np.ndarray | torch.Tensor | None,
    prompts: list[str],
    seed: int = 0,
    steps: int = 20,
    guidance_scale: float = 1.0,
    identity_scale: float = 1.0,
    control_scale: float = 1.0,
    batch_size: int = 32,
    seeds: list[int] | None = None,
    references: torch.Tensor | None = None,
    reference_strength: float = 1.0,
) -> np.ndarray:
    """Images (n, H, W, 3) uint8 for control images (n, 3, H, W) in [0, 1], identity embeddings
    (n, d) (None or zeros: no identity) and prompts. Image ``i`` is seeded with ``seeds[i]``
    (default ``seed + i``), so its noise does not depend on the batch it is in; the frames of a
    sequence share their noise when they share a seed.

    ``references`` (n, 3, H, W) in [-1, 1], a start image per sample (the target's photo,
    warped onto the control's mesh), are noised with that same noise and denoised through the
    last ``reference_strength`` of the schedule; strength 1 (or no references) is the
    pure-noise sampler."""
    keep = steps_run(steps, reference_strength)
    n = len(prompts)
    if seeds is not None and len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} images")
    size = controls.shape[-1]
    if references is not None and tuple(references.shape) != (n, 3, size, size):
        raise ValueError(
            f"references of shape {tuple(references.shape)}: expected {(n, 3, size, size)}"
        )
    from_reference = references is not None and keep < steps
    pipe = model.pipeline()
    if from_reference:
        pipe.scheduler = TailDDIMScheduler.from_config(pipe.scheduler.config)
        pipe.scheduler.keep = keep
        pipe.scheduler.set_timesteps(steps)
        first_step = pipe.scheduler.timesteps[:1]
    pipe.set_ip_adapter_scale(identity_scale)
    if identity is None:
        identity = np.zeros((n, model.config.identity_dim), np.float32)
    device = model.unet.device
    identity = torch.as_tensor(np.asarray(identity), dtype=torch.float32, device=device)
    out = []
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        ids = identity[sl][:, None, :]
        if guidance_scale > 1:
            ids = torch.cat([torch.zeros_like(ids), ids])
        generators = [
            torch.Generator().manual_seed(seeds[i] if seeds is not None else seed + i)
            for i in range(sl.start, sl.stop)
        ]
        latents = None
        if from_reference:
            clean = model.to_latent(references[sl].to(device), deterministic=True)
            noise = randn_tensor(clean.shape, generator=generators, device=device)
            latents = pipe.scheduler.add_noise(clean, noise, first_step.repeat(len(clean)))
            latents = latents.to(model.unet.dtype)
        result = pipe(
            prompt=prompts[sl],
            image=controls[sl],
            ip_adapter_image_embeds=[ids],
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            controlnet_conditioning_scale=control_scale,
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
