"""Does a trained model follow the landmarks and keep the identity? Measured on held-out people.

For held-out frames (identities never seen in training) the model is given the frame's control
image, its AU prompt and the identity embedding of the person's *neutral reference* image. Each
sample is upscaled and meshed by MediaPipe, then scored:

- detection rate, and NME between the detected mesh and the control landmarks — and the same
  against *shuffled* controls (another frame's), since a face in the right place scores well on
  NME whatever its expression;
- tracking: correlation of eye opening, mouth opening and inner-brow height between the control
  and the detected mesh, and the slope of detected on requested (the amplitude);
- identity top-1: the sample's embedding by the identity *instrument* (:class:`IdentityScorer`,
  SynthPain's in-domain encoder by default, never the encoder whose embedding the model is
  conditioned on: the instrument that guides a method never scores it) is nearest to its own
  person's *unseen frame* (the second reference frame, one no sampler receives) among all
  held-out people. The sampler is given the person's identity photo (the first reference frame:
  its embedding, and by default the start image), so scoring against that photo would reward
  copying it; that score is reported beside, as ``identity_top1_identity_photo``. The ceiling is
  the identity photo itself scored the same way (:func:`identity_photo_images`): what a perfect
  copy gets. A second judge (``judge``: dlib) may score the same samples beside
  (``identity_top1_dlib``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from paincontrol_lib import facemesh
from paincontrol_lib.identity import make_identity, top1_accuracy
from paincontrol_lib.landmarks.image import UPSCALE, load_image, upscale
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.seeds import stream

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class IdentityScorer:
    """An identity backend and the reference embeddings *it* made, so a sample and the frames it
    is compared with are always read by one instrument: ``gallery[s]`` is (2, d), person ``s``'s
    identity photo and unseen frame (their first two reference frames)."""

    backend: object
    gallery: dict
    label: str

    @classmethod
    def of(cls, examples, backend: str = "synthface", **options) -> IdentityScorer:
        """Embed each person's identity photo and unseen frame from their image files and
        MediaPipe meshes (the rows of ``examples.table`` named by ``reference_keys``);
        ``options`` go to the backend (``model_dir`` of the encoder)."""
        model = make_identity(backend, **options)
        rows = examples.table.set_index("key")
        gallery = {}
        for subject, keys in examples.reference_keys.items():
            refs = rows.loc[list(keys[:2])]
            images = [load_image(path) for path in refs["image"]]
            meshes = [np.asarray(m, dtype=np.float64).reshape(-1, 3) for m in refs["landmarks"]]
            gallery[subject] = model.embed_many(images, meshes)
        return cls(model, gallery, backend)


def pick_rows(examples, n: int, seed: int) -> np.ndarray:
    """``n`` rows spread over the held-out people (seeded), all rows if there are fewer."""
    rng = stream("heldout_rows", seed)
    if n >= len(examples):
        return np.arange(len(examples))
    return np.sort(rng.choice(len(examples), size=n, replace=False))


def score_images(
    images: np.ndarray,
    examples,
    rows: np.ndarray,
    upscale_to: int = UPSCALE,
    mesher: FaceMesher | None = None,
    identity: IdentityScorer | None = None,
    judge: IdentityScorer | None = None,
    meshed: tuple | None = None,
) -> dict:
    """Landmark-following and identity scores of ``images`` generated for ``examples[rows]``;
    identity by ``identity`` (default: the in-domain encoder), and by ``judge`` beside.
    ``meshed``: :func:`mesh_images` of ``images`` when the caller has it (not meshed twice)."""
    identity = identity or IdentityScorer.of(examples)
    if meshed is None:
        own_mesher = mesher is None
        mesher = mesher or FaceMesher()
        meshed = mesh_images(images, mesher, upscale_to)
        if own_mesher:
            mesher.close()
    big, found = meshed
    detected = np.array([f.detected for f in found])
    table = examples.table.iloc[rows]
    control = np.stack([np.asarray(a).reshape(-1, 3)[:, :2] * upscale_to for a in table["aligned"]])
    out = {"n_samples": int(len(rows)), "detection_rate": float(detected.mean())}
    if detected.sum() < 3:
        return out | {"nme": None, "nme_shuffled": None, "tracking_corr": {}, "tracking_slope": {},
                      "identity_top1": None}  # fmt: skip
    pred = np.stack([f.landmarks[:, :2] for f in found if f.detected])
    ctl = control[detected]
    shift = np.roll(np.arange(len(ctl)), max(1, len(ctl) // 2))
    out["nme"] = float(facemesh.nme(pred, ctl).mean())
    out["nme_shuffled"] = float(facemesh.nme(pred, ctl[shift]).mean())
    fp, fc = facemesh.expression_features(pred), facemesh.expression_features(ctl)
    out["tracking_corr"] = {k: _corr(fp[k], fc[k]) for k in fc}
    out["tracking_slope"] = {k: _slope(fc[k], fp[k]) for k in fc}
    subjects = np.array(table["subject"])[detected]
    faces = [(im, f.landmarks) for im, f in zip(big, found, strict=True) if f.detected]
    out |= _identity_top1(identity, faces, subjects)
    out["identity_top1_other_reference"] = out["identity_top1"]  # the historical key
    out["identity_scorer"] = identity.label
    if judge is not None:
        out[f"identity_top1_{judge.label}"] = _identity_top1(judge, faces, subjects)[
            "identity_top1"
        ]
    return out


def mesh_images(images, mesher: FaceMesher, upscale_to: int = UPSCALE) -> tuple[list, list]:
    """``(upscaled images, their MediaPipe faces)``: what every score of generated images reads."""
    big = [upscale(im, upscale_to) for im in images]
    return big, [mesher(im) for im in big]


def _identity_top1(scorer: IdentityScorer, faces, subjects) -> dict:
    """Top-1 of each face among all held-out people's unseen frames (and identity photos)."""
    queries = np.stack([scorer.backend.embed(image, mesh) for image, mesh in faces])
    labels = sorted(scorer.gallery)
    photos = np.stack([scorer.gallery[s][0] for s in labels])
    out = {"identity_top1_identity_photo": top1_accuracy(queries, photos, labels, subjects)}
    out["identity_top1"] = None  # against a frame no method saw: needs a second frame per person
    if all(len(scorer.gallery[s]) > 1 for s in labels):
        unseen = np.stack([scorer.gallery[s][1] for s in labels])
        out["identity_top1"] = top1_accuracy(queries, unseen, labels, subjects)
    return out | {"n_identities": len(labels)}


def identity_photo_images(examples, rows: np.ndarray) -> np.ndarray:
    """Each row's person's identity photo as uint8: "output = the identity photo", the copy
    that defines the identity ceiling (a metric that rewarded copying would score it above)."""
    photos = identity_photos(examples, examples.table["subject"].iloc[rows])
    return ((photos.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def start_images_for(examples, rows: np.ndarray, start: str) -> np.ndarray | None:
    """The sampler's start image for each row (:func:`~paincontrol_lib.model.sampling.
    start_images`): its person's neutral identity photo, warped from its own mesh onto the row's
    control mesh for ``warped_target``; None for ``noise``."""
    from paincontrol_lib.model.sampler import start_images

    if start == "noise":
        return None
    size = examples.images.shape[-1]
    photo_rows = _identity_photo_rows(examples, examples.table["subject"].iloc[rows])
    meshes = examples.table["aligned"]

    def pixels(i):
        return np.asarray(meshes.iloc[i]).reshape(-1, 3) * size

    return start_images(
        start,
        ground_truth_images(examples, photo_rows),
        [pixels(r) for r in photo_rows],
        [pixels(i) for i in rows],
    )


def identity_photos(examples, subjects) -> torch.Tensor:
    """Each subject's neutral identity photo (``reference_keys[s][0]``, whose embedding the
    model is given) as the model sees it: (n, 3, H, W) in [-1, 1]."""
    return examples.images[_identity_photo_rows(examples, subjects)]


def _identity_photo_rows(examples, subjects) -> list[int]:
    """Rows of the subjects' neutral identity photos; they must be among ``examples`` (they
    are, for a split's own people)."""
    row_of = {key: i for i, key in enumerate(examples.table["key"])}
    missing = sorted({s for s in subjects if examples.reference_keys[s][0] not in row_of})
    if missing:
        raise ValueError(f"neutral reference frames of {missing} are not among the examples")
    return [row_of[examples.reference_keys[s][0]] for s in subjects]


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _slope(requested: np.ndarray, detected: np.ndarray) -> float | None:
    """Least-squares slope of detected on requested: the expression's amplitude, which a
    correlation does not see (1: full amplitude; a sampler that halves every change reads 0.5)."""
    if len(requested) < 3 or np.std(requested) == 0:
        return None
    return float(np.polyfit(requested, detected, 1)[0])


def ground_truth_images(examples, rows: np.ndarray) -> np.ndarray:
    """The held-out frames themselves at the model's resolution: the metrics' ceiling."""
    return (
        ((examples.images[rows].permute(0, 2, 3, 1).numpy() + 1) * 127.5)
        .round()
        .clip(0, 255)
        .astype(np.uint8)
    )


def evaluate_model(model, examples, rows: np.ndarray, sampler, seed: int = 0, guide_dir=None,
                   **score_kw):  # fmt: skip
    """Sample ``examples[rows]`` (:func:`draw_samples`) and score the samples; returns
    ``(scores, images)``."""
    images = draw_samples(model, examples, rows, sampler, seed, guide_dir)
    return score_images(images, examples, rows, **score_kw), images


def draw_samples(model, examples, rows: np.ndarray, sampler, seed: int = 0, guide_dir=None):
    """Sample ``examples[rows]`` with ``model`` under ``sampler`` (a
    :class:`~paincontrol_lib.model.sampling.SamplerConfig`): (n, H, W, 3) uint8. Row ``j`` is
    seeded ``seed + j``. A sampler with AU guidance steers toward each row's own frame as the
    guide reader in ``guide_dir`` reads it."""
    from paincontrol_lib.model.sampling import sample

    subjects = examples.table["subject"].iloc[rows]
    identity = np.stack([examples.references[s][0] for s in subjects])
    prompts = [examples.prompts[i] for i in rows]
    starts = start_images_for(examples, rows, sampler.start) if sampler.from_start_image else None
    seeds = [seed + j for j in range(len(rows))]
    guide = None
    if sampler.au_guided_steps:  # the request is the row's own frame: its AUs, read by the guide
        from paincontrol_lib.model.au_guidance import AUGuide

        if guide_dir is None:
            raise ValueError("a sampler with AU guidance needs guide_dir, the guide AU reader")
        photos = identity_photo_images(examples, rows)
        guide = AUGuide.from_sources(ground_truth_images(examples, rows), photos, photos,
                                     folder=guide_dir)  # fmt: skip
    return sample(model, examples.controls[rows], identity, prompts, sampler, seeds, starts,
                  guide=guide)  # fmt: skip
