"""Score transfer outputs: AU transfer, landmark following, identity, leakage and (on SynthPain)
distance to the exact answer; summarise and compare methods at the level of what is independent.

One row per generated image (:func:`score_outputs`), per-method means with two-way (source x
target person) cluster-robust intervals (:func:`summarise`), and the comparisons declared in
``params.yaml: evaluate.inference`` (every method against the warp, every ablation against the
full method) on paired differences, Holm over each declared family (:func:`compare_methods`).
The inference was chosen by simulating this design (``scripts/inference_check.py``). Realism is
:mod:`paincontrol_lib.realism`'s.

- requested AUs: the source frame's ground truth when the dataset has one (SynthPain), else
  what retargeting estimated; ``explicit`` rows: what was asked for;
- estimated AUs: each pain AU by the reader chosen for it on validation people
  (``au_reading.backends.AUReaders``: the ``pixels`` CNN on the output's crop beside the target's
  identity photo, or the ``mesh`` / ``learned`` backends on their MediaPipe meshes; default
  ``mesh``); the AUs a reader misses its goals on are flagged (``au_reading.backends.GOAL_ICC``,
  ``GOAL_EXACT_ERROR``);
- identity, read by the in-domain identity encoder (``identity.SynthFaceIdentity``; dlib beside
  as a second judge, its columns suffixed ``_dlib``): cosine similarity of the output to the
  target's *scoring frame*, a frame no method receives (``landmarks.table.scoring_rows``);
  top-1 among the scoring frames of every test person (``identity_top1_gallery``: is the output
  identified as the target?); closer to the target's frame than to the source's
  (``target_over_source``); and the similarity placed between the impostor floor (different
  test people's scoring frames) and the genuine ceiling (the exact answers, else the identity
  photo, scored as outputs are): ``identity_normalised`` (:func:`identity_bounds`). Methods
  receive the identity photo, so similarity to it (``identity_similarity_to_photo``, reported
  beside) rewards copying. Leakage: similarity to the *source* person's scoring frame
  (synthetic data should not carry the source's identity);
- exact answer (SynthPain): the target rendered with the requested AUs at its reference pose and
  lighting; SSIM and PSNR of the output against it, and the output mesh's NME against its mesh.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib import facemesh
from paincontrol_lib.au_reading.backends import AUReaders
from paincontrol_lib.au_reading.learned import Faces, KnownFaces
from paincontrol_lib.au_reading.pixels import INPUT as READER_SIZE
from paincontrol_lib.facs import PAIN_AUS, pspi
from paincontrol_lib.landmarks.align import aligned_crop
from paincontrol_lib.landmarks.image import UPSCALE, load_image, upscale
from paincontrol_lib.landmarks.table import scoring_rows
from paincontrol_lib.stats import (
    FitError,
    cluster_bootstrap_ci,
    holm,
    paired_requests,
    two_way_cluster_ci,
)

SAME_PERSON = 0.6  # dlib's own threshold on the L2 distance between two faces' descriptors


def ssim_psnr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """SSIM (colour, 7 px window) and PSNR (dB) of two uint8 images of one size."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ssim = structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=7)
    return float(ssim), float(peak_signal_noise_ratio(a, b, data_range=255))


class ExactAnswers:
    """SynthPain's exact answers, drawn where the outputs are: ``(subject, aus, size) -> (crop,
    mesh)``. The truth is rendered at the pose and framing of the target's identity photo and
    cropped with the photo's own alignment (the transform every method's output is made in), so
    a pixel comparison measures expression and identity, not a shifted crop; ``mesh`` is the
    true mesh in that crop's unit coordinates. Each (person, AUs, size) is rendered once."""

    def __init__(self, synthpain_dir, table: pd.DataFrame):
        from paincontrol_lib.data.synthpain.generate import load_config
        from paincontrol_lib.landmarks.table import row_transform

        self.synthpain_dir = Path(synthpain_dir)
        self.config = load_config(synthpain_dir)
        photos = table[table["neutral_reference"] & table["detected"]].drop_duplicates("subject")
        self._photo_transform = {str(r.subject): row_transform(r) for r in photos.itertuples()}
        self._done: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, subject: str, aus: dict[str, float], size: int):
        from paincontrol_lib.data.synthpain.generate import render_exact

        key = (subject, tuple(sorted((a, round(float(v), 6)) for a, v in aus.items())), size)
        if key not in self._done:
            if subject not in self._photo_transform:
                raise ValueError(f"{subject} has no detected identity photo to align its truth to")
            transform = self._photo_transform[subject]
            truth = render_exact(self.config, subject, aus)
            points = np.column_stack([truth.landmarks_2d, truth.landmarks_3d[:, 2]])
            self._done[key] = aligned_crop(truth.image, transform, size), transform.apply(points)
        return self._done[key]

    def appearance_region(self, subject: str, aus: dict[str, float], size: int) -> np.ndarray:
        """(size, size) bool: where the active pain AUs change the skin's appearance in the
        exact answer (their regions, seen at the requested expression, cropped like the
        outputs); empty when no pain AU with an appearance is active."""
        from paincontrol_lib.data.synthpain.appearance import APPEARANCE_AUS
        from paincontrol_lib.data.synthpain.generate import exact_au_region

        key = ("region", subject, tuple(sorted((a, round(float(v), 6)) for a, v in aus.items())),
               size)  # fmt: skip
        if key not in self._done:
            region = np.zeros((size, size), bool)
            for au in sorted(set(APPEARANCE_AUS) & {a for a, v in aus.items() if v > 0}):
                mask = exact_au_region(self.config, subject, au, aus).astype(np.uint8) * 255
                region |= aligned_crop(np.stack([mask] * 3, -1), self._photo_transform[subject],
                                       size)[..., 0] > 127  # fmt: skip
            self._done[key] = region
        return self._done[key]


def requested_aus(manifest: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The pain AUs each output was asked for (source ground truth when known)."""
    truth = table.set_index("image")
    rows = []
    for row in manifest.itertuples(index=False):
        asked = json.loads(row.aus)
        if row.mode != "explicit" and row.source_image in truth.index:
            source = truth.loc[row.source_image]
            if all(a in source and np.isfinite(source[a]) for a in PAIN_AUS):
                asked = {a: float(source[a]) for a in PAIN_AUS}
        rows.append([float(asked.get(a, 0.0)) for a in PAIN_AUS])
    out = pd.DataFrame(rows, columns=list(PAIN_AUS), index=manifest.index)
    out["PSPI"] = pspi(out)
    return out


IDENTITY_JUDGES = {"": "synthface", "_dlib": "dlib"}  # score-column suffix -> identity backend


def identity_judges(encoder_dir=None) -> dict:
    """Score-column suffix -> backend of :data:`IDENTITY_JUDGES`: the in-domain encoder (from
    ``encoder_dir``, default the shipped weights) and dlib."""
    from paincontrol_lib.identity import make_identity

    return {"": make_identity("synthface", model_dir=encoder_dir), "_dlib": make_identity("dlib")}


def identity_embeddings(rows: pd.DataFrame, identity) -> dict[str, np.ndarray]:
    """Person -> embedding (by the backend ``identity``) of their landmark-table row (one row
    per person)."""
    return {
        str(r["subject"]): identity.embed(
            load_image(r["image"]), np.asarray(r["landmarks"]).reshape(-1, 3)
        )
        for _, r in rows.iterrows()
    }


def scoring_people(table: pd.DataFrame, manifest: pd.DataFrame) -> list[str]:
    """Everyone whose scoring frame is drawn: every test person and everyone the manifest names.
    One fixed set for outputs, ceiling and floor, since ``scoring_rows`` draws the people's
    frames in turn from one stream (another set would give a person another frame)."""
    test = set(table.loc[table["split"] == "test", "subject"]) if "split" in table else set()
    named = set(manifest["target"]) | set(manifest["source"])
    return sorted((test | named) & set(table["subject"]))


class IdentityGallery:
    """One backend's reference embeddings for scoring outputs: each scored person's scoring
    frame (``scoring``), identity photo (``photos``), and the gallery that top-1 searches, the
    scoring frames of the test people (and any target that is not one)."""

    def __init__(self, backend, table: pd.DataFrame, people: list[str], seed: int,
                 targets=()):  # fmt: skip
        self.backend = backend
        self.scoring = identity_embeddings(scoring_rows(table, people, seed), backend)
        neutral = table[table["neutral_reference"] & table["detected"]]
        neutral = neutral[neutral["subject"].isin(people)].drop_duplicates("subject")
        self.photos = identity_embeddings(neutral, backend)
        test = set(table.loc[table["split"] == "test", "subject"]) if "split" in table else set()
        self.labels = sorted((test | set(targets)) & set(self.scoring))
        self.gallery = np.stack([self.scoring[s] for s in self.labels]) if self.labels else None

    def scores(self, embedding: np.ndarray, target: str, source: str, dlib: bool) -> dict:
        """An output's identity scores against ``target`` (and ``source``, when a person)."""
        from paincontrol_lib.identity import cosine_similarity, nearest_identity

        out = {}
        target_ref, source_ref = self.scoring.get(target), self.scoring.get(source)
        if target_ref is not None:
            out["identity_similarity"] = float(cosine_similarity(embedding, target_ref))
            if dlib:
                out["identity_match"] = float(np.linalg.norm(embedding - target_ref) < SAME_PERSON)
        if self.gallery is not None and target in self.labels:
            best = nearest_identity(embedding, self.gallery, self.labels)[0]
            out["identity_top1_gallery"] = float(best == target)
        if target in self.photos:
            out["identity_similarity_to_photo"] = float(
                cosine_similarity(embedding, self.photos[target])
            )
        if source_ref is not None:
            out["source_leakage"] = float(cosine_similarity(embedding, source_ref))
            if dlib:
                out["source_match"] = float(np.linalg.norm(embedding - source_ref) < SAME_PERSON)
            if target_ref is not None and source != target:
                out["target_over_source"] = float(
                    out["identity_similarity"] > out["source_leakage"]
                )
        return out

    def floor_pairs(self) -> np.ndarray:
        """Similarities of every pair of different gallery people's scoring frames."""
        from paincontrol_lib.identity import cosine_similarity

        if self.gallery is None or len(self.labels) < 2:
            return np.zeros(0)
        sim = np.atleast_2d(cosine_similarity(self.gallery, self.gallery))
        return sim[np.triu_indices(len(self.labels), 1)]


def identity_photo_crop(table: pd.DataFrame, subject: str, size: int) -> np.ndarray:
    """The person's identity photo as methods see it: its aligned crop at the outputs' size."""
    from paincontrol_lib.landmarks.table import row_transform

    rows = table[(table["subject"] == subject) & table["neutral_reference"] & table["detected"]]
    if rows.empty:
        raise ValueError(f"{subject} has no detected identity photo (neutral reference frame)")
    row = rows.iloc[0]
    return aligned_crop(load_image(row["image"]), row_transform(row), size)


def identity_ceiling(manifest: pd.DataFrame, table: pd.DataFrame, size: int,
                     seed: int, encoder_dir=None) -> pd.DataFrame:  # fmt: skip
    """Per target: its identity photo, cropped as outputs are and scored exactly as an output
    (cosine similarity to the scoring frame) by each judge (``identity_similarity`` and
    ``identity_similarity_dlib``): what a perfect copy of the photo gets."""
    from paincontrol_lib.identity import cosine_similarity
    from paincontrol_lib.landmarks.mesher import FaceMesher

    targets, people = sorted(set(manifest["target"])), scoring_people(table, manifest)
    picked = scoring_rows(table, people, seed)
    judges = identity_judges(encoder_dir)
    scoring = {suffix: identity_embeddings(picked, model) for suffix, model in judges.items()}
    columns = ["target", *(f"identity_similarity{suffix}" for suffix in judges)]
    rows = []
    with FaceMesher() as mesher:
        for target in targets:
            big, found = _output_face(identity_photo_crop(table, target, size), mesher)
            if found.detected and target in scoring[""]:
                rows.append([target] + [
                    float(cosine_similarity(model.embed(big, found.landmarks),
                                            scoring[suffix][target]))
                    for suffix, model in judges.items()
                ])  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _output_face(image: np.ndarray, mesher):
    """How every output is read: upscaled and meshed; ``(upscaled image, found face)``."""
    big = upscale(image)
    return big, mesher(big)


def score_outputs(
    manifest: pd.DataFrame, out_dir, table: pd.DataFrame, exact=None, seed: int = 0,
    aus: AUReaders | None = None, workers: int = 1, encoder_dir=None,
) -> pd.DataFrame:  # fmt: skip
    """One row of scores per generated image in ``manifest`` (images under ``out_dir``).

    ``table`` is the landmark table (neutral references, meshes, ground-truth AUs); ``exact``
    an :class:`ExactAnswers` (SynthPain) or None; ``seed`` picks the scoring frames; ``aus``
    reads AUs (default: the ``mesh`` backend). Where exact answers exist, AUs are also read on
    each exact answer: ``error_vs_exact_<AU>`` compares a method with the truth through the
    same estimator, ``estimator_error_<AU>`` is the estimator's own error on the truth,
    ``exact_read_<reader>_<AU>`` every reader's reading of it, and ``null_estimated_<AU>`` the
    reading of a degraded copy of it (the reader's noise on a perfect answer). The images are
    measured in ``workers`` spawned processes (the same scores whatever it is).
    """
    aus = aus or AUReaders()
    asked = requested_aus(manifest, table)
    synthpain_dir = exact.synthpain_dir if exact is not None else None
    request, first = same_requests(manifest, asked)
    # Every output of one request in one process: its exact answer is rendered, meshed and
    # embedded once, whichever methods asked for it.
    split = [r for r in np.array_split(np.arange(len(first)), max(1, workers)) if len(r)]
    shares = [np.flatnonzero(np.isin(request, requests)) for requests in split]
    people = scoring_people(table, manifest)  # from the whole manifest, not a worker's share
    jobs = [(manifest.iloc[rows], asked.iloc[rows], Path(out_dir), table, synthpain_dir, seed,
             people, encoder_dir) for rows in shares]  # fmt: skip
    if len(jobs) > 1:
        from paincontrol_lib.parallel import process_pool

        with process_pool(len(jobs)) as pool:
            parts = list(pool.map(_measure_outputs, jobs))
    else:
        parts = [_measure_outputs(jobs[0], exact)] if jobs else []
    back = np.argsort(np.concatenate(shares)) if shares else np.zeros(0, int)  # manifest order
    records = [r for part in parts for r in part[0]]
    records = [records[i] for i in back]
    faces = {
        name: Faces(*(np.concatenate([part[1][name][k] for part in parts])[back]
                      for k in range(4)))
        for name in ("output", "exact", "null")
    } if parts else {}  # fmt: skip
    scores = pd.DataFrame(records, index=manifest.index)
    estimated = aus(faces["output"]).set_index(manifest.index)
    for au in (*PAIN_AUS, "PSPI"):
        scores[f"requested_{au}"] = asked[au]
        scores[f"estimated_{au}"] = estimated[au]
        scores[f"error_{au}"] = (estimated[au] - asked[au]).abs()
    requested = np.stack([np.asarray(a, float).reshape(-1, 3) for a in manifest["target_aligned"]])
    meshes = {"": faces["output"].meshes, "requested_": requested}
    if exact is not None:
        meshes["exact_"] = faces["exact"].meshes
    for prefix, found in meshes.items():  # the expression each one shows, for motion following
        for name, values in facemesh.expression_features(found[..., :2]).items():
            scores[f"{prefix}feature_{name}"] = values
    if "guide" in aus.readers:  # AU guidance's own reader on the outputs: reported, never scores
        guide = aus.readers["guide"](faces["output"]).reset_index(drop=True)
        for au in PAIN_AUS:
            scores[f"guide_estimated_{au}"] = guide[au].to_numpy()
    if exact is not None:  # read once per request, shared by every output of it
        every = {name: read.iloc[request].reset_index(drop=True)
                 for name, read in aus.read_all(faces["exact"].subset(first)).items()}  # fmt: skip
        on_truth = aus.combine(every).set_index(manifest.index)
        null = aus(faces["null"].subset(first)).iloc[request].set_index(manifest.index)
        for au in (*PAIN_AUS, "PSPI"):
            scores[f"exact_estimated_{au}"] = on_truth[au]
            scores[f"error_vs_exact_{au}"] = (estimated[au] - on_truth[au]).abs()
            scores[f"estimator_error_{au}"] = (on_truth[au] - asked[au]).abs()
            scores[f"null_estimated_{au}"] = null[au]
            for reader, read in every.items():
                scores[f"exact_read_{reader}_{au}"] = read[au].to_numpy()
            if f"guide_estimated_{au}" in scores:
                scores[f"guide_error_vs_exact_{au}"] = (
                    scores[f"guide_estimated_{au}"] - scores[f"exact_read_guide_{au}"]
                ).abs()
    keep = ["method", "mode", "source", "target", "frame", "path"]
    return pd.concat([manifest[keep], scores], axis=1)


def same_requests(manifest: pd.DataFrame, asked: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(request, first)``: per output the number of its request (the target and the pain AUs
    asked for: one exact answer), and per request the position of its first output."""
    values = asked[list(PAIN_AUS)].to_numpy(float)
    keys = [f"{target}|" + ",".join(f"{v:.6f}" for v in aus)
            for target, aus in zip(manifest["target"], values, strict=True)]  # fmt: skip
    _, first, request = np.unique(np.array(keys, dtype=str), return_index=True,
                                  return_inverse=True)  # fmt: skip
    return request.ravel(), first


MOTION_FEATURES = ("eye_opening", "mouth_opening", "brow_height")  # facemesh.expression_features


def motion_following(scores: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """Per transferred sequence (method, source, target; delta outputs in frame order), how
    well its expression follows the source's motion: the cosine between the frame-to-frame
    changes of the outputs' expression features (``<prefix>feature_*``; ``exact_`` reads the
    exact answers) and of the expression asked for (``requested_feature_*``), each feature in
    units of its requested changes' spread over all sequences. 1: the outputs move as the source
    does; 0: they stand still, or flicker without following; -1: they move against it. A
    sequence with a frame without a face, or whose requested expression does not change, is
    left out. Columns: method, source, target, motion_following."""
    delta = scores[(scores["mode"] == "delta") & scores["frame"].notna()]
    asked_cols = [f"requested_feature_{f}" for f in MOTION_FEATURES]
    shown_cols = [f"{prefix}feature_{f}" for f in MOTION_FEATURES]
    groups = [
        (key, g.sort_values("frame")) for key, g in delta.groupby(["method", "source", "target"])
    ]
    changes = [np.diff(g[asked_cols].to_numpy(float), axis=0) for _, g in groups]
    spread = np.nanstd(np.concatenate(changes), axis=0) if changes else np.ones(3)
    spread[~(spread > 0)] = 1.0
    rows = []
    for ((method, source, target), g), asked in zip(groups, changes, strict=True):
        shown = np.diff(g[shown_cols].to_numpy(float), axis=0) / spread
        asked = asked / spread
        if not np.isfinite(shown).all() or not np.linalg.norm(asked) > 0:
            continue
        norm = np.linalg.norm(shown) * np.linalg.norm(asked)  # 0: the outputs stand still
        value = float((shown * asked).sum() / norm) if norm > 0 else 0.0
        rows.append({"method": method, "source": source, "target": target,
                     "motion_following": value})  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "source", "target", "motion_following"])


def motion_summary(scores: pd.DataFrame, n_boot: int, seed: int) -> dict:
    """``eval.json: motion_following``: per method the mean of :func:`motion_following` with a
    95 % bootstrap interval over targets and the sequences it rests on (none: every sequence
    had a frame without a face), and the exact answers' where there are any (the ceiling as the
    instrument reads it; an output that stands still scores 0)."""
    frames = [motion_following(scores)]
    if f"exact_feature_{MOTION_FEATURES[0]}" in scores:
        exact = motion_following(scores, "exact_")
        first = exact["method"].iloc[0] if len(exact) else None  # one method's requests: all
        frames.append(exact[exact["method"] == first].assign(method="exact_answer"))
    out = {}
    for frame in frames:
        for method, g in frame.groupby("method"):
            mean, low, high = cluster_bootstrap_ci(g["motion_following"], g["target"], n_boot, seed)
            out[method] = {"mean": mean, "ci_low": low, "ci_high": high, "n_sequences": len(g)}
    sequenced = scores.loc[(scores["mode"] == "delta") & scores["frame"].notna(), "method"]
    for method in sorted(set(sequenced) - set(out)):
        out[method] = {"mean": None, "ci_low": None, "ci_high": None, "n_sequences": 0}
    return out


def _measure_outputs(job, exact=None):
    """One process's share of :func:`score_outputs`: per image its scores and what the AU
    readers read afterwards (:class:`~paincontrol_lib.au_reading.learned.Faces` of the output, of
    its exact answer and of a degraded copy of that answer, each beside the target's identity
    photo: MediaPipe meshes in unit crop coordinates and crops at the pixel reader's size).
    Identity is read by every judge in :data:`IDENTITY_JUDGES`; exact answers are read too
    (``exact_identity_similarity``: the ceiling; ``swapped_identity_similarity``: the target's
    exact answer against the source's frame, a person swapped for another, which should score
    the floor)."""
    from paincontrol_lib.landmarks.mesher import FaceMesher

    manifest, asked, out_dir, table, synthpain_dir, seed, people, encoder_dir = job
    if exact is None and synthpain_dir is not None:
        exact = ExactAnswers(synthpain_dir, table)
    targets = set(manifest["target"])
    galleries = {suffix: IdentityGallery(backend, table, people, seed, targets)
                 for suffix, backend in identity_judges(encoder_dir).items()}  # fmt: skip
    exact_identity: dict[tuple, dict] = {}  # per request: the exact answer's identity scores
    n = len(manifest)
    unit_meshes, exact_meshes = np.full((n, 478, 3), np.nan), np.full((n, 478, 3), np.nan)
    references, null_meshes = np.full((n, 478, 3), np.nan), np.full((n, 478, 3), np.nan)
    crops = {k: np.zeros((n, READER_SIZE, READER_SIZE, 3), np.uint8)
             for k in ("output", "exact", "null", "photo")}  # fmt: skip
    neutral_meshes: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    null_reads: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # per request
    truths: dict[tuple, tuple] = {}  # per request: the exact answer upscaled and meshed
    records = []
    with FaceMesher() as mesher:
        for i, row in enumerate(manifest.itertuples(index=False)):
            image = load_image(out_dir / row.path)
            size = image.shape[0]
            big, found = _output_face(image, mesher)
            rec = {"detected": bool(found.detected)}
            requested = np.asarray(row.target_aligned, float).reshape(-1, 3)
            if (row.target, size) not in neutral_meshes:
                photo = identity_photo_crop(table, row.target, size)
                face = mesher(upscale(photo))
                neutral_meshes[row.target, size] = (
                    face.landmarks / UPSCALE if face.detected else np.full((478, 3), np.nan),
                    _reader_sized(photo),
                )
            references[i], crops["photo"][i] = neutral_meshes[row.target, size]
            crops["output"][i] = _reader_sized(image)
            if found.detected:
                mesh = found.landmarks * (size / UPSCALE)
                unit_meshes[i] = found.landmarks / UPSCALE
                rec["nme"] = float(
                    facemesh.nme(mesh[None, :, :2], requested[None, :, :2] * size)[0]
                )
                for suffix, gallery in galleries.items():
                    embedding = gallery.backend.embed(big, found.landmarks)
                    scores = gallery.scores(embedding, row.target, row.source, suffix == "_dlib")
                    rec |= {f"{key}{suffix}": value for key, value in scores.items()}
            if exact is not None:
                wanted = dict(zip(PAIN_AUS, asked.iloc[i][list(PAIN_AUS)], strict=True))
                crop, aligned = exact(row.target, wanted, size)
                rec["ssim_to_exact"], rec["psnr_to_exact"] = ssim_psnr(image, crop)
                region = exact.appearance_region(row.target, wanted, size)
                if region.any():  # what a warp cannot reach: furrows, wrinkles, bulges
                    difference = np.abs(image.astype(float) - crop.astype(float))
                    rec["appearance_error"] = float(difference[region].mean())
                if found.detected:
                    rec["nme_to_exact"] = float(
                        facemesh.nme(mesh[None, :, :2], aligned[None, :, :2] * size)[0]
                    )
                request = (row.target, tuple(wanted.values()), size)
                if request not in null_reads:
                    null_reads[request] = _degraded_answer(crop, request, seed, mesher)
                crops["null"][i], null_meshes[i] = null_reads[request]
                crops["exact"][i] = _reader_sized(crop)
                if request not in truths:  # the same answer for every method that asked
                    truths[request] = _output_face(crop, mesher)
                truth_big, truth_face = truths[request]
                if truth_face.detected:
                    exact_meshes[i] = truth_face.landmarks / UPSCALE
                    request = (row.target, row.source, tuple(wanted.values()), size)
                    if request not in exact_identity:
                        exact_identity[request] = _exact_identity(
                            galleries, truth_big, truth_face.landmarks, row.target, row.source
                        )
                    rec |= exact_identity[request]
            records.append(rec)
    faces = {
        "output": (unit_meshes, references, crops["output"], crops["photo"]),
        "exact": (exact_meshes, references, crops["exact"], crops["photo"]),
        "null": (null_meshes, references, crops["null"], crops["photo"]),
    }
    return records, faces


def _reader_sized(image: np.ndarray) -> np.ndarray:
    """An image at the pixel reader's size (it reads any size so; kept small across processes)."""
    return image if image.shape[0] == READER_SIZE else upscale(image, READER_SIZE)


def _degraded_answer(crop: np.ndarray, request: tuple, seed: int, mesher):
    """A copy of an exact answer degraded as generated outputs are (``au_reading.learned.degrade``,
    seeded by the request, so any worker split draws the same) and its MediaPipe mesh: a
    perfect answer seen through the generator's look, the AU readers' noise."""
    import zlib

    from paincontrol_lib.au_reading.learned import degrade
    from paincontrol_lib.seeds import stream

    rng = stream("au_answer_degradation", seed, zlib.crc32(repr(request).encode()))
    small = degrade(crop, rng, READER_SIZE)
    found = mesher(upscale(small))
    return small, found.landmarks / UPSCALE if found.detected else np.full((478, 3), np.nan)


def _exact_identity(galleries: dict, image, landmarks, target: str, source: str) -> dict:
    """The exact answer's identity scores by every judge: its similarity to the target's
    scoring frame and top-1 (the ceiling), and to the source's (a swapped person)."""
    out = {}
    for suffix, gallery in galleries.items():
        embedding = gallery.backend.embed(image, landmarks)
        scores = gallery.scores(embedding, target, source, dlib=False)
        named = {
            "identity_similarity": "exact_identity_similarity",
            "identity_top1_gallery": "exact_identity_top1_gallery",
            "source_leakage": "swapped_identity_similarity",
        }
        out |= {f"{new}{suffix}": scores[old] for old, new in named.items() if old in scores}
    return out


def identity_bounds(scores: pd.DataFrame, photo_ceiling: pd.DataFrame, table: pd.DataFrame,
                    manifest: pd.DataFrame, seed: int, n_boot: int = 1000,
                    encoder_dir=None) -> dict:  # fmt: skip
    """Per judge (suffix ``""``: the encoder, ``"_dlib"``): the impostor floor, the mean
    similarity of every pair of different test people's scoring frames; and the genuine ceiling,
    the exact answers' similarity to the target's scoring frame (each distinct request once, CI
    over target people), or, without exact answers, the identity photo's (``photo_ceiling``:
    :func:`identity_ceiling`)."""
    people = scoring_people(table, manifest)
    out = {}
    for suffix, backend in identity_judges(encoder_dir).items():
        gallery = IdentityGallery(backend, table, people, seed)
        pairs = gallery.floor_pairs()
        floor = {
            "mean": float(pairs.mean()) if len(pairs) else None,
            "sd": float(pairs.std()) if len(pairs) else None,
            "n_pairs": int(len(pairs)),
            "n_people": len(gallery.labels),
            "frames": "scoring frames of different test people",
        }
        column = f"exact_identity_similarity{suffix}"
        if column in scores and scores[column].notna().any():
            requests = scores.drop_duplicates(["target", *(f"requested_{a}" for a in PAIN_AUS)])
            values, groups, answer = requests[column], requests["target"], "exact_answers"
        else:
            values = photo_ceiling[f"identity_similarity{suffix}"]
            groups, answer = photo_ceiling["target"], "identity_photo"
        mean, low, high = cluster_bootstrap_ci(values, groups, n_boot, seed)
        n = int(np.isfinite(np.asarray(values, float)).sum())
        ceiling = {"mean": mean, "ci_low": low, "ci_high": high, "n": n, "answer": answer}
        out[f"identity_floor{suffix}"], out[f"identity_ceiling{suffix}"] = floor, ceiling
    return out


def identity_known_answers(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """The identity instrument on the known answers of this design, each distinct request once
    (whichever methods asked), mean and 95 % CI over target people: the exact answer (should be
    identified as the target, normalised 1 by construction where it sets the ceiling) and the
    exact answer scored against the source's frame, a person swapped for another (should score
    the floor: normalised near 0); {} without exact answers."""
    if "exact_identity_similarity" not in scores:
        return {}
    requests = scores.drop_duplicates(["target", "source", *(f"requested_{a}" for a in PAIN_AUS)])
    out = {"n_requests": int(len(requests))}
    for suffix in IDENTITY_JUDGES:
        for name in ("exact_identity_top1_gallery", "exact_identity_normalised",
                     "swapped_identity_normalised"):  # fmt: skip
            column = f"{name}{suffix}"
            if column in requests:
                mean, low, high = cluster_bootstrap_ci(
                    requests[column], requests["target"], n_boot, seed
                )
                out[column] = {"mean": mean, "ci_low": low, "ci_high": high}
    return out


IDENTITY_GOALS = {"verification_auc": 0.99, "top1": 0.95}  # what the encoder must reach
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def identity_instrument(table: pd.DataFrame, seed: int, n_boot: int = 1000,
                        encoder_dir=None, workers: int = 1) -> dict:  # fmt: skip
    """``identity_encoder.json``: the identity instrument validated on the test people, whom
    neither the encoder nor any method was fit to, on their exact frames (MediaPipe meshes),
    every judge alike (the encoder's numbers at the top level, dlib's under ``dlib``).

    - verification over every pair of the test people's frames (``verification_auc``, the
      ``genuine_mean`` and ``impostor_mean`` similarity and their quantiles);
    - closed-set identification: every test frame that is not the identity photo (all
      expressions, pain included) against the identity photos of all val and test people:
      ``top1`` with a 95 % CI from a bootstrap over people, and ``top1_scoring_frames`` for the
      one frame per person that stage 04 scores identity against.

    The frames are embedded in ``workers`` processes (the same numbers whatever it is)."""
    import json

    from paincontrol_lib.identity import nearest_identity, verification

    rows = table[table["detected"]]
    test = rows[rows["split"] == "test"].reset_index(drop=True)
    photos = rows[rows["neutral_reference"] & rows["split"].isin(["val", "test"])]
    photos = photos.drop_duplicates("subject").reset_index(drop=True)
    scoring = set(scoring_rows(table, sorted(test["subject"].unique()), seed)["key"])
    query = ~test["neutral_reference"].to_numpy(bool)
    people = test["subject"].to_numpy()
    out: dict = {}
    embedded = judge_embeddings(pd.concat([test, photos], ignore_index=True), encoder_dir, workers)
    for suffix, backend in identity_judges(encoder_dir).items():
        name = IDENTITY_JUDGES[suffix]
        frames, gallery = embedded[suffix][: len(test)], embedded[suffix][len(test) :]
        pairs = verification(frames, people)
        correct = nearest_identity(frames[query], gallery, photos["subject"]) == people[query]
        top1, low, high = cluster_bootstrap_ci(correct.astype(float), people[query], n_boot, seed)
        at_scoring = test.loc[query, "key"].isin(scoring).to_numpy()
        genuine, impostor = pairs.pop("genuine"), pairs.pop("impostor")
        edges = np.linspace(min(genuine.min(), impostor.min()), 1.0, 31)
        entry = pairs | {
            "top1": top1,
            "top1_ci_low": low,
            "top1_ci_high": high,
            "top1_scoring_frames": float(correct[at_scoring].mean()),
            "genuine_quantiles": _quantiles(genuine),
            "impostor_quantiles": _quantiles(impostor),
            "histogram": {
                "edges": edges.tolist(),
                "genuine": np.histogram(genuine, edges)[0].tolist(),
                "impostor": np.histogram(impostor, edges)[0].tolist(),
            },
        }
        entry["goals_met"] = all(entry[k] >= v for k, v in IDENTITY_GOALS.items())
        if suffix:
            out[name] = entry
            continue
        record = json.loads((backend.model_dir / "PROVENANCE.json").read_text())
        out |= {"backend": name, "judge": IDENTITY_JUDGES["_dlib"]}
        out |= {k: record[k] for k in ("n_identities", "seed", "steps")} | entry
        out["provenance"] = {k: record.get(k) for k in PROVENANCE_KEYS}
    return out | {
        "split": "test",
        "n_people": int(test["subject"].nunique()),
        "n_frames": int(len(test)),
        "n_queries": int(query.sum()),
        "gallery": f"identity photos of the {len(photos)} val and test people",
        "goals": dict(IDENTITY_GOALS),
    }


PROVENANCE_KEYS = ("command", "code_revision", "code_dirty", "data_hash", "n_rendered",
                   "frames_per_identity", "disjoint_from_seeds", "minutes")  # fmt: skip


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {
        str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
    }


def judge_embeddings(rows: pd.DataFrame, encoder_dir=None, workers: int = 1) -> dict:
    """Score-column suffix -> every judge's (n, d) embeddings of landmark-table rows, the rows
    split over ``workers`` spawned processes (dlib's descriptor alone takes ~0.1 s a face)."""
    shares = [r for r in np.array_split(np.arange(len(rows)), max(1, workers)) if len(r)]
    jobs = [(rows.iloc[r], encoder_dir) for r in shares] or [(rows, encoder_dir)]
    if len(jobs) > 1:
        from paincontrol_lib.parallel import process_pool

        with process_pool(len(jobs)) as pool:
            parts = list(pool.map(_judge_share, jobs))
    else:
        parts = [_judge_share(jobs[0])]
    return {suffix: np.concatenate([part[suffix] for part in parts]) for suffix in parts[0]}


def _judge_share(job) -> dict:
    rows, encoder_dir = job
    return {suffix: _embed_rows(rows, backend)
            for suffix, backend in identity_judges(encoder_dir).items()}  # fmt: skip


def _embed_rows(rows: pd.DataFrame, backend) -> np.ndarray:
    """(n, d) embeddings of landmark-table rows (their image files and MediaPipe meshes)."""
    images = [load_image(path) for path in rows["image"]]
    meshes = [np.asarray(m, dtype=np.float64).reshape(-1, 3) for m in rows["landmarks"]]
    return backend.embed_many(images, meshes)


def normalise_identity(scores: pd.DataFrame, bounds: dict) -> pd.DataFrame:
    """``scores`` with ``identity_normalised`` (and the dlib judge's): (similarity - floor) /
    (ceiling - floor), 0 at a stranger, 1 at the exact answer; the known-answer columns too
    (``exact_identity_normalised``, ``swapped_identity_normalised``)."""
    out = scores.copy()
    for suffix in IDENTITY_JUDGES:
        floor = bounds[f"identity_floor{suffix}"]["mean"]
        ceiling = bounds[f"identity_ceiling{suffix}"]["mean"]
        if floor is None or not np.isfinite(ceiling) or ceiling <= floor:
            continue
        for column in ("identity", "exact_identity", "swapped_identity"):
            name = f"{column}_similarity{suffix}"
            if name in out:
                out[f"{column}_normalised{suffix}"] = (out[name] - floor) / (ceiling - floor)
    return out


METRICS = (
    "identity_similarity",
    "identity_top1_gallery",
    "target_over_source",
    "identity_normalised",
    "identity_similarity_to_photo",
    "source_leakage",
    "identity_similarity_dlib",
    "identity_match_dlib",
    "identity_normalised_dlib",
    "source_leakage_dlib",
    "source_match_dlib",
    "target_over_source_dlib",
    "nme",
    "error_PSPI",
    "ssim_to_exact",
    "psnr_to_exact",
    "nme_to_exact",
    "appearance_error",
    *(f"error_{a}" for a in PAIN_AUS),
    *(f"error_vs_exact_{a}" for a in (*PAIN_AUS, "PSPI")),
    *(f"estimator_error_{a}" for a in (*PAIN_AUS, "PSPI")),
)


DESIGNED_SOURCES = ("explicit",)  # the source of PSPI levels asked for directly: no person
INFERENCE = (
    "paired differences per request (both methods answered it); mean with a two-way (source x "
    "target person) cluster-robust t-interval, t on min(sources, targets) - 1 df; chosen and "
    "validated by simulating the design (reports/metrics/inference_check.json)"
)


def _request(scores: pd.DataFrame) -> pd.Series:
    """Which request each output answers: its path without the method's folder (stage 03
    writes every method's answer to one request under the same name)."""
    return scores["path"].str.split("/", n=1).str[1]


# Per-output 0/1 scores: their means are proportions, whose intervals stop at 0 and 1
PROPORTIONS = ("detection_rate", "identity_top1_gallery", "target_over_source",
               "identity_match_dlib", "source_match_dlib", "target_over_source_dlib")  # fmt: skip


def summarise(scores: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per method and metric: mean and 95 % t-interval with a two-way (source x target person)
    cluster-robust variance (:func:`~paincontrol_lib.stats.two_way_cluster_ci`): outputs of one
    person, and of one source-target pair, are not independent; n outputs. The interval of a
    proportion (:data:`PROPORTIONS`) is clipped to [0, 1]. The interval is NaN where the design
    has fewer than 2 sources or targets (the tiny profile)."""
    rows = []
    for method, group in scores.groupby("method", sort=False):
        columns = {"detection_rate": group["detected"].astype(float)}
        columns |= {metric: group[metric] for metric in METRICS if metric in group}
        for metric, values in columns.items():
            try:
                interval = two_way_cluster_ci(values.to_numpy(float), group["source"],
                                              group["target"], DESIGNED_SOURCES, level)  # fmt: skip
                low, high = interval["ci_low"], interval["ci_high"]
            except FitError:
                low = high = np.nan
            if metric in PROPORTIONS:
                low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
            n = int(np.isfinite(values.to_numpy(float)).sum())
            mean = float(np.nanmean(values.to_numpy(float))) if n else np.nan
            rows.append({"method": method, "metric": metric, "mean": mean, "lo": low, "hi": high,
                         "n": n})  # fmt: skip
    return pd.DataFrame(rows)


def reader_agreement(scores: pd.DataFrame, method: str) -> dict | None:
    """Per pain AU on ``method``'s outputs: the scoring reader's and the guide reader's error
    against the exact answer (each against its own reading of it) and their mean disagreement.
    A guided method whose guide error falls far below the scoring error has fooled its guide."""
    rows = scores[scores["method"] == method]
    if f"guide_error_vs_exact_{PAIN_AUS[0]}" not in rows:
        return None

    def mean(values) -> float | None:
        value = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
        return value if np.isfinite(value) else None

    return {
        au: {
            "scoring_error_vs_exact": mean(rows[f"error_vs_exact_{au}"].to_numpy(float)),
            "guide_error_vs_exact": mean(rows[f"guide_error_vs_exact_{au}"].to_numpy(float)),
            "disagreement": mean(
                (rows[f"guide_estimated_{au}"] - rows[f"estimated_{au}"]).abs().to_numpy(float)
            ),
        }
        for au in PAIN_AUS
    }


GUIDED, UNGUIDED = "paincontrol_au_guided", "paincontrol"
HARD_AUS = ("AU04", "AU43")  # the paper's hard AUs, AU guidance's targets
GUIDANCE_GOAL = -0.30  # issue 32: each hard AU's error against the exact answer cut by >= 30 %


def au_guidance_verdict(metrics: dict) -> dict | None:
    """``eval.json: au_guidance``: AU guidance against unguided PainControl (the same sampler
    otherwise), from the declared family ``au_guidance`` and the per-method numbers. Per hard AU:
    both means (scoring reader, against its reading of the exact answer), the paired difference
    [95 % CI] and Holm p, the relative change and whether it meets the goal (<= -30 % with the
    interval below 0); identity (top-1 gallery, target-over-source) and realism (two-sample AUC)
    not worse beyond the unguided interval; the PSPI slopes (1: full strength); both readers'
    errors on the guided outputs. None when either method was not run."""
    methods = metrics["methods"]
    if GUIDED not in methods or UNGUIDED not in methods:
        return None
    name, out = f"{GUIDED}_vs_{UNGUIDED}", {"aus": {}}
    for au in HARD_AUS:
        test = metrics["tests"].get(f"{au.lower()}_error_vs_exact", {}).get(name)
        readers = [methods[m].get("au_readers") or {} for m in (UNGUIDED, GUIDED)]
        before, after = (r.get(au, {}).get("scoring_error_vs_exact") for r in readers)
        if test is None or not before:
            out["aus"][au] = {"reason": "not tested (no exact answers or too few people)"}
            continue
        relative = [test[k] / before for k in ("estimate", "ci_low", "ci_high")]
        out["aus"][au] = {
            "unguided": before, "guided": after, "difference": test,
            "relative_change": relative[0], "relative_change_ci": relative[1:],
            "meets_goal": bool(relative[0] <= GUIDANCE_GOAL and test["ci_high"] < 0),
            "guide_reader_guided": readers[1].get(au, {}).get("guide_error_vs_exact"),
        }  # fmt: skip
    for key in ("identity_top1_gallery", "target_over_source", "pspi_slope"):
        out[key] = {
            m: [methods[m].get(key), methods[m].get(f"{key}_ci_low"),
                methods[m].get(f"{key}_ci_high")]
            for m in (UNGUIDED, GUIDED)
        }  # fmt: skip
        if key != "pspi_slope" and None not in (out[key][GUIDED][0], out[key][UNGUIDED][1]):
            out[key]["not_lower"] = bool(out[key][GUIDED][0] >= out[key][UNGUIDED][1])
    slopes = out["pspi_slope"]
    if None not in (slopes[GUIDED][0], slopes[UNGUIDED][0]):
        slopes["closer_to_1"] = bool(abs(slopes[GUIDED][0] - 1) < abs(slopes[UNGUIDED][0] - 1))
    realism = metrics.get("realism", {})
    if all(realism.get(m, {}).get("c2st_auc_face_features_ci") for m in (UNGUIDED, GUIDED)):
        auc = {m: [realism[m]["c2st_auc_face_features"], *realism[m]["c2st_auc_face_features_ci"]]
               for m in (UNGUIDED, GUIDED)}  # fmt: skip
        out["realism_c2st_auc"] = auc | {"not_worse": bool(auc[GUIDED][0] <= auc[UNGUIDED][2])}
    met = [entry.get("meets_goal") for entry in out["aus"].values()]
    out["goal_met"] = bool(all(met) and out.get("identity_top1_gallery", {}).get("not_lower")
                           and out.get("target_over_source", {}).get("not_lower")
                           and out.get("realism_c2st_auc", {}).get("not_worse"))  # fmt: skip
    return out


def compare_methods(scores: pd.DataFrame, endpoints: Mapping[str, str],
                    families: Mapping[str, Mapping], level: float = 0.95):  # fmt: skip
    """The comparisons declared before the run (``params.yaml: evaluate.inference``): each
    family's methods against its baseline on every endpoint (``eval.json`` name -> score
    column; a family may declare its own ``endpoints``), method minus baseline per request both
    answered, the mean difference with its two-way cluster t-interval and p (:data:`INFERENCE`),
    Holm over the family (every method x endpoint it declares). An endpoint with no values (no
    exact answers on real data) is not part of any family.

    ``(tests, failures)``: ``tests[endpoint][f"{method}_vs_{baseline}"]``; a comparison that
    cannot be tested (a method not run, fewer than 2 sources or targets) is left out of its
    family and named in ``failures`` (family, comparison, endpoint, reason), never a NaN."""
    declared = [f"{m}_vs_{spec['baseline']}" for spec in families.values() for m in spec["methods"]]
    twice = sorted({name for name in declared if declared.count(name) > 1})
    if twice:
        raise ValueError(f"evaluate.inference.families: {twice} declared more than once")
    present, request = set(scores["method"]), _request(scores)
    tests: dict = {}
    failures = []
    for family, spec in families.items():
        baseline, rows = spec["baseline"], []
        for endpoint, column in spec.get("endpoints", endpoints).items():
            if column not in scores or scores[column].notna().sum() == 0:
                continue
            for method in spec["methods"]:
                name = f"{method}_vs_{baseline}"
                where = {"family": family, "comparison": name, "endpoint": endpoint}
                missing = sorted({method, baseline} - present)
                if missing:
                    failures.append(where | {"reason": f"{missing} not in the transfer outputs"})
                    continue
                data = pd.DataFrame({"source": scores["source"], "target": scores["target"],
                                     "request": request, "method": scores["method"],
                                     "y": scores[column]})  # fmt: skip
                pairs = paired_requests(data, method, baseline)
                try:
                    result = two_way_cluster_ci(
                        pairs["difference"], pairs["source"], pairs["target"], DESIGNED_SOURCES,
                        level,
                    )  # fmt: skip
                except FitError as error:
                    failures.append(where | {"reason": str(error)})
                    continue
                rows.append({"endpoint": endpoint, "name": name, **result})
        for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
            entry = {k: v for k, v in row.items() if k not in ("endpoint", "name")}
            tests.setdefault(row["endpoint"], {})[row["name"]] = entry | {
                "p_holm": float(adjusted), "family": family, "family_size": len(rows),
            }  # fmt: skip
    return tests, failures


def _aligned_crops(rows: pd.DataFrame, size: int) -> np.ndarray:
    from paincontrol_lib.landmarks.table import row_transform

    return np.stack(
        [aligned_crop(load_image(r["image"]), row_transform(r), size) for _, r in rows.iterrows()]
    )


def realism_by_method(
    manifest: pd.DataFrame, out_dir, table: pd.DataFrame, seed: int, feature_steps: int = 300,
    exact=None, scores: pd.DataFrame | None = None,
) -> dict:  # fmt: skip
    """Per method, in the features of a network trained on the training people
    (:class:`~paincontrol_lib.realism.FaceFeatures`), its outputs against the exact answers of
    the requests they answer (output ``i`` paired with its own truth): FD, paired KID [CI],
    precision and recall with radii to other people (:func:`~paincontrol_lib.realism.
    realism_scores`), and the paired two-sample test (``c2st_auc_face_features`` with its 95 %
    interval over people, ``_ci``; in the AU
    readings from ``scores``: ``c2st_auc_au_estimator``). ``exact_answer``: the exact answers
    fed as a method, the known answer every metric must score at its floor (FD 0, KID 0,
    precision and recall 1, AUC 0.5). Without exact answers (real data) nothing has a known
    answer here, so nothing is scored (``reason``)."""
    from paincontrol_lib.data.records import AU_COLUMNS
    from paincontrol_lib.realism import (
        CROP,
        FaceFeatures,
        paired_two_sample_auc,
        paired_two_sample_auc_ci,
        realism_scores,
    )

    if exact is None:
        return {"reason": "no exact answers (real data): no realism metric has a known answer "
                "here; the Likert study (stage 06) judges realism"}  # fmt: skip
    rows = table[table["detected"]]
    train = rows[rows["split"] == "train"]
    aus = train[[c for c in AU_COLUMNS if c in train]].to_numpy(float)
    features = FaceFeatures(steps=feature_steps).fit(
        _aligned_crops(train, CROP), train["subject"].to_numpy(), aus, seed
    )
    out_dir = Path(out_dir)
    asked = requested_aus(manifest, table)
    truth_crops = []
    for i, row in manifest.iterrows():
        size = load_image(out_dir / row["path"]).shape[0]
        crop, _ = exact(row["target"], asked.loc[i, list(PAIN_AUS)].to_dict(), size)
        truth_crops.append(upscale(crop, CROP))
    truth = pd.DataFrame(features(np.stack(truth_crops)), index=manifest.index)
    requests = manifest.assign(request=_request(manifest)).drop_duplicates(["target", "request"])
    out = {
        "features": features.description,
        "reference": {
            "what": "the exact answers of the requests each method answered, output i paired "
            "with its own truth",
            "n_requests": int(len(requests)),
            "n_people": int(requests["target"].nunique()),
        },
    }
    known = truth.loc[requests.index].to_numpy()
    people = requests["target"].to_numpy()
    out["exact_answer"] = realism_scores(known, known, seed, groups=people) | {
        "c2st_auc_face_features": paired_two_sample_auc(known, known, people)
    }
    for method, group in manifest.groupby("method", sort=False):
        crops = np.stack([upscale(load_image(out_dir / p), CROP) for p in group["path"]])
        generated, targets = features(crops), group["target"].to_numpy()
        paired = truth.loc[group.index].to_numpy()
        out[method] = realism_scores(generated, paired, seed, groups=targets)
        c2st = paired_two_sample_auc_ci(generated, paired, targets, seed=seed)
        out[method]["c2st_auc_face_features"] = c2st and c2st["auc"]
        out[method]["c2st_auc_face_features_ci"] = c2st and [c2st["ci_low"], c2st["ci_high"]]
        if scores is not None and "exact_estimated_AU04" in scores:
            mine = scores.loc[group.index]
            out[method]["c2st_auc_au_estimator"] = paired_two_sample_auc(
                mine[[f"estimated_{a}" for a in PAIN_AUS]].to_numpy(float),
                mine[[f"exact_estimated_{a}" for a in PAIN_AUS]].to_numpy(float),
                targets,
            )
    return out


def estimator_floor(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """The AU readers' own error on the exact answers of this design (each distinct request
    once, whichever methods asked): what they can resolve about any method. Per AU: mean
    |read - requested| with a 95 % CI from a bootstrap over target people, for the reader
    chosen per AU (top level) and for every reader (``by_reader``); {} without exact
    answers."""
    if "estimator_error_AU04" not in scores:
        return {}
    requests = _distinct_requests(scores)

    def floor(read: str) -> dict:
        out = {}
        for au in (*PAIN_AUS, "PSPI"):
            error = (requests[read.format(au=au)] - requests[f"requested_{au}"]).abs()
            mean, low, high = cluster_bootstrap_ci(error, requests["target"], n_boot, seed)
            out[au] = {"mean": mean, "ci_low": low, "ci_high": high}
        return out

    readers = sorted({c.removeprefix("exact_read_").rsplit("_", 1)[0]
                      for c in scores if c.startswith("exact_read_")})  # fmt: skip
    return floor("exact_estimated_{au}") | {
        "by_reader": {r: floor(f"exact_read_{r}_{{au}}") for r in readers},
        "n_requests": int(len(requests)),
    }


def _distinct_requests(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct (target, requested AUs): the exact answers of the design."""
    return scores.drop_duplicates(["target", *(f"requested_{au}" for au in PAIN_AUS)])


HARD_AUS = ("AU04", "AU43")  # the paper's hardest AUs to transfer
REFERENCE_METHODS = ("paincontrol", "warp")  # the claim's ranking is shown for both


def hard_au_claim(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """The paper's claim that AU4 and AU43 transfer worst, re-tested per method without a
    scaling artefact.

    Per output and AU the method's *excess* error: ``|read(output) - asked|`` minus the reader's
    own error on the exact answer ``|read(exact) - asked|`` (what the reader misreads is charged
    to no method: a perfect method scores 0), in one unit for every AU: the AU's standard
    deviation over the design's distinct requests (AU43's 0/1 and the 0-5 AUs alike). The null
    is the reader's noise: the same excess for a degraded copy of each exact answer (a perfect
    answer with the generator's look, ``null_estimated``). Per method and AU: mean excess and
    its null [95 % CIs over target people]; ``ranking``: AUs by excess minus null, hardest
    first; ``hard_minus_rest``: per output the mean excess of AU4 and AU43 minus that of the
    other four, minus the same for its null (> 0 supports the claim beyond the reader's noise).
    ``paincontrol_vs_warp``: PainControl's hard_minus_rest minus the warp's on the requests both
    answered; ``verdict``: which of the two the ranking describes. Without exact answers:
    errors against what was asked, same unit, no floor and no null (``floor`` False)."""
    floor = "estimator_error_AU04" in scores
    spread = _distinct_requests(scores)[[f"requested_{au}" for au in PAIN_AUS]].std()
    unit = {au: float(spread[f"requested_{au}"]) for au in PAIN_AUS}

    def excess(frame: pd.DataFrame, read: str) -> pd.DataFrame:
        out = {}
        for au in PAIN_AUS:
            error = (frame[f"{read}_{au}"] - frame[f"requested_{au}"]).abs()
            own = frame[f"estimator_error_{au}"] if floor else 0.0
            out[au] = (error - own) / (unit[au] if unit[au] > 0 else np.nan)
        return pd.DataFrame(out, index=frame.index)

    def hard_minus_rest(frame: pd.DataFrame) -> pd.Series:
        rest = [a for a in PAIN_AUS if a not in HARD_AUS]
        return frame[list(HARD_AUS)].mean(axis=1) - frame[rest].mean(axis=1)

    out = {
        "error": "excess over the reader's error on the exact answer" if floor
        else "error against the request (no exact answers: no reader floor, no null)",
        "unit": "standard deviation of the AU over the distinct requests",
        "unit_values": unit,
        "floor": floor,
        "methods": {},
    }  # fmt: skip
    per_output = {}
    for method, group in scores.groupby("method", sort=False):
        mine = excess(group, "estimated")
        null = excess(group, "null_estimated") if floor else mine * 0.0
        entry = {"excess": {}, "null": {}, "beyond_null": {}}
        for au in PAIN_AUS:
            for key, values in (("excess", mine[au]), ("null", null[au]),
                                ("beyond_null", mine[au] - null[au])):  # fmt: skip
                mean, low, high = cluster_bootstrap_ci(values, group["target"], n_boot, seed)
                entry[key][au] = {"mean": mean, "ci_low": low, "ci_high": high}
        difference = hard_minus_rest(mine) - hard_minus_rest(null)
        per_output[method] = pd.DataFrame({"request": _request(group).to_numpy(),
                                           "target": group["target"].to_numpy(),
                                           "value": difference.to_numpy()})  # fmt: skip
        mean, low, high = cluster_bootstrap_ci(difference, group["target"], n_boot, seed)
        entry["ranking"] = sorted(
            (a for a in PAIN_AUS if np.isfinite(entry["beyond_null"][a]["mean"])),
            key=lambda a: -entry["beyond_null"][a]["mean"],
        )
        entry["hard_minus_rest"] = {"estimate": mean, "ci_low": low, "ci_high": high}
        out["methods"][method] = entry
    if all(m in out["methods"] for m in REFERENCE_METHODS):
        out["paincontrol_vs_warp"] = _claim_difference(per_output, n_boot, seed)
        out["verdict"] = _claim_verdict(out)
    return out


def _claim_difference(per_output: dict, n_boot: int, seed: int) -> dict:
    """PainControl's hard-minus-rest minus the warp's, paired on the requests both answered."""
    ours, warp = (per_output[m] for m in REFERENCE_METHODS)
    paired = ours.merge(warp, on=["request", "target"], suffixes=("_ours", "_warp")).dropna()
    difference = paired["value_ours"] - paired["value_warp"]
    mean, low, high = cluster_bootstrap_ci(difference, paired["target"], n_boot, seed)
    return {"estimate": mean, "ci_low": low, "ci_high": high, "n_requests": int(len(paired))}


def _claim_verdict(claim: dict) -> dict:
    """Which of PainControl and the warp the AU4/AU43 ranking describes."""
    ours, warp = (claim["methods"][m]["hard_minus_rest"] for m in REFERENCE_METHODS)
    difference = claim["paincontrol_vs_warp"]
    supported = bool(np.nan_to_num(ours["ci_low"], nan=-np.inf) > 0)
    warp_shows = bool(np.nan_to_num(warp["ci_low"], nan=-np.inf) > 0)
    stronger = bool(np.nan_to_num(difference["ci_low"], nan=-np.inf) > 0)
    if supported and stronger:
        describes = "paincontrol"
        text = (
            "AU4 and AU43 are harder for PainControl than the rest, beyond the reader's "
            "noise, and more so than for the warp: the ranking describes PainControl"
        )
    elif supported or warp_shows:
        describes = "the task"
        relation = "more strongly than" if difference["estimate"] < 0 else "as strongly as"
        text = (
            f"the warp shows the AU4/AU43 pattern {relation} PainControl (difference "
            "within its interval or below 0): the ranking describes the transfer task, "
            "not something particular to PainControl"
        )
    else:
        describes = "neither"
        text = (
            "neither PainControl nor the warp finds AU4 and AU43 harder than the other "
            "pain AUs beyond the reader's noise: the claim is not supported"
        )
    return {"describes": describes, "paincontrol_supported": supported,
            "warp_supported": warp_shows, "paincontrol_stronger_than_warp": stronger,
            "text": text}  # fmt: skip


def transfer_slopes(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Under-transfer made visible: per method, the least-squares slope of what the reader reads
    on the output against what was asked, for PSPI and each pain AU, with a 95 % CI from a
    bootstrap over target people (1: the expression arrives at full strength; below 1: weaker
    than asked). ``exact_answer``: the reader's own slope on the exact answers (each distinct
    request once), what a perfect method gets; {} for it without exact answers."""
    from paincontrol_lib.stats import cluster_bootstrap_statistic

    def slope(asked, read):
        ok = np.isfinite(asked) & np.isfinite(read)
        asked, read = asked[ok], read[ok]
        if ok.sum() < 3 or asked.var() == 0:
            return None
        return float(np.cov(asked, read)[0, 1] / asked.var(ddof=1))

    def slopes(frame: pd.DataFrame, read: str) -> dict:
        out = {}
        for au in ("PSPI", *PAIN_AUS):
            value, low, high = cluster_bootstrap_statistic(
                slope, frame["target"].to_numpy(), frame[f"requested_{au}"].to_numpy(float),
                frame[f"{read}_{au}"].to_numpy(float), n_boot=n_boot, seed=seed,
            )  # fmt: skip
            out[au] = {"estimate": value, "ci_low": low, "ci_high": high}
        return out

    out = {"methods": {m: slopes(g, "estimated") for m, g in scores.groupby("method", sort=False)}}
    out["exact_answer"] = (
        slopes(_distinct_requests(scores), "exact_estimated")
        if "exact_estimated_AU04" in scores else {}
    )  # fmt: skip
    return out


def val_answers(table: pd.DataFrame, exact, per_person: int, explicit_pspi, seed: int,
                workers: int = 1) -> KnownFaces | None:  # fmt: skip
    """Exact answers of strong requests on validation people, read as outputs are (the
    condition the AU readers are used in): each val person wears the ``per_person`` strongest
    distinct expressions of the next val person (the table's AUs) and the ``explicit_pspi``
    levels (``retarget.aus_for_pspi``), rendered at its photo's pose and cropped with the
    photo's alignment at the reader's size, beside its identity photo; clean and degraded
    (``au_answer_degradation``). None without exact answers or val people."""
    from paincontrol_lib.au_reading.learned import degrade, read_meshes_parallel
    from paincontrol_lib.retarget import aus_for_pspi
    from paincontrol_lib.seeds import stream

    rows = table[table["detected"] & (table["split"] == "val")]
    people = sorted(rows["subject"].unique())
    if exact is None or not people:
        return None
    requests = []
    for i, person in enumerate(people):
        donor = rows[(rows["subject"] == people[(i + 1) % len(people)]) & (rows["PSPI"] > 0)]
        strongest = donor.sort_values(["PSPI", "image"], ascending=[False, True])
        strongest = strongest.drop_duplicates(list(PAIN_AUS)).head(per_person)
        asked = [{au: float(r[au]) for au in PAIN_AUS} for _, r in strongest.iterrows()]
        asked += [aus_for_pspi(float(level)) for level in explicit_pspi]
        requests += [(person, aus) for aus in asked]
    if not requests:
        return None
    rng = stream("au_answer_degradation", seed)
    clean = np.stack([exact(person, aus, READER_SIZE)[0] for person, aus in requests])
    degraded = np.stack([degrade(crop, rng, READER_SIZE) for crop in clean])
    photos = {p: identity_photo_crop(table, p, READER_SIZE) for p in people}
    neutral = np.stack([photos[person] for person, _ in requests])
    meshes = read_meshes_parallel([*clean, *degraded, *photos.values()], workers)
    n = len(requests)
    photo_mesh = dict(zip(people, meshes[2 * n :], strict=True))
    neutral_meshes = np.stack([photo_mesh[person] for person, _ in requests])
    truth = pd.DataFrame([{"subject": person, **aus} for person, aus in requests])
    truth["PSPI"] = pspi(truth)
    return KnownFaces(truth, Faces(meshes[:n], neutral_meshes, clean, neutral),
                      Faces(meshes[n : 2 * n], neutral_meshes, degraded, neutral))  # fmt: skip
