"""Score transfer outputs: AU transfer, landmark following, identity, leakage, realism, and (on
SynthPain) distance to the exact answer.

One row per generated image (:func:`score_outputs`), then per-method summaries with bootstrap
CIs (:func:`summarise`), a mixed-effects model and paired tests against the warp baseline
(:func:`compare_methods`).

- requested AUs: the source frame's ground truth when the dataset has one (SynthPain), else
  what retargeting estimated; ``explicit`` rows: what was asked for;
- estimated AUs: the ``mesh`` backend on the output's MediaPipe mesh against the target's
  neutral mesh (``au.RELIABLE_ICC`` flags the AUs it cannot estimate reliably);
- identity: cosine similarity (dlib) of the output to the target's reference image; leakage:
  to the *source* person's reference image (synthetic data should not carry the source's
  identity);
- realism: Fréchet distance between dlib embeddings of outputs and of real held-out frames
  (a face-specific feature space available offline; Inception FID needs weights we do not
  ship);
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
from paincontrol_lib.landmarks.align import align, aligned_crop
from paincontrol_lib.landmarks.image import UPSCALE, load_image, upscale
from paincontrol_lib.stats import bootstrap_ci, holm, paired_wilcoxon
from paincontrol_lib.stats import mixed_model as fit_mixed_model

SAME_PERSON = 0.6  # dlib's own threshold on the L2 distance between two faces' descriptors


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a`` (n, d) and ``b`` (m, d)."""
    from scipy import linalg

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples on each side")
    mu, nu = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    offset = eps * np.eye(len(mu))
    covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu - nu) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def ssim_psnr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """SSIM (colour, 7 px window) and PSNR (dB) of two uint8 images of one size."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ssim = structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=7)
    return float(ssim), float(peak_signal_noise_ratio(a, b, data_range=255))


class ExactAnswers:
    """SynthPain's exact answers, aligned like the outputs: ``(subject, aus, size) -> (crop,
    canonical mesh)``. Each (person, AUs, size) is rendered once, though every method asks."""

    def __init__(self, synthpain_dir):
        from paincontrol_lib.data.synthpain.generate import load_config

        self.config = load_config(synthpain_dir)
        self._done: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, subject: str, aus: dict[str, float], size: int):
        from paincontrol_lib.data.synthpain.generate import render_exact

        key = (subject, tuple(sorted((a, round(float(v), 6)) for a, v in aus.items())), size)
        if key not in self._done:
            truth = render_exact(self.config, subject, aus)
            points = np.column_stack([truth.landmarks_2d, truth.landmarks_3d[:, 2]])
            aligned, transform = align(points)
            self._done[key] = aligned_crop(truth.image, transform, size), aligned
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


def score_outputs(manifest: pd.DataFrame, out_dir, table: pd.DataFrame, exact=None) -> pd.DataFrame:
    """One row of scores per generated image in ``manifest`` (images under ``out_dir``).

    ``table`` is the landmark table (neutral references, meshes, ground-truth AUs); ``exact``
    an :class:`ExactAnswers` (SynthPain) or None.
    """
    from paincontrol_lib.au import mesh_aus
    from paincontrol_lib.identity import cosine_similarity, make_identity
    from paincontrol_lib.landmarks.mesher import FaceMesher

    out_dir = Path(out_dir)
    neutral = table[table["neutral_reference"] & table["detected"]].drop_duplicates("subject")
    neutral = neutral.set_index("subject")
    identity = make_identity("dlib")
    reference = {
        s: identity.embed(load_image(r["image"]), np.asarray(r["landmarks"]).reshape(-1, 3))
        for s, r in neutral.iterrows()
        if s in set(manifest["target"]) | set(manifest["source"])
    }
    asked = requested_aus(manifest, table)
    mesher = FaceMesher()
    records, meshes, bases = [], [], []
    for i, row in enumerate(manifest.itertuples(index=False)):
        image = load_image(out_dir / row.path)
        size = image.shape[0]
        big = upscale(image)
        found = mesher(big)
        rec = {"detected": bool(found.detected)}
        requested = np.asarray(row.target_aligned, float).reshape(-1, 3)
        if found.detected:
            mesh = found.landmarks * (size / UPSCALE)
            rec["nme"] = float(facemesh.nme(mesh[None, :, :2], requested[None, :, :2] * size)[0])
            embedding = identity.embed(big, found.landmarks)
            target_ref, source_ref = reference[row.target], reference.get(row.source)
            rec["identity_similarity"] = float(cosine_similarity(embedding, target_ref))
            rec["identity_match"] = float(np.linalg.norm(embedding - target_ref) < SAME_PERSON)
            if source_ref is not None:
                rec["source_leakage"] = float(cosine_similarity(embedding, source_ref))
                rec["source_match"] = float(np.linalg.norm(embedding - source_ref) < SAME_PERSON)
            rec["embedding"] = embedding
            meshes.append(mesh)
            bases.append(np.asarray(neutral.loc[row.target, "landmarks"], float).reshape(-1, 3))
        if exact is not None:
            wanted = dict(zip(PAIN_AUS, asked.iloc[i][list(PAIN_AUS)], strict=True))
            crop, aligned = exact(row.target, wanted, size)
            rec["ssim_to_exact"], rec["psnr_to_exact"] = ssim_psnr(image, crop)
            if found.detected:
                rec["nme_to_exact"] = float(
                    facemesh.nme(mesh[None, :, :2], aligned[None, :, :2] * size)[0]
                )
        records.append(rec)
    mesher.close()
    scores = pd.DataFrame(records, index=manifest.index)
    detected = scores["detected"].to_numpy()
    estimated = pd.DataFrame(np.nan, index=manifest.index, columns=[*PAIN_AUS, "PSPI"])
    if meshes:
        found_aus = mesh_aus(np.stack(meshes), np.stack(bases))
        estimated.loc[detected, :] = found_aus[[*PAIN_AUS, "PSPI"]].to_numpy()
    for au in (*PAIN_AUS, "PSPI"):
        scores[f"requested_{au}"] = asked[au]
        scores[f"estimated_{au}"] = estimated[au]
        scores[f"error_{au}"] = (estimated[au] - asked[au]).abs()
    keep = ["method", "mode", "source", "target", "frame", "path"]
    return pd.concat([manifest[keep], scores], axis=1)


def realism_distances(scores: pd.DataFrame, real_embeddings: np.ndarray) -> dict[str, float]:
    """Per method: Fréchet distance of output embeddings to real held-out frames'."""
    out = {}
    for method, rows in scores.groupby("method"):
        found = [e for e in rows["embedding"] if isinstance(e, np.ndarray)]
        out[method] = frechet_distance(np.stack(found), real_embeddings) if len(found) > 1 else None
    return out


def real_embeddings(table: pd.DataFrame, size: int, n: int, seed: int) -> np.ndarray:
    """dlib embeddings of ``n`` held-out ground-truth frames treated like outputs (aligned crop at
    ``size``, upscaled, meshed): the realism reference."""
    from paincontrol_lib.identity import make_identity
    from paincontrol_lib.landmarks.mesher import FaceMesher
    from paincontrol_lib.landmarks.table import row_transform

    test = table[(table["split"] == "test") & table["detected"]]
    pick = test.sample(min(n, len(test)), random_state=seed)
    identity, mesher, out = make_identity("dlib"), FaceMesher(), []
    for _, row in pick.iterrows():
        big = upscale(aligned_crop(load_image(row["image"]), row_transform(row), size))
        found = mesher(big)
        if found.detected:
            out.append(identity.embed(big, found.landmarks))
    mesher.close()
    return np.stack(out)


METRICS = ("identity_similarity", "identity_match", "source_leakage", "source_match", "nme",
           "error_PSPI", "ssim_to_exact", "psnr_to_exact", "nme_to_exact",
           *(f"error_{a}" for a in PAIN_AUS))  # fmt: skip


def summarise(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per method and metric: mean, 95 % bootstrap CI, n."""
    rows = []
    for method, group in scores.groupby("method", sort=False):
        rows.append({"method": method, "metric": "detection_rate",
                     "mean": float(group["detected"].mean()), "lo": np.nan, "hi": np.nan,
                     "n": len(group)})  # fmt: skip
        for metric in METRICS:
            if metric not in group:
                continue
            mean, lo, hi = bootstrap_ci(group[metric], n_boot, seed)
            n = int(np.isfinite(group[metric].to_numpy(float)).sum())
            rows.append(
                {"method": method, "metric": metric, "mean": mean, "lo": lo, "hi": hi, "n": n}
            )
    return pd.DataFrame(rows)


PAIRED_METRICS = ("error_PSPI", "identity_similarity", "error_AU04", "error_AU43", "nme")


def compare_methods(
    scores: pd.DataFrame, baseline: str = "warp", metrics=PAIRED_METRICS
) -> pd.DataFrame:
    """Paired Wilcoxon tests of every method against ``baseline`` (same source frame and
    target), Holm-corrected over all tests."""
    key = ["mode", "source", "target", "frame"]
    base = scores[scores["method"] == baseline].set_index(key)
    rows = []
    for method in scores["method"].unique():
        if method == baseline:
            continue
        other = scores[scores["method"] == method].set_index(key)
        for metric in metrics:
            pair = pd.concat([other[metric], base[metric]], axis=1, keys=["m", "b"]).dropna()
            if len(pair) < 5 or (pair["m"] == pair["b"]).all():
                continue
            rows.append({"method": method, "metric": metric, "n_pairs": len(pair),
                         "mean_difference": float((pair["m"] - pair["b"]).mean()),
                         "p": paired_wilcoxon(pair["m"], pair["b"])})  # fmt: skip
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = holm(table["p"])
    return table


def mixed_model(scores: pd.DataFrame, metric: str = "error_PSPI", baseline: str = "warp"):
    """``metric ~ method`` with a random intercept per target identity (statsmodels MixedLM);
    coefficients are differences from ``baseline``. None when it cannot be fitted."""
    data = scores[["method", "target", metric]].dropna().rename(columns={metric: "y"})
    if data["target"].nunique() < 2 or data["method"].nunique() < 2:
        return None
    formula = f"y ~ C(method, Treatment({baseline!r}))"
    fit = fit_mixed_model(formula, data, groups=data["target"])
    if fit is None:
        return None
    params, conf = fit.params, fit.conf_int()
    names = [n for n in params.index if n.startswith("C(method")]
    return pd.DataFrame({
        "term": [n.split("[T.")[-1].rstrip("]") for n in names],
        "coef": params[names].to_numpy(), "lo": conf.loc[names, 0].to_numpy(),
        "hi": conf.loc[names, 1].to_numpy(), "p": fit.pvalues[names].to_numpy(),
    })  # fmt: skip
