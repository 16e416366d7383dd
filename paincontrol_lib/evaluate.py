"""Score transfer outputs: AU transfer, landmark following, identity, leakage and (on SynthPain)
distance to the exact answer; summarise and compare methods at the level of what is independent.

One row per generated image (:func:`score_outputs`), per-method means with CIs from a bootstrap
over target people (:func:`summarise`), and each method against the warp baseline by a mixed
model with crossed random intercepts for source and target person, Holm-corrected over the
family reported (:func:`versus_warp`). Realism is :mod:`paincontrol_lib.realism`'s.

- requested AUs: the source frame's ground truth when the dataset has one (SynthPain), else
  what retargeting estimated; ``explicit`` rows: what was asked for;
- estimated AUs: the ``mesh`` backend on the output's MediaPipe mesh against the target's
  neutral mesh (``au.RELIABLE_ICC`` flags the AUs it cannot estimate reliably);
- identity: cosine similarity (dlib) of the output to the target's *scoring frame*, a frame no
  method receives (``landmarks.table.scoring_rows``); methods receive the identity photo, so
  similarity to it (``identity_similarity_to_photo``, reported beside) rewards copying. The
  ceiling is the identity photo itself scored the same way. Leakage: similarity to the
  *source* person's scoring frame (synthetic data should not carry the source's identity);
- exact answer (SynthPain): the target rendered with the requested AUs at its reference pose and
  lighting; SSIM and PSNR of the output against it, and the output mesh's NME against its mesh.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib import facemesh
from paincontrol_lib.facs import PAIN_AUS, pspi
from paincontrol_lib.landmarks.align import aligned_crop
from paincontrol_lib.landmarks.image import UPSCALE, load_image, upscale
from paincontrol_lib.landmarks.table import scoring_rows
from paincontrol_lib.stats import cluster_bootstrap_ci, crossed_mixed_model, holm

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


def identity_embeddings(rows: pd.DataFrame, identity) -> dict[str, np.ndarray]:
    """Person -> dlib embedding of their landmark-table row (one row per person)."""
    return {
        str(r["subject"]): identity.embed(
            load_image(r["image"]), np.asarray(r["landmarks"]).reshape(-1, 3)
        )
        for _, r in rows.iterrows()
    }


def identity_photo_crop(table: pd.DataFrame, subject: str, size: int) -> np.ndarray:
    """The person's identity photo as methods see it: its aligned crop at the outputs' size."""
    from paincontrol_lib.landmarks.table import row_transform

    rows = table[(table["subject"] == subject) & table["neutral_reference"] & table["detected"]]
    if rows.empty:
        raise ValueError(f"{subject} has no detected identity photo (neutral reference frame)")
    row = rows.iloc[0]
    return aligned_crop(load_image(row["image"]), row_transform(row), size)


def identity_ceiling(manifest: pd.DataFrame, table: pd.DataFrame, size: int,
                     seed: int) -> pd.DataFrame:  # fmt: skip
    """Per target: its identity photo, cropped as outputs are and scored exactly as an output
    (cosine similarity to the scoring frame): what a perfect copy of the photo gets."""
    from paincontrol_lib.identity import cosine_similarity, make_identity
    from paincontrol_lib.landmarks.mesher import FaceMesher

    identity, targets = make_identity("dlib"), sorted(set(manifest["target"]))
    scoring = identity_embeddings(scoring_rows(table, targets, seed), identity)
    rows = []
    with FaceMesher() as mesher:
        for target in targets:
            found, embedding = _output_face(identity_photo_crop(table, target, size), mesher,
                                            identity)  # fmt: skip
            if embedding is not None and target in scoring:
                similarity = float(cosine_similarity(embedding, scoring[target]))
                rows.append({"target": target, "identity_similarity": similarity})
    return pd.DataFrame(rows, columns=["target", "identity_similarity"])


def _output_face(image: np.ndarray, mesher, identity):
    """How every output is read: upscaled, meshed, embedded; ``(found, embedding or None)``."""
    big = upscale(image)
    found = mesher(big)
    return found, identity.embed(big, found.landmarks) if found.detected else None


class OutputAUs:
    """AU intensities of aligned crops read the way the estimator was validated: both the
    crop's and the person's neutral MediaPipe mesh in unit crop coordinates, each AU from the
    backend chosen for it (``au_estimator.json: backend_per_au``; the ``mesh`` backend where no
    learned estimator exists). PSPI is derived from the chosen AUs."""

    def __init__(self, estimator=None, backend_per_au: dict | None = None):
        self.estimator = estimator
        default = "learned" if estimator else "mesh"
        self.backend_per_au = {au: (backend_per_au or {}).get(au, default) for au in PAIN_AUS}

    def __call__(self, meshes: np.ndarray, neutrals: np.ndarray) -> pd.DataFrame:
        from paincontrol_lib.au import mesh_read

        readers = {"mesh": mesh_read, "learned": self.estimator.read if self.estimator else None}
        by_backend = {b: readers[b](meshes, neutrals) for b in set(self.backend_per_au.values())}
        out = pd.DataFrame({au: by_backend[b][au].to_numpy()
                            for au, b in self.backend_per_au.items()})  # fmt: skip
        out["PSPI"] = pspi(out[list(PAIN_AUS)])
        out.loc[out[list(PAIN_AUS)].isna().all(1), "PSPI"] = np.nan
        return out


def score_outputs(
    manifest: pd.DataFrame, out_dir, table: pd.DataFrame, exact=None, seed: int = 0,
    aus: OutputAUs | None = None, workers: int = 1,
) -> pd.DataFrame:  # fmt: skip
    """One row of scores per generated image in ``manifest`` (images under ``out_dir``).

    ``table`` is the landmark table (neutral references, meshes, ground-truth AUs); ``exact``
    an :class:`ExactAnswers` (SynthPain) or None; ``seed`` picks the scoring frames; ``aus``
    reads AUs (default: the ``mesh`` backend). Where exact answers exist, AUs are also read on
    each exact answer: ``error_vs_exact_<AU>`` compares a method with the truth through the
    same estimator, ``estimator_error_<AU>`` is the estimator's own error on the truth. The
    images are measured in ``workers`` spawned processes (the same scores whatever it is).
    """
    aus = aus or OutputAUs()
    asked = requested_aus(manifest, table)
    synthpain_dir = exact.synthpain_dir if exact is not None else None
    shares = [r for r in np.array_split(np.arange(len(manifest)), max(1, workers)) if len(r)]
    jobs = [(manifest.iloc[rows], asked.iloc[rows], Path(out_dir), table, synthpain_dir, seed)
            for rows in shares]  # fmt: skip
    if len(jobs) > 1:
        from paincontrol_lib.parallel import process_pool

        with process_pool(len(jobs)) as pool:
            parts = list(pool.map(_measure_outputs, jobs))
    else:
        parts = [_measure_outputs(jobs[0], exact)] if jobs else []
    records = [r for part in parts for r in part[0]]
    unit_meshes, exact_meshes, references = (
        np.concatenate([part[k] for part in parts]) if parts else np.empty((0, 478, 3))
        for k in (1, 2, 3)
    )
    scores = pd.DataFrame(records, index=manifest.index)
    estimated = aus(unit_meshes, references).set_index(manifest.index)
    for au in (*PAIN_AUS, "PSPI"):
        scores[f"requested_{au}"] = asked[au]
        scores[f"estimated_{au}"] = estimated[au]
        scores[f"error_{au}"] = (estimated[au] - asked[au]).abs()
    if exact is not None:
        on_truth = aus(exact_meshes, references).set_index(manifest.index)
        for au in (*PAIN_AUS, "PSPI"):
            scores[f"exact_estimated_{au}"] = on_truth[au]
            scores[f"error_vs_exact_{au}"] = (estimated[au] - on_truth[au]).abs()
            scores[f"estimator_error_{au}"] = (on_truth[au] - asked[au]).abs()
    keep = ["method", "mode", "source", "target", "frame", "path"]
    return pd.concat([manifest[keep], scores], axis=1)


def _measure_outputs(job, exact=None):
    """One process's share of :func:`score_outputs`: per image its scores and the MediaPipe
    meshes (unit crop coordinates) of the output, of its exact answer and of the target's
    identity photo, for the AU reading done afterwards."""
    from paincontrol_lib.identity import cosine_similarity, make_identity
    from paincontrol_lib.landmarks.mesher import FaceMesher

    manifest, asked, out_dir, table, synthpain_dir, seed = job
    if exact is None and synthpain_dir is not None:
        exact = ExactAnswers(synthpain_dir, table)
    neutral = table[table["neutral_reference"] & table["detected"]].drop_duplicates("subject")
    neutral = neutral.set_index("subject")
    identity = make_identity("dlib")
    people = set(manifest["target"]) | set(manifest["source"])
    photo = identity_embeddings(
        neutral.loc[sorted(people & set(neutral.index))].reset_index(), identity
    )
    scoring = identity_embeddings(scoring_rows(table, people, seed), identity)
    n = len(manifest)
    unit_meshes, exact_meshes = np.full((n, 478, 3), np.nan), np.full((n, 478, 3), np.nan)
    references = np.full((n, 478, 3), np.nan)
    neutral_meshes: dict[tuple[str, int], np.ndarray] = {}
    records = []
    with FaceMesher() as mesher:
        for i, row in enumerate(manifest.itertuples(index=False)):
            image = load_image(out_dir / row.path)
            size = image.shape[0]
            found, embedding = _output_face(image, mesher, identity)
            rec = {"detected": bool(found.detected)}
            requested = np.asarray(row.target_aligned, float).reshape(-1, 3)
            if (row.target, size) not in neutral_meshes:
                face = mesher(upscale(identity_photo_crop(table, row.target, size)))
                neutral_meshes[row.target, size] = (
                    face.landmarks / UPSCALE if face.detected else np.full((478, 3), np.nan)
                )
            references[i] = neutral_meshes[row.target, size]
            if found.detected:
                mesh = found.landmarks * (size / UPSCALE)
                unit_meshes[i] = found.landmarks / UPSCALE
                rec["nme"] = float(
                    facemesh.nme(mesh[None, :, :2], requested[None, :, :2] * size)[0]
                )
                target_ref, source_ref = scoring.get(row.target), scoring.get(row.source)
                if target_ref is not None:
                    rec["identity_similarity"] = float(cosine_similarity(embedding, target_ref))
                    rec["identity_match"] = float(
                        np.linalg.norm(embedding - target_ref) < SAME_PERSON
                    )
                rec["identity_similarity_to_photo"] = float(
                    cosine_similarity(embedding, photo[row.target])
                )
                if source_ref is not None:
                    rec["source_leakage"] = float(cosine_similarity(embedding, source_ref))
                    rec["source_match"] = float(
                        np.linalg.norm(embedding - source_ref) < SAME_PERSON
                    )
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
                truth_face = mesher(upscale(crop))
                if truth_face.detected:
                    exact_meshes[i] = truth_face.landmarks / UPSCALE
            records.append(rec)
    return records, unit_meshes, exact_meshes, references


METRICS = (
    "identity_similarity",
    "identity_match",
    "identity_similarity_to_photo",
    "source_leakage",
    "source_match",
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


def summarise(
    scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0, cluster: str = "target"
) -> pd.DataFrame:
    """Per method and metric: mean, 95 % CI from a bootstrap over ``cluster`` (the target
    people: outputs of one person are not independent), n outputs."""
    rows = []
    for method, group in scores.groupby("method", sort=False):
        mean, lo, hi = cluster_bootstrap_ci(
            group["detected"].astype(float), group[cluster], n_boot, seed
        )
        rows.append(
            {
                "method": method,
                "metric": "detection_rate",
                "mean": mean,
                "lo": lo,
                "hi": hi,
                "n": len(group),
            }
        )
        for metric in METRICS:
            if metric not in group:
                continue
            mean, lo, hi = cluster_bootstrap_ci(group[metric], group[cluster], n_boot, seed)
            n = int(np.isfinite(group[metric].to_numpy(float)).sum())
            rows.append(
                {"method": method, "metric": metric, "mean": mean, "lo": lo, "hi": hi, "n": n}
            )
    return pd.DataFrame(rows)


# eval.json name -> score column: the primary metrics compared with the warp
PRIMARY_METRICS = {
    "pspi_mae": "error_PSPI",
    "identity_similarity": "identity_similarity",
    "nme": "nme",
    "ssim_to_exact": "ssim_to_exact",
}


def versus_warp(scores: pd.DataFrame, baseline: str = "warp", metrics=PRIMARY_METRICS) -> dict:
    """Each method against ``baseline`` on each primary metric: ``metric ~ method`` on the two
    methods' outputs with crossed random intercepts for source and target person (the
    independent units); estimate = method - baseline with its 95 % CI and p, Holm-corrected
    over every (method, metric) reported. ``{metric: {f"{method}_vs_{baseline}": {...}}}``."""
    rows = []
    for name, column in metrics.items():
        if column not in scores or scores[column].notna().sum() == 0:
            continue
        for method in [m for m in scores["method"].unique() if m != baseline]:
            data = scores[scores["method"].isin([method, baseline])]
            data = data[["method", "source", "target", column]].dropna()
            rows.append(
                {
                    "metric": name,
                    "method": method,
                    "n_outputs": len(data),
                    **_crossed_difference(data.rename(columns={column: "y"}), baseline),
                }
            )
    out: dict = {}
    p_holm = holm([r["p"] for r in rows]) if rows else []
    for row, adjusted in zip(rows, p_holm, strict=True):
        test = {k: row[k] for k in ("estimate", "ci_low", "ci_high", "p", "n_outputs")}
        out.setdefault(row["metric"], {})[f"{row['method']}_vs_{baseline}"] = test | {
            "p_holm": adjusted,
            "model": "crossed random intercepts (source, target)",
        }
    return out


def _crossed_difference(data: pd.DataFrame, baseline: str) -> dict:
    term = f"C(method, Treatment({baseline!r}))"
    fit = None
    if data["method"].nunique() == 2 and data["target"].nunique() > 1:
        fit = crossed_mixed_model(f"y ~ {term}", data, {"source": "source", "target": "target"})
    if fit is None:
        return dict.fromkeys(("estimate", "ci_low", "ci_high", "p"), np.nan)
    name = next(n for n in fit.params.index if n.startswith(term))
    low, high = fit.conf_int().loc[name]
    return {
        "estimate": float(fit.params[name]),
        "ci_low": float(low),
        "ci_high": float(high),
        "p": float(fit.pvalues[name]),
    }


def _aligned_crops(rows: pd.DataFrame, size: int) -> np.ndarray:
    from paincontrol_lib.landmarks.table import row_transform

    return np.stack(
        [aligned_crop(load_image(r["image"]), row_transform(r), size) for _, r in rows.iterrows()]
    )


def realism_by_method(
    manifest: pd.DataFrame, out_dir, table: pd.DataFrame, seed: int, feature_steps: int = 300,
    exact=None, scores: pd.DataFrame | None = None,
) -> dict:  # fmt: skip
    """Per method: FD, KID [CI], precision and recall of its outputs against ground-truth frames
    of the held-out (val and test) people who are not transfer targets, in the features of a
    network trained on the training people (:class:`~paincontrol_lib.realism.FaceFeatures`).

    With exact answers (SynthPain) two more things: the exact answers themselves scored the same
    way (``exact_answer``: what a perfect method gets), and per method a paired two-sample test
    (:func:`~paincontrol_lib.realism.paired_two_sample_auc`) of outputs against the exact answers
    of the same requests, in the network's features (``c2st_auc_face_features``) and in the AU
    estimator's readings (``c2st_auc_au_estimator``, from ``scores``)."""
    from paincontrol_lib.data.records import AU_COLUMNS
    from paincontrol_lib.realism import CROP, FaceFeatures, paired_two_sample_auc, realism_scores

    rows = table[table["detected"]]
    train = rows[rows["split"] == "train"]
    aus = train[[c for c in AU_COLUMNS if c in train]].to_numpy(float)
    features = FaceFeatures(steps=feature_steps).fit(
        _aligned_crops(train, CROP), train["subject"].to_numpy(), aus, seed
    )
    # Every held-out person who is not a target (val and test): enough faces to cover the space.
    held_out = rows[rows["split"].isin(["val", "test"])]
    reference = held_out[~held_out["subject"].isin(set(manifest["target"]))]
    split = "val and test people who are not transfer targets"
    real = features(_aligned_crops(reference, CROP))
    out = {
        "features": features.description,
        "reference": {
            "split": split,
            "n_people": int(reference["subject"].nunique()),
            "n_images": int(len(reference)),
        },
    }
    out_dir = Path(out_dir)
    truth_features = None
    if exact is not None:
        asked = requested_aus(manifest, table)
        truth_crops = []
        for i, row in manifest.iterrows():
            size = load_image(out_dir / row["path"]).shape[0]
            crop, _ = exact(row["target"], asked.loc[i, list(PAIN_AUS)].to_dict(), size)
            truth_crops.append(upscale(crop, CROP))
        truth_features = pd.DataFrame(features(np.stack(truth_crops)), index=manifest.index)
        out["exact_answer"] = realism_scores(truth_features.to_numpy(), real, seed)
    for method, group in manifest.groupby("method", sort=False):
        crops = np.stack([upscale(load_image(out_dir / p), CROP) for p in group["path"]])
        generated = features(crops)
        out[method] = realism_scores(generated, real, seed)
        if truth_features is not None:
            targets = group["target"].to_numpy()
            out[method]["c2st_auc_face_features"] = paired_two_sample_auc(
                generated, truth_features.loc[group.index].to_numpy(), targets
            )
            if scores is not None and "exact_estimated_AU04" in scores:
                mine = scores.loc[group.index]
                out[method]["c2st_auc_au_estimator"] = paired_two_sample_auc(
                    mine[[f"estimated_{a}" for a in PAIN_AUS]].to_numpy(float),
                    mine[[f"exact_estimated_{a}" for a in PAIN_AUS]].to_numpy(float),
                    targets,
                )
    return out


def estimator_floor(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """The AU estimator's own error on the exact answers of this design (each distinct request
    once, whichever methods asked): what it can resolve about any method. Per AU: mean
    |estimated - requested| with a 95 % CI from a bootstrap over target people; {} without exact
    answers."""
    if "estimator_error_AU04" not in scores:
        return {}
    columns = [f"requested_{au}" for au in PAIN_AUS]
    requests = scores.drop_duplicates(["target", *columns])
    out = {}
    for au in (*PAIN_AUS, "PSPI"):
        mean, low, high = cluster_bootstrap_ci(
            requests[f"estimator_error_{au}"], requests["target"], n_boot, seed
        )
        out[au] = {"mean": mean, "ci_low": low, "ci_high": high}
    out["n_requests"] = int(len(requests))
    return out


AU_SCALE = {au: 1.0 if au == "AU43" else 5.0 for au in PAIN_AUS}  # FACS range of each AU
HARD_AUS = ("AU04", "AU43")  # the paper's hardest AUs to transfer


def hard_au_claim(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """The paper's claim that AU4 and AU43 transfer worst, re-tested per method: each AU's error
    against the exact answer read by the same estimator (``error_vs_exact``; without exact
    answers, against what was asked) as a fraction of its FACS range, so AU43 (0/1) and the 0-5
    AUs compare. ``hard_minus_rest``: per output, mean of AU4 and AU43 minus mean of the other
    four, with a 95 % CI from a bootstrap over target people; > 0 supports the claim."""
    prefix = "error_vs_exact_" if "error_vs_exact_AU04" in scores else "error_"
    out = {"error": prefix.rstrip("_"), "scale": dict(AU_SCALE), "methods": {}}
    for method, group in scores.groupby("method", sort=False):
        scaled = pd.DataFrame({au: group[f"{prefix}{au}"] / AU_SCALE[au] for au in PAIN_AUS})
        per_au = {}
        for au in PAIN_AUS:
            mean, low, high = cluster_bootstrap_ci(scaled[au], group["target"], n_boot, seed)
            per_au[au] = {"mean": mean, "ci_low": low, "ci_high": high}
        rest = [a for a in PAIN_AUS if a not in HARD_AUS]
        difference = scaled[list(HARD_AUS)].mean(1) - scaled[rest].mean(1)
        mean, low, high = cluster_bootstrap_ci(difference, group["target"], n_boot, seed)
        ranking = sorted((a for a in PAIN_AUS if np.isfinite(per_au[a]["mean"])),
                         key=lambda a: -per_au[a]["mean"])  # fmt: skip
        out["methods"][method] = {
            "scaled_error": per_au,
            "ranking": ranking,
            "hard_minus_rest": {"estimate": mean, "ci_low": low, "ci_high": high},
        }
    return out
