"""Put an expression on a target identity: PainControl and the methods it is compared with.

One interface (:class:`Transfer`) for every method, on faces in the canonical frame (aligned
crops, where the model works and control images are drawn):

- ``paincontrol``: the paper's method: control image of the retargeted mesh + AU prompt + the
  target's identity embedding (from its neutral image), every DDIM step drawn from pure noise
  with the identity scale and guidance tuned on validation people (``tuning.json: paincontrol``);
- ``paincontrol_warp_start``: the same model started from the target's photo warped onto the
  requested mesh, running only the tail of the schedule (``tuning.json: warp_start``); its label
  says how many steps run (:attr:`SamplerConfig.label`);
- ``warp``: the motion-transfer baseline: the target's neutral crop warped piecewise-affinely
  from its neutral mesh onto the retargeted mesh (the landmark-driven warp that video
  reenactment methods such as FOMM, TPSMM and LivePortrait refine);
- single-factor ablations of ``paincontrol`` (its sampler, from noise, one input removed):
  ``no_identity`` (identity tokens zeroed), ``no_landmarks`` (control image zeroed) and
  ``no_text`` (empty prompt);
- ``paincontrol_au_guided``: beyond the paper, PainControl's sampler with AU guidance (each
  step's predicted clean image steered toward the requested pain AUs by the guide AU reader;
  :mod:`~paincontrol_lib.model.au_guidance`), step size and schedule tuned on validation people
  (``tuning.json: au_guided``). The requested AUs are the guide's reading of the source frame
  where the caller gives one (stage 03), else the expression's own AUs.

A sequence is transferred frame by frame with one shared seed (the same noise every frame), so
changes between frames come from the expression, not from fresh noise.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from paincontrol_lib.landmarks.face import Face
from paincontrol_lib.model.sampler import SamplerConfig, start_images
from paincontrol_lib.retarget import Retargeted

METHODS = ("paincontrol", "paincontrol_warp_start", "warp", "no_identity", "no_landmarks",
           "no_text", "paincontrol_au_guided")  # fmt: skip
METHOD_LABELS = {  # what figures and tables show readers (Transfer.labels adds the steps run)
    "paincontrol": "PainControl",
    "paincontrol_warp_start": "PainControl, warp start",
    "warp": "warp baseline",
    "no_identity": "no identity tokens",
    "no_landmarks": "no landmarks",
    "no_text": "no text",
    "paincontrol_au_guided": "PainControl + AU guidance",
}
ABLATIONS = ("no_identity", "no_landmarks", "no_text")
MANIFEST = "manifest.parquet"  # what stage 03 asked for, one row per generated image
AU_GUIDANCE = ("au_guidance", "au_guidance_last", "au_guidance_iterations")  # its sampler fields
MODEL_METHODS = ("paincontrol", "paincontrol_warp_start", *ABLATIONS, "paincontrol_au_guided")


class Transfer:
    """Generate target faces wearing retargeted expressions, with any of :data:`METHODS`.

    ``model`` is a :class:`~paincontrol_lib.model.presets.PainControlModel` (only the warp
    needs none); images come out at the model's resolution (``size`` for the warp alone).
    """

    def __init__(self, model=None, sampler: SamplerConfig | None = None, identity=None,
                 size: int | None = None, warp_start: SamplerConfig | None = None,
                 au_guided: SamplerConfig | None = None, guide_dir=None):  # fmt: skip
        self.model = model
        self.sampler = sampler or SamplerConfig()
        self.au_guided = au_guided
        if au_guided is not None and (
            not au_guided.au_guided_steps
            or replace(self.sampler, **{k: getattr(au_guided, k) for k in AU_GUIDANCE}) != au_guided
        ):
            raise ValueError("the AU-guided method needs PainControl's sampler with "
                             "au_guidance > 0 and nothing else changed")  # fmt: skip
        self._guide_reader, self._guide_dir = None, guide_dir
        self.warp_start = warp_start or SamplerConfig(start="warped_target")
        if self.warp_start.start != "warped_target" or not self.warp_start.steps_run:
            raise ValueError("the warp-start variant needs start warped_target and >= 1 step run")
        self.size = size or (model.config.resolution if model is not None else 128)
        if model is not None and self.size != model.config.resolution:
            raise ValueError(
                f"size {self.size} differs from the model's resolution {model.config.resolution}"
            )
        self._identity = identity
        # id(face) -> (face, embedding): holding the face keeps its id from being reused.
        self._embeddings: dict[int, tuple[Face, np.ndarray]] = {}

    def sampler_for(self, method: str) -> SamplerConfig:
        """``paincontrol_warp_start`` has its own sampler; PainControl and its ablations share
        one (from noise), so an ablation changes one input and nothing else; the AU-guided
        method adds AU guidance to it and changes nothing else."""
        if method == "paincontrol_au_guided":
            if self.au_guided is None:
                raise ValueError("paincontrol_au_guided needs a sampler with AU guidance "
                                 "(tuning.json: au_guided, chosen by stage 02)")  # fmt: skip
            return self.au_guided
        return self.warp_start if method == "paincontrol_warp_start" else self.sampler

    @property
    def guide_reader(self):
        """The guide AU reader (``guide_dir``, default the shipped ``pretrained/au-readers/
        guide``), loaded once."""
        if self._guide_reader is None:
            from paincontrol_lib.au_reading.pixels import PixelAU
            from paincontrol_lib.model.au_guidance import GUIDE

            self._guide_reader = PixelAU.load(self._guide_dir or GUIDE)
        return self._guide_reader

    def label(self, method: str) -> str:
        """What runs: a method drawn from a start image names its start and the steps run."""
        sampler = self.sampler_for(method)
        if method == "paincontrol_au_guided":  # the guided steps are named from noise too
            return sampler.label
        if method not in MODEL_METHODS or not sampler.from_start_image:
            return METHOD_LABELS.get(method, method)
        if method in ("paincontrol", "paincontrol_warp_start"):
            return sampler.label
        return f"{METHOD_LABELS[method]} ({sampler.label.removeprefix('PainControl, ')})"

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
        shared_noise: bool = False, requested: np.ndarray | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Images (n, size, size, 3) of ``target`` wearing each of ``expressions``.
        ``requested`` (n, 6): the pain AUs AU guidance steers toward (default: each
        expression's own AUs); unused by the other methods."""
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
        guide = None
        if sampler.au_guided_steps:
            from paincontrol_lib.model.au_guidance import AUGuide, requested_aus

            wanted = requested_aus([e.aus for e in expressions]) if requested is None else requested
            guide = AUGuide(self.guide_reader, wanted, [target.crop(self.size)] * n)
        return sample(self.model, controls, identity, prompts, sampler, seeds, starts, guide=guide)


def method_labels(manifest) -> dict[str, str]:
    """method -> what ran (stage 03 writes each output's label: start and steps run)."""
    if "label" not in manifest:
        return {m: METHOD_LABELS.get(m, m) for m in manifest["method"].unique()}
    return manifest.groupby("method")["label"].first().to_dict()


def load_manifest(out_dir):
    """Stage 03's manifest of generated images (a clear error before the stage has run)."""
    import pandas as pd

    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run the transfer stage first (dvc repro transfer)")
    return pd.read_parquet(path)
