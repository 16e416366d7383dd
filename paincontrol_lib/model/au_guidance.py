"""AU guidance: steer each denoising step toward the requested pain-AU intensities.

The paper names its own weakness: AU4 (brow lowerer) and AU43 (eye closure) come out too weak.
A ControlNet conditioned on landmarks is told where the lids and brows go, not what closed lids
and furrowed brows look like. Guidance adds that, in the spirit of classifier guidance
(Dhariwal & Nichol 2021) but on the *predicted clean image* (as universal guidance, Bansal et
al. 2023): at a guided DDIM step the model's noise prediction gives the clean image it is
heading for, ``x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)``; the guide reader reads that image beside
the person's neutral crop and ``x0`` moves down the gradient of

    1/2 sum over the pain AUs of ((read - requested) / range)^2

(each AU as a fraction of its FACS range, so AU43's 0-1 weighs as AU4's 0-5), in
``au_guidance_iterations`` steps whose lengths add up to ``au_guidance``; only the last
``au_guidance_last`` of the steps run are guided. The noise prediction is rewritten to agree with
the moved ``x0`` and the scheduler's own update runs, so the model keeps drawing the rest of the
image. No gradient flows through the UNet: a few reader forwards and backwards per guided step,
cheap beside the UNet.

The guide is the shipped ``guide`` pixel reader (``pretrained/au-readers/guide``, params
``tune.au_guide`` and ``transfer.au_guide``: fresh SynthPain identities, no person of the
dataset). It never scores: stage 04 scores with its own AU readers and reports the guide beside
them on every method's outputs, so an image that fools the guide without showing the AU is
visible.

The requested intensities are what the request knows: the guide's own reading of the source
frame beside the source's neutral (stage 03's sequences; in sampler tuning the row's own frame),
or the expression's AUs (explicit PSPI levels, the command line).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paincontrol_lib.au_reading.pixels import SCALE, SHIPPED, PixelAU, as_tensor
from paincontrol_lib.facs import PAIN_AUS

GUIDE = SHIPPED / "guide"


def requested_aus(aus: list[dict]) -> np.ndarray:
    """(n, 6) pain-AU intensities in ``PAIN_AUS`` order from requests ``{"AU04": 3, ...}``
    (an AU not named is absent: 0)."""
    return np.array([[float(a.get(au, 0.0)) for au in PAIN_AUS] for a in aus], np.float32)


@dataclass
class AUGuide:
    """What steers a batch: the guide reader, each sample's requested pain AUs (n, 6) on the
    FACS scale and its person's neutral crop (n, H, W, 3) uint8."""

    reader: PixelAU
    targets: np.ndarray
    neutrals: np.ndarray

    def __post_init__(self):
        self.targets = np.asarray(self.targets, np.float32)
        self.neutrals = np.asarray(self.neutrals)
        n = len(self.targets)
        if self.targets.shape != (n, len(PAIN_AUS)) or len(self.neutrals) != n:
            raise ValueError(
                f"AU guide: targets {self.targets.shape} and neutral crops "
                f"{self.neutrals.shape}: need (n, {len(PAIN_AUS)}) and (n, H, W, 3)"
            )
        if not np.isfinite(self.targets).all():
            raise ValueError("AU guide: requested AU intensities must be finite")
        self.targets = np.clip(self.targets, 0, SCALE)

    @classmethod
    def load(cls, targets, neutrals, folder=GUIDE) -> AUGuide:
        return cls(PixelAU.load(folder), targets, neutrals)

    @classmethod
    def from_sources(cls, sources, source_neutrals, neutrals, folder=GUIDE) -> AUGuide:
        """Requested AUs = the guide's reading of each source frame beside its own neutral."""
        reader = PixelAU.load(folder)
        return cls(reader, reader.predict(sources, source_neutrals), neutrals)

    def __len__(self) -> int:
        return len(self.targets)

    def loss(self, pixels, rows: slice):
        """Per-sample squared AU error (fractions of range) of images in [-1, 1] (b, 3, H, W)."""
        import torch

        neutrals = as_tensor(self.neutrals[rows]).to(pixels.device)
        target = torch.from_numpy(self.targets[rows]).to(pixels.device)
        scale = torch.from_numpy(SCALE).to(pixels.device)
        read = self.reader.net(((pixels + 1) / 2).float(), neutrals)
        return 0.5 * (((read - target) / scale) ** 2).sum(1)

    def gradient(self, model, latents, rows: slice):
        """d loss / d latents, each sample's own (the loss is a sum over samples)."""
        import torch

        self.reader.net.eval()
        with torch.enable_grad():
            x = latents.detach().float().requires_grad_(True)
            pixels = model.from_latent(x.to(latents.dtype)).clamp(-1, 1)
            (grad,) = torch.autograd.grad(self.loss(pixels, rows).sum(), x)
        return grad.to(latents.dtype)
