"""Put an expression on a target identity: PainControl and the methods it is compared with.

One interface (:class:`Transfer`) for every method, on faces in the canonical frame (aligned
crops, where the model works and control images are drawn):

- ``paincontrol``: control image of the retargeted mesh + AU prompt + the target's identity
  embedding (from its neutral image);
- ``warp``: the motion-transfer baseline: the target's neutral crop warped piecewise-affinely
  from its neutral mesh onto the retargeted mesh (the landmark-driven warp that video
  reenactment methods such as FOMM, TPSMM and LivePortrait refine);
- ``no_identity``: PainControl without identity (ablation): no identity tokens, and sampling
  starts from pure noise instead of the target's photo;
- ``no_landmarks``: PainControl without the control image (text + identity only, ablation),
  starting from the target's unwarped neutral photo.

With ``reference_strength`` < 1 (see :mod:`paincontrol_lib.model.sampling`) ``paincontrol``
denoises the last part of its schedule from the ``warp`` output, noised: the target's own photo
already wearing the requested geometry.

A sequence is transferred frame by frame with one shared seed (the same noise every frame), so
changes between frames come from the expression, not from fresh noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paincontrol_lib.landmarks import Similarity, align, aligned_crop, as_rgb_uint8, load_image
from paincontrol_lib.retarget import Retargeted
from paincontrol_lib.warp import warp_to

METHODS = ("paincontrol", "warp", "no_identity", "no_landmarks")
MODEL_METHODS = ("paincontrol", "no_identity", "no_landmarks")


class FaceNotFoundError(ValueError):
    """No face could be meshed in an input image."""


@dataclass
class Face:
    """A meshed face: image, MediaPipe mesh (pixels), canonical-frame mesh and the transform."""

    image: np.ndarray
    landmarks: np.ndarray
    aligned: np.ndarray
    transform: Similarity
    name: str = ""

    def crop(self, size: int) -> np.ndarray:
        """The face in the canonical frame at ``size`` px."""
        return aligned_crop(self.image, self.transform, size)


def read_face(source, mesher=None, name: str | None = None) -> Face:
    """Mesh one image (path or array); :class:`FaceNotFoundError` says which when none."""
    from paincontrol_lib.landmarks import FaceMesher

    label = name or (str(source) if isinstance(source, str | Path) else "image")
    image = load_image(source) if isinstance(source, str | Path) else as_rgb_uint8(source)
    own = mesher is None
    mesher = mesher or FaceMesher()
    try:
        found = mesher(image)
    finally:
        if own:
            mesher.close()
    if not found.detected:
        raise FaceNotFoundError(f"{label}: MediaPipe found no face in this image")
    aligned, transform = align(found.landmarks)
    return Face(image, found.landmarks, aligned, transform, label)


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

    def __init__(self, model=None, identity=None, steps: int = 6, guidance_scale: float = 1.0,
                 identity_scale: float = 1.0, reference_strength: float = 1.0,
                 size: int | None = None):  # fmt: skip
        from paincontrol_lib.model.sampling import steps_run

        self.model = model
        self.steps, self.guidance_scale, self.identity_scale = steps, guidance_scale, identity_scale
        steps_run(steps, reference_strength)  # a bad value fails here, not mid-run
        self.reference_strength = reference_strength
        self.size = size or (model.config.resolution if model is not None else 128)
        if model is not None and self.size != model.config.resolution:
            raise ValueError(
                f"size {self.size} differs from the model's resolution {model.config.resolution}"
            )
        self._identity = identity
        # id(face) -> (face, embedding): holding the face keeps its id from being reused.
        self._embeddings: dict[int, tuple[Face, np.ndarray]] = {}

    def identity_of(self, face: Face) -> np.ndarray:
        """The face's identity embedding (dlib unless the model was trained with ArcFace)."""
        if id(face) not in self._embeddings:
            if self._identity is None:
                from paincontrol_lib.identity import make_identity

                self._identity = make_identity(self.model.config.identity_backend)
            embedding = self._identity.embed(face.image, face.landmarks)
            self._embeddings[id(face)] = (face, embedding)
        return self._embeddings[id(face)][1]

    def _warp(self, target: Face, expressions: list[Retargeted]) -> np.ndarray:
        crop = target.crop(self.size)
        return np.stack(
            [warp_to(crop, target.aligned * self.size, e.aligned * self.size) for e in expressions]
        )

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
            return self._warp(target, expressions)
        if self.model is None:
            raise ValueError(f"method {method!r} needs a PainControl checkpoint")
        import torch

        from paincontrol_lib.landmarks import render_control
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
        references = None
        if method == "no_identity":
            identity = np.zeros_like(identity)
        elif self.reference_strength < 1:
            # no_landmarks starts from the unwarped photo: a warp would carry the geometry in.
            starts = (self._warp(target, expressions) if method == "paincontrol"
                      else np.repeat(target.crop(self.size)[None], n, axis=0))  # fmt: skip
            references = torch.from_numpy(starts).permute(0, 3, 1, 2) / 127.5 - 1
        # Estimated AUs are continuous: below FACS level A (0.5) an AU is absent, as in training.
        prompts = [
            prompt_from_aus({au: v for au, v in e.aus.items() if v >= 0.5}) for e in expressions
        ]
        return sample(
            self.model, controls, identity, prompts, steps=self.steps,
            guidance_scale=self.guidance_scale, identity_scale=self.identity_scale,
            seeds=[seed] * n if shared_noise else [seed + i for i in range(n)],
            references=references, reference_strength=self.reference_strength,
        )  # fmt: skip
