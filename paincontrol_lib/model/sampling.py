"""Sampling with the stock ``StableDiffusionControlNetPipeline`` (what users run, too)."""

from __future__ import annotations

import numpy as np
import torch


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
) -> np.ndarray:
    """Images (n, H, W, 3) uint8 for control images (n, 3, H, W) in [0, 1], identity embeddings
    (n, d) (None or zeros: no identity) and prompts. Image ``i`` is seeded with ``seeds[i]``
    (default ``seed + i``), so its noise does not depend on the batch it is in; the frames of a
    sequence share their noise when they share a seed."""
    pipe = model.pipeline()
    pipe.set_ip_adapter_scale(identity_scale)
    n = len(prompts)
    if seeds is not None and len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} images")
    size = controls.shape[-1]
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
        result = pipe(
            prompt=prompts[sl],
            image=controls[sl],
            ip_adapter_image_embeds=[ids],
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            controlnet_conditioning_scale=control_scale,
            generator=generators,
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
