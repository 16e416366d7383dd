"""Put an expression on a target identity: PainControl and the methods it is compared with.

One interface (:class:`Transfer`) for every method, on faces in the canonical frame (aligned
crops, where the model works and control images are drawn):

- ``paincontrol``: control image of the retargeted mesh + AU prompt + the target's identity
  embedding (from its neutral image), drawn with the pipeline's sampler (by default from the
  target's photo warped onto the requested mesh; :mod:`paincontrol_lib.model.sampler`);
- ``paper_sampler``: the same model drawn as the paper draws it: from pure noise, identity from
  the embedding alone (:meth:`SamplerConfig.model_alone`);
- ``warp``: the motion-transfer baseline: the target's neutral crop warped piecewise-affinely
  from its neutral mesh onto the retargeted mesh (the landmark-driven warp that video
  reenactment methods such as FOMM, TPSMM and LivePortrait refine);
- single-factor ablations of ``paincontrol`` (same sampler, same start, one input removed):
  ``no_identity`` (identity tokens zeroed), ``no_landmarks`` (control image zeroed) and
  ``no_text`` (empty prompt).

A sequence is transferred frame by frame with one shared seed (the same noise every frame), so
changes between frames come from the expression, not from fresh noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paincontrol_lib.landmarks.face import Face
from paincontrol_lib.model.sampler import SamplerConfig, start_images
from paincontrol_lib.retarget import Retargeted

METHODS = ("paincontrol", "paper_sampler", "warp", "no_identity", "no_landmarks", "no_text")
METHOD_LABELS = {  # what figures and tables show readers
    "paincontrol": "PainControl",
    "paper_sampler": "paper's sampler (noise start)",
    "warp": "warp baseline",
    "no_identity": "no identity tokens",
    "no_landmarks": "no landmarks",
    "no_text": "no text",
}
MANIFEST = "manifest.parquet"  # what stage 03 asked for, one row per generated image
MODEL_METHODS = ("paincontrol", "paper_sampler", "no_identity", "no_landmarks", "no_text")


def sequence_jitter(frames: np.ndarray) -> float | None:
    """Flicker of a generated sequence (t, H, W, 3): mean absolute second temporal difference
    in grey levels (0-255). Smooth motion scores low; frame-to-frame noise scores high."""
    frames = np.asarray(frames, dtype=np.float64)
    if len(frames) < 3:
        return None
    return float(np.abs(frames[2:] - 2 * frames[1:-1] + frames[:-2]).mean())


class Transfer:
    """Generate target faces wearing retargeted expressions, with any of :data:`METHODS`.

    ``model`` is a :class:`~paincontrol_lib.model.presets.PainControlModel` (only the warp
    needs none); images come out at the model's resolution (``size`` for the warp alone).
    """

    def __init__(self, model=None, sampler: SamplerConfig | None = None, identity=None,
                 size: int | None = None):  # fmt: skip
        self.model = model
        self.sampler = sampler or SamplerConfig()
        self.size = size or (model.config.resolution if model is not None else 128)
        if model is not None and self.size != model.config.resolution:
            raise ValueError(
                f"size {self.size} differs from the model's resolution {model.config.resolution}"
            )
        self._identity = identity
        # id(face) -> (face, embedding): holding the face keeps its id from being reused.
        self._embeddings: dict[int, tuple[Face, np.ndarray]] = {}

    def sampler_for(self, method: str) -> SamplerConfig:
        """``paper_sampler`` is the model alone (pure noise, identity scale 1); every other
        model method shares the configured sampler and start, so an ablation changes one thing."""
        return self.sampler.model_alone() if method == "paper_sampler" else self.sampler

    def identity_of(self, face: Face) -> np.ndarray:
        """The face's identity embedding (dlib unless the model was trained with ArcFace)."""
        if id(face) not in self._embeddings:
            if self._identity is None:
                from paincontrol_lib.identity import make_identity

                self._identity = make_identity(self.model.config.identity_backend)
            embedding = self._identity.embed(face.image, face.landmarks)
            self._embeddings[id(face)] = (face, embedding)
        return self._embeddings[id(face)][1]

    def _starts(self, start: str, target: Face, expressions: list[Retargeted]):
        crop = target.crop(self.size)
        n = len(expressions)
        return start_images(start, [crop] * n, [target.aligned * self.size] * n,
                            [e.aligned * self.size for e in expressions])  # fmt: skip

    def generate(
        self, method: str, target: Face, expressions: list[Retargeted], seed: int = 0,
        shared_noise: bool = False,
    ) -> np.ndarray:  # fmt: skip
        """Images (n, size, size, 3) of ``target`` wearing each of ``expressions``."""
        if method not in METHODS:
            raise ValueError(f"method {method!r}: expected one of {METHODS}")
        if not expressions:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        if method == "warp":
            return self._starts("warped_target", target, expressions)
        if self.model is None:
            raise ValueError(f"method {method!r} needs a PainControl checkpoint")
        import torch

        from paincontrol_lib.landmarks.control import render_control
        from paincontrol_lib.model.sampling import sample
        from paincontrol_lib.model.text import prompt_from_aus

        n = len(expressions)
        controls = torch.from_numpy(
            np.stack([render_control(e.aligned * self.size, self.size) for e in expressions])
        ).permute(0, 3, 1, 2).float() / 255  # fmt: skip
        if method == "no_landmarks":
            controls = torch.zeros_like(controls)
        embedding = self.identity_of(target)
        identity = np.repeat(embedding[None], n, axis=0)
        if method == "no_identity":
            identity = np.zeros_like(identity)
        sampler = self.sampler_for(method)
        starts = (
            self._starts(sampler.start, target, expressions) if sampler.from_start_image else None
        )
        # Estimated AUs are continuous: below FACS level A (0.5) an AU is absent, as in training.
        prompts = [prompt_from_aus({au: v for au, v in e.aus.items() if v >= 0.5})
                   for e in expressions]  # fmt: skip
        if method == "no_text":
            prompts = [""] * n
        seeds = [seed] * n if shared_noise else [seed + i for i in range(n)]
        return sample(self.model, controls, identity, prompts, sampler, seeds, starts)


def load_manifest(out_dir):
    """Stage 03's manifest of generated images (a clear error before the stage has run)."""
    import pandas as pd

    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run the transfer stage first (dvc repro transfer)")
    return pd.read_parquet(path)
