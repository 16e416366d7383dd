"""Stage 04 (notebook ``04_au_identity``): score every transfer output — AU transfer (AU4 and
AU43 called out), landmark following, identity, source leakage, realism and, on SynthPain, the
distance to the exact answer — summarise with CIs, run the comparisons declared in
``params.yaml: evaluate.inference`` (every method against the warp, every ablation against the
full method), and validate the AU estimator.

The AU readers are validated here (``reports/metrics/au_estimator.json``): the ``pixels`` CNN
(``paincontrol_lib/au_reading/pixels.py``; shipped weights from fresh identities, fine-tuned on the
training people), the ``learned`` mesh ridge (``au_reading/learned.py``, trained here) and the
``mesh`` backend, each chosen on validation people (tables plus the exact answers of strong
requests) and reported on test people, clean and degraded, with intervals over people, and on the
exact answers of the evaluation's requests; outputs are read with the best reader per AU. The
``guide`` pixel reader is reported beside and never scores."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.evaluate import (
    IDENTITY_JUDGES,
    INFERENCE,
    ExactAnswers,
    au_guidance_verdict,
    compare_methods,
    estimator_floor,
    hard_au_claim,
    identity_bounds,
    identity_ceiling,
    identity_instrument,
    identity_known_answers,
    motion_summary,
    normalise_identity,
    reader_agreement,
    realism_by_method,
    requested_aus,
    score_outputs,
    summarise,
    transfer_slopes,
    val_answers,
)
from paincontrol_lib.facs import AU_DESCRIPTIONS, PAIN_AUS
from paincontrol_lib.io import PhaseClock, atomic_write_bytes, save_figure, write_json
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.landmarks.table import load_landmark_table
from paincontrol_lib.stats import cluster_bootstrap_ci
from paincontrol_lib.transfer import METHOD_LABELS, METHODS, load_manifest, method_labels

METRICS = "eval.json"
IDENTITY_METRICS = "identity_encoder.json"
ESTIMATOR_METRICS = "au_estimator.json"
AU_ERROR_PLOT = "eval_au_error.csv"


@dataclass
class EvaluateResult:
    table: pd.DataFrame  # the landmark table
    manifest: pd.DataFrame  # stage 03's manifest
    scores: pd.DataFrame  # one row per output
    summary: pd.DataFrame  # per method and metric: mean, CI over target people, n
    estimator: dict  # the AU estimator's validation (au_estimator.json)
    metrics: dict  # reports/metrics/eval.json
    exact: ExactAnswers | None  # SynthPain's exact answers (None on real data)


def train_au_estimator(table: pd.DataFrame, settings: dict, seed: int, workers: int = 1,
                       exact=None, n_boot: int = 1000):  # fmt: skip
    """Train, choose and validate the AU readers (``au_reading.backends.validate_backends``)
    on the landmark table's people and, with exact answers, the exact answers of strong requests
    on validation people (the learned estimator is saved to ``settings["path"]``).
    ``(readers, report)``: the ``mesh`` backend for every AU, and the reason, where the data
    have no AU ground truth to learn or validate on."""
    from paincontrol_lib.au_reading.backends import AUReaders, validate_backends
    from paincontrol_lib.au_reading.learned import read_table

    coded = [au for au in PAIN_AUS if au in table and table[au].notna().any()]
    if len(coded) < len(PAIN_AUS):
        report = {"backend_per_au": dict.fromkeys(PAIN_AUS, "mesh"),
                  "reason": f"no ground truth for {sorted(set(PAIN_AUS) - set(coded))}: "
                  "no AU reader can be trained or validated on these data"}  # fmt: skip
        return AUReaders(), report
    copies = [int(c) for c in settings["degraded_copies"]]
    reads = read_table(table, seed, max(copies) + 1, workers)
    answers = settings["val_answers"]
    strong = val_answers(table, exact, int(answers["per_person"]), answers["explicit_pspi"], seed,
                         workers)  # fmt: skip
    readers, report = validate_backends(reads, settings, seed, n_boot, strong)
    if strong is not None:
        report["val_answers"] = {
            "what": "exact answers of strong requests on val people: the strongest distinct "
            "expressions of another val person and PSPI levels asked directly",
            "n_answers": int(len(strong.rows)),
            "explicit_pspi": list(answers["explicit_pspi"]),
        }
    if settings.get("compare_pyfeat"):
        report["pyfeat"] = pyfeat_comparison(reads, readers.readers["learned"], n_boot, seed)
    report["path"] = str(settings["path"])
    return readers, report


def pyfeat_comparison(reads, learned, n_boot: int, seed: int) -> dict:
    """Opt-in (``evaluate.au_estimator.compare_pyfeat``; needs py-feat's weights): py-feat on the
    test people's images against the ground truth, and against the learned estimator on the
    same images."""
    from paincontrol_lib.au_reading.backends import PyFeatAU, backend_agreement
    from paincontrol_lib.au_reading.learned import agreement

    test = (reads.rows["split"] == "test").to_numpy()
    rows = reads.rows[test].reset_index(drop=True)
    people = rows["subject"].to_numpy()
    pyfeat = PyFeatAU()(rows["image"]).reset_index(drop=True)
    mine = learned(reads.faces().subset(test))
    aus = [au for au in (*PAIN_AUS, "PSPI") if au in pyfeat and pyfeat[au].notna().any()]
    return {
        "vs_ground_truth": agreement(rows, pyfeat, aus, people, n_boot, seed),
        "vs_learned": backend_agreement(pyfeat, mine, aus, people),
        "n_images": int(len(rows)),
    }


def run(
    base: dict, data: dict, evaluate: dict, landmarks_dir, transfer_dir, reports_dir
) -> EvaluateResult:
    """Train the AU estimator; score, summarise and compare every output; write ``eval.json``,
    ``au_estimator.json`` and the per-AU plot data."""
    started, clock = time.perf_counter(), PhaseClock()
    seed = base["seed"]
    table, manifest = load_landmark_table(landmarks_dir), load_manifest(transfer_dir)
    synthpain_dir = Path(data["root"]) if data["source"] == "synthpain" else None
    exact = None
    if synthpain_dir is not None and (synthpain_dir / "config.json").is_file():
        exact = ExactAnswers(synthpain_dir, table)
    with clock("au_estimator"):
        reader, report = train_au_estimator(
            table, evaluate["au_estimator"], seed, base["workers"], exact, evaluate["n_bootstrap"]
        )
    with clock("score_outputs"):
        scores = score_outputs(manifest, transfer_dir, table, exact=exact, seed=seed, aus=reader,
                               workers=base["workers"],
                               encoder_dir=evaluate["identity_encoder"])  # fmt: skip
    size = int(load_image(Path(transfer_dir) / manifest["path"].iloc[0]).shape[0])
    with clock("identity"):
        scores, identity = _identity(
            scores, manifest, table, size, seed, evaluate, reports_dir, base["workers"]
        )
    with clock("statistics"):
        summary = summarise(scores)
        metrics = _metrics(scores, summary, report, manifest, evaluate["inference"])
        metrics["au_claim"] = hard_au_claim(scores, evaluate["n_bootstrap"], seed)
        metrics["motion_following"] = motion_summary(scores, evaluate["n_bootstrap"], seed)
        _au_floor_and_slopes(scores, report, metrics, evaluate["n_bootstrap"], seed)
    write_json(Path(reports_dir) / "metrics" / ESTIMATOR_METRICS, report)
    metrics |= identity
    metrics["labels"] = method_labels(manifest)  # what ran: each method's start and steps
    metrics["tests"], metrics["fits_failed"] = _comparisons(scores, evaluate["inference"])
    with clock("realism"):
        metrics["realism"] = realism_by_method(
            manifest, transfer_dir, table, seed, evaluate["realism_feature_steps"], exact, scores
        )
    metrics["au_guidance"] = au_guidance_verdict(metrics)
    metrics["phase_seconds"] = clock.seconds
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    per_au = summary[summary["metric"].str.startswith("error_")].assign(
        au=lambda d: d["metric"].str.removeprefix("error_")
    )[["method", "au", "mean", "lo", "hi", "n"]]
    atomic_write_bytes(
        Path(reports_dir) / "plots" / AU_ERROR_PLOT, per_au.to_csv(index=False).encode()
    )
    return EvaluateResult(table, manifest, scores, summary, report, metrics, exact)


def _au_floor_and_slopes(scores, report: dict, metrics: dict, n_boot: int, seed: int) -> None:
    """The AU readers' error on the exact answers of the evaluation's requests (every reader in
    ``au_estimator.json``, the one chosen per AU in ``eval.json``), the AUs that miss a goal,
    and per method the slopes of what is read against what was asked (under-transfer)."""
    from paincontrol_lib.au_reading.backends import unreliable

    floor = estimator_floor(scores, n_boot, seed)
    report["exact_answer_error"] = floor
    if "degraded" in report:
        report["unreliable_aus"] = unreliable(report)
    metrics["au_estimator"] |= {
        "exact_answer_error": {k: v for k, v in floor.items() if k != "by_reader"},
        "unreliable_aus": report.get("unreliable_aus", list(PAIN_AUS)),
    }
    slopes = transfer_slopes(scores, n_boot, seed)
    for method, entry in slopes["methods"].items():
        metrics["methods"][method] |= {
            "pspi_slope": entry["PSPI"]["estimate"],
            "pspi_slope_ci_low": entry["PSPI"]["ci_low"],
            "pspi_slope_ci_high": entry["PSPI"]["ci_high"],
            "au_slopes": {au: entry[au] for au in PAIN_AUS},
        }
    metrics["transfer_slopes"] = {
        "what": "least-squares slope of the AU (PSPI) read on the output against the one asked "
        "for; 95 % CI from a bootstrap over target people; 1 is full transfer",
        "exact_answer": slopes["exact_answer"],
    }


def _identity(scores, manifest, table, size: int, seed: int, evaluate: dict, reports_dir,
              workers: int = 1):  # fmt: skip
    """The identity instrument's own numbers: its validation on the test people
    (``identity_encoder.json``), and for ``eval.json`` the floor and ceiling (encoder and dlib),
    the photo-copy ceiling and the known answers; returns ``(scores with identity_normalised,
    those metrics)``. A copy of the identity photo scores ``identity_similarity_ceiling`` (and
    ``_dlib``); the ceiling that normalises is the exact answers' where there are any
    (:func:`~paincontrol_lib.evaluate.identity_bounds`)."""
    n_boot, encoder = evaluate["n_bootstrap"], evaluate["identity_encoder"]
    write_json(Path(reports_dir) / "metrics" / IDENTITY_METRICS,
               identity_instrument(table, seed, n_boot, encoder, workers))  # fmt: skip
    photo = identity_ceiling(manifest, table, size, seed, encoder)
    out = identity_bounds(scores, photo, table, manifest, seed, n_boot, encoder)
    for suffix in IDENTITY_JUDGES:
        mean, low, high = cluster_bootstrap_ci(
            photo[f"identity_similarity{suffix}"], photo["target"], n_boot, seed
        )
        out[f"identity_similarity_ceiling{suffix}"] = {
            "mean": mean,
            "ci_low": low,
            "ci_high": high,
            "n_targets": len(photo),
        }
    scores = normalise_identity(scores, out)
    return scores, out | {
        "identity_known_answers": identity_known_answers(scores, n_boot, seed),
        "identity_scorer": IDENTITY_JUDGES[""],
        "identity_judge": IDENTITY_JUDGES["_dlib"],
        "identity_instrument": IDENTITY_METRICS,
    }


# eval.json method keys -> score columns; each gets _ci_low / _ci_high from the summary
_METHOD_METRICS = {
    "detection_rate": "detection_rate",
    "identity_similarity": "identity_similarity",
    "identity_top1_gallery": "identity_top1_gallery",
    "target_over_source": "target_over_source",
    "identity_normalised": "identity_normalised",
    "identity_similarity_to_photo": "identity_similarity_to_photo",
    "source_leakage": "source_leakage",
    "identity_similarity_dlib": "identity_similarity_dlib",
    "identity_normalised_dlib": "identity_normalised_dlib",
    "target_over_source_dlib": "target_over_source_dlib",
    "source_leakage_dlib": "source_leakage_dlib",
    "identity_match_rate_dlib": "identity_match_dlib",
    "source_match_rate_dlib": "source_match_dlib",
    "nme": "nme",
    "pspi_mae": "error_PSPI",
    "ssim_to_exact": "ssim_to_exact",
    "psnr_to_exact": "psnr_to_exact",
    "nme_to_exact": "nme_to_exact",
    "appearance_error": "appearance_error",
}


def _comparisons(scores, inference: dict) -> tuple[dict, dict]:
    """``eval.json: tests`` and ``fits_failed``: the declared comparisons; a comparison that
    could not be tested stops the stage unless ``evaluate.inference.allow_failed_fits``."""
    tests, failures = compare_methods(scores, inference["endpoints"], inference["families"])
    named = [f"{f['family']}: {f['comparison']} on {f['endpoint']} ({f['reason']})"
             for f in failures]  # fmt: skip
    if named and not inference["allow_failed_fits"]:
        raise RuntimeError(
            f"stage 04: {len(named)} declared comparison(s) could not be tested: "
            + "; ".join(named)
            + " (evaluate.inference.allow_failed_fits: true reports them in eval.json instead)"
        )
    return tests, {"count": len(failures), "failures": failures}


def _metrics(scores, summary, estimator, manifest, inference: dict) -> dict:
    def stat(method, metric, column):
        row = summary[(summary["method"] == method) & (summary["metric"] == metric)]
        value = row[column].iloc[0] if len(row) else np.nan
        return None if not np.isfinite(value) else float(value)

    methods = {}
    for method in scores["method"].unique():
        entry = {"n_outputs": int((scores["method"] == method).sum())}
        for key, column in _METHOD_METRICS.items():
            entry[key] = stat(method, column, "mean")
            entry[f"{key}_ci_low"] = stat(method, column, "lo")
            entry[f"{key}_ci_high"] = stat(method, column, "hi")
        entry["au_mae"] = {au: stat(method, f"error_{au}", "mean") for au in PAIN_AUS}
        entry["au_mae_ci"] = {
            au: [stat(method, f"error_{au}", "lo"), stat(method, f"error_{au}", "hi")]
            for au in PAIN_AUS
        }
        entry["au_readers"] = reader_agreement(scores, method)
        methods[method] = entry
    transferred = manifest[manifest["mode"] != "explicit"]
    counts = scores.groupby("method").size()
    return {
        "design": {
            "n_sources": int(transferred["source"].nunique()),
            "n_targets": int(manifest["target"].nunique()),
            "n_pairs": int(transferred[["source", "target"]].drop_duplicates().shape[0]),
            "n_outputs_per_method": int(counts.min()) if len(counts) else 0,
            "split": "test",
            "ci": "95 % two-way (source x target person) cluster-robust t-interval",
            "tests": INFERENCE + "; Holm within each declared family",
            "endpoints": dict(inference["endpoints"]),
            "families": {
                name: {"baseline": f["baseline"], "methods": list(f["methods"])}
                | ({"endpoints": dict(f["endpoints"])} if "endpoints" in f else {})
                for name, f in inference["families"].items()
            },
        },
        "identity_scoring": "unseen_frame",
        "methods": methods,
        "au_estimator": {
            "backend_per_au": estimator["backend_per_au"],
            "unreliable_aus": estimator.get("unreliable_aus", list(PAIN_AUS)),
            "validation": ESTIMATOR_METRICS,
        },
        "primary_metrics": dict(inference["endpoints"]),
    }


def au_guidance_table(result: EvaluateResult) -> pd.DataFrame:
    """AU guidance against unguided PainControl (``eval.json: au_guidance``), per hard AU: the
    scoring reader's error against the exact answer unguided and guided, the paired difference
    [95 % CI], the relative change, the guide reader's own error on the guided outputs."""
    verdict = result.metrics.get("au_guidance")
    if not verdict:
        return pd.DataFrame({"note": ["paincontrol_au_guided was not run"]})
    rows = {}
    for au, entry in verdict["aus"].items():
        if "difference" not in entry:
            rows[au] = {"note": entry["reason"]}
            continue
        d = entry["difference"]
        rows[au] = {
            "PainControl": round(entry["unguided"], 3),
            "+ AU guidance": round(entry["guided"], 3),
            "difference [95 % CI]": (
                f"{d['estimate']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
            ),
            "relative change": f"{entry['relative_change']:+.0%}",
            "p (Holm)": round(d["p_holm"], 4),
            "goal (-30 %) met": entry["meets_goal"],
            "guide reader's own error": round(entry["guide_reader_guided"], 3),
        }
    return pd.DataFrame(rows).T


def load_identity_instrument(reports_dir) -> dict:
    """``identity_encoder.json``: the identity instrument's validation on the test people."""
    import json

    return json.loads((Path(reports_dir) / "metrics" / IDENTITY_METRICS).read_text())


def identity_instrument_table(instrument: dict) -> pd.DataFrame:
    """Per judge (the in-domain encoder, dlib): verification AUC, closed-set top-1 [95 % CI over
    people], the genuine and impostor similarity means, and whether the goals are met."""
    rows = {}
    for name, entry in (("in-domain encoder", instrument), ("dlib", instrument["dlib"])):
        rows[name] = {
            "verification AUC": round(entry["verification_auc"], 4),
            "top-1 [95 % CI]": f"{entry['top1']:.3f} [{entry['top1_ci_low']:.3f}, "
            f"{entry['top1_ci_high']:.3f}]",
            "genuine mean": round(entry["genuine_mean"], 3),
            "impostor mean": round(entry["impostor_mean"], 3),
            "goals met": entry["goals_met"],
        }
    return pd.DataFrame(rows).T


def identity_instrument_figure(instrument: dict, figures_dir):
    """Genuine (same person) and impostor (different people) similarity distributions of the
    test people's frames, per judge: how far apart the instrument holds people."""
    import matplotlib.pyplot as plt

    from paincontrol_lib.figures import colour

    judges = (("in-domain encoder", instrument), ("dlib", instrument["dlib"]))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, (name, entry) in zip(axes, judges, strict=True):
        edges = np.asarray(entry["histogram"]["edges"])
        for kind, tone in (("impostor", colour(8)), ("genuine", colour(9))):
            counts = np.asarray(entry["histogram"][kind], float)
            ax.stairs(counts / max(counts.sum(), 1), edges, fill=True, alpha=0.6, color=tone,
                      label=f"{kind} pairs")  # fmt: skip
        ax.set(title=f"{name}: verification AUC {entry['verification_auc']:.3f}",
               xlabel="cosine similarity of two test frames", ylabel="share of pairs")  # fmt: skip
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "eval_identity_instrument.png")
    return fig


# The rows of the method table a notebook shows (the whole table: reports/plots/eval_methods.csv)
SHOWN_METRICS = ("detection_rate", "error_AU04", "error_AU43", "error_PSPI", "error_vs_exact_AU04",
                 "error_vs_exact_AU43", "error_vs_exact_PSPI", "identity_similarity",
                 "identity_top1_gallery", "target_over_source", "identity_similarity_dlib",
                 "target_over_source_dlib", "nme", "nme_to_exact", "ssim_to_exact",
                 "appearance_error")  # fmt: skip
# The comparisons a notebook shows (all of them: reports/plots/eval_tests.csv)
SHOWN_TEST_METRICS = ("pspi_mae", "identity_similarity", "au04_error_vs_exact",
                      "au43_error_vs_exact")  # fmt: skip


def shown_metrics(table: pd.DataFrame) -> np.ndarray:
    """Rows of :func:`method_table` in :data:`SHOWN_METRICS` (marks after the name ignored)."""
    return table.index.str.split(" ").str[0].isin(SHOWN_METRICS)


def shown_tests(table: pd.DataFrame) -> np.ndarray:
    """Rows of :func:`tests_table` whose endpoint is in :data:`SHOWN_TEST_METRICS`."""
    return table.index.get_level_values("metric").isin(SHOWN_TEST_METRICS)


def motion_table(result: EvaluateResult) -> pd.DataFrame:
    """``eval.json: motion_following`` per method (its label) and for the exact answers: how
    well each sequence's expression follows the source's frame-to-frame motion."""
    labels = result.metrics["labels"]
    rows = {
        labels.get(m, m.replace("_", " ")): v for m, v in result.metrics["motion_following"].items()
    }
    return pd.DataFrame(rows).T.round(3)


def method_table(result: EvaluateResult) -> pd.DataFrame:
    """Metric x method: mean [95 % two-way cluster interval]; AUs whose reader misses its goals
    are marked."""
    summary = result.summary
    unreliable = set(result.metrics["au_estimator"]["unreliable_aus"])

    def cell(row):
        if not np.isfinite(row["lo"]):
            return f"{row['mean']:.3f}"
        return f"{row['mean']:.3f} [{row['lo']:.3f}, {row['hi']:.3f}]"

    shown = summary.assign(text=summary.apply(cell, axis=1))
    missed = " (reader misses its goals)"
    shown["metric"] = shown["metric"].map(
        lambda m: m + (missed if m.removeprefix("error_") in unreliable else "")
    )
    return shown.pivot(index="metric", columns="method", values="text")


def estimator_table(result: EvaluateResult) -> pd.DataFrame:
    """Per AU on test people: each reader's ICC(2,1) [95 % CI over people] on clean and degraded
    crops and its error on the exact answers of the evaluation's requests; the reader used."""
    report = result.estimator
    if "readers" not in report:
        return pd.DataFrame({"backend": report["backend_per_au"]}).assign(reason=report["reason"])

    def icc(entry):
        if entry["icc_a1"] is None:
            return "n/a"
        if entry["icc_a1_ci_low"] is None:
            return f"{entry['icc_a1']:.2f}"
        return (
            f"{entry['icc_a1']:.2f} [{entry['icc_a1_ci_low']:.2f}, {entry['icc_a1_ci_high']:.2f}]"
        )

    floors = report.get("exact_answer_error", {}).get("by_reader", {})
    rows = {}
    for au in (*PAIN_AUS, "PSPI"):
        row = {}
        for name, reader in report["readers"].items():
            for k in ("clean", "degraded"):
                row[f"{name} {k} ICC(2,1)"] = icc(reader["test"][k][au])
            row[f"{name} exact-answer error"] = floors.get(name, {}).get(au, {}).get("mean")
        rows[au] = row | {"used": report["backend_per_au"].get(au, "derived")}
    return pd.DataFrame(rows).T


def au_claim_table(result: EvaluateResult) -> pd.DataFrame:
    """Per method: AU4 and AU43's excess error (over the reader's error on the exact answer, in
    standard deviations of the requests) minus the other AUs', beyond the reader's noise [95 %
    CI], and the AUs ranked hardest first (``eval.json: au_claim``)."""
    claim = result.metrics["au_claim"]
    rows = {}
    for method, entry in claim["methods"].items():
        test = entry["hard_minus_rest"]
        rows[method] = {
            "AU4+AU43 minus rest": f"{test['estimate']:.3f} [{test['ci_low']:.3f}, "
            f"{test['ci_high']:.3f}]",
            "hardest first": " > ".join(entry["ranking"]),
        }
    return pd.DataFrame(rows).T


def slopes_table(result: EvaluateResult) -> pd.DataFrame:
    """Per method: slope of PSPI (and each pain AU) read against asked [95 % CI over target
    people]; the exact answers' row is what a perfect method gets."""

    def cell(entry):
        if entry["estimate"] is None:
            return "n/a"
        if entry["ci_low"] is None:
            return f"{entry['estimate']:.2f}"
        return f"{entry['estimate']:.2f} [{entry['ci_low']:.2f}, {entry['ci_high']:.2f}]"

    rows = {}
    for method, entry in result.metrics["methods"].items():
        pspi_slope = {"estimate": entry["pspi_slope"], "ci_low": entry["pspi_slope_ci_low"],
                      "ci_high": entry["pspi_slope_ci_high"]}  # fmt: skip
        rows[method] = {"PSPI": cell(pspi_slope)} | {
            au: cell(v) for au, v in entry["au_slopes"].items()
        }
    exact = result.metrics["transfer_slopes"]["exact_answer"]
    if exact:
        rows["exact answer"] = {au: cell(exact[au]) for au in ("PSPI", *PAIN_AUS)}
    return pd.DataFrame(rows).T


_HARD_AUS = ("AU04", "AU43")  # called out (starred) in the AU figure
_FLOOR = "AU reader on the exact answer"  # the error floor's legend entry


def _labeller(result: EvaluateResult):
    """method -> what ran (stage 03's manifest names each output's start and steps run)."""
    labels = method_labels(result.manifest)
    return lambda method: labels.get(method, METHOD_LABELS.get(method, method))


def _in_order(methods) -> list[str]:
    """``methods`` in :data:`METHODS`' order, any others after them."""
    return [m for m in METHODS if m in methods] + sorted(set(methods) - set(METHODS))


def _method_palette(methods, label) -> dict:
    """Readable method label -> colour: each method keeps its colour across figures (its place
    in :data:`METHODS`); anything else is grey."""
    from paincontrol_lib.figures import colour

    return {label(m): colour(METHODS.index(m) if m in METHODS else 7) for m in methods}


def _method_markers(methods, label) -> dict:
    """Readable method label -> marker, fixed per method like its colour."""
    return {label(m): "osD^vPX"[METHODS.index(m) if m in METHODS else 6] for m in methods}


def _wrapped(label: str, width: int = 13) -> str:
    """``label`` in short lines for a crowded axis, a bracketed note on a line of its own."""
    import textwrap

    head, _, note = label.partition(" (")
    return "\n".join(textwrap.wrap(head, width) + ([f"({note}"] if note else []))


def _au_label(au: str, unreliable: set) -> str:
    star = "*" if au in _HARD_AUS else ""
    note = "\n(reader misses\nits goals)" if au in unreliable else ""
    return f"AU{int(au[2:])}{star}\n{AU_DESCRIPTIONS.get(au, au)}{note}"


def au_error_figure(result: EvaluateResult, figures_dir):
    """Per AU and method: |output - exact answer| as read by the same estimator (without exact
    answers: |estimated - requested|), and the estimator's own error on the exact answers
    (AU4 and AU43 starred)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from paincontrol_lib.figures import colour

    unreliable = set(result.metrics["au_estimator"]["unreliable_aus"])
    scores = result.scores
    prefix = "error_vs_exact_" if "error_vs_exact_AU04" in scores else "error_"
    columns = [f"error_{a}" for a in PAIN_AUS]
    # only the prefix's columns: with exact answers, error_* (vs requested) must not mix in
    errors = scores[["method", *(f"{prefix}{a}" for a in PAIN_AUS)]].set_axis(
        ["method", *columns], axis=1
    )
    methods, label = _in_order(set(errors["method"])), _labeller(result)
    errors = errors.assign(method=errors["method"].map(label))
    order = [label(m) for m in methods]
    palette = _method_palette(methods, label)
    if "estimator_error_AU04" in scores:
        floor = scores.drop_duplicates(["target", *(f"requested_{a}" for a in PAIN_AUS)])
        floor = floor[[f"estimator_error_{a}" for a in PAIN_AUS]].set_axis(columns, axis=1)
        errors = pd.concat([errors, floor.assign(method=_FLOOR)], ignore_index=True)
        order.append(_FLOOR)
        palette[_FLOOR] = colour(7)
    long = errors.melt(id_vars=["method"], value_vars=columns, var_name="au", value_name="error")
    long["au"] = long["au"].map({f"error_{a}": _au_label(a, unreliable) for a in PAIN_AUS})
    fig, ax = plt.subplots(figsize=(10, 3.8))
    sns.barplot(long, x="au", y="error", hue="method", hue_order=order, palette=palette,
                errorbar=("ci", 95), n_boot=500, seed=0, err_kws={"linewidth": 1},
                ax=ax)  # fmt: skip
    exact = prefix == "error_vs_exact_"
    ax.set(
        xlabel="",
        ylabel="absolute error (FACS intensity: 0-5, AU43 0-1)",
        title="AU error: output vs exact answer" if exact else "AU error: read vs asked for",
    )
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(title="* hard AUs (AU4, AU43)\nlines: 95 % CI", title_fontsize=8, fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False,
              alignment="left")  # fmt: skip
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "eval_au_error.png")
    return fig


def identity_pspi_figure(result: EvaluateResult, figures_dir):
    """Left: similarity to the target and to the source; right: PSPI asked for vs estimated."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from paincontrol_lib.figures import colour

    scores = result.scores
    what = {
        "identity_similarity": "target's unseen frame",
        "source_leakage": "source's frame (leakage)",
    }
    ident = (
        scores.melt(id_vars=["method"], value_vars=list(what), var_name="to", value_name="sim")
        .dropna()
        .assign(to=lambda d: d["to"].map(what))
    )
    present, label = set(ident["method"]), _labeller(result)
    wrap = {m: _wrapped(label(m)) for m in present}
    ident["method"] = ident["method"].map(wrap)
    fig, axes = plt.subplots(1, 2, figsize=(14.5, 4.6), width_ratios=(1.7, 1))
    ax = axes[0]
    if len(ident):
        sns.boxplot(ident, x="method", y="sim", hue="to", hue_order=list(what.values()),
                    order=[wrap[m] for m in _in_order(present)], palette=[colour(9), colour(8)],
                    fliersize=2, ax=ax)  # fmt: skip
        bounds = {"identity_ceiling": ("--", "the exact answer (ceiling)"),
                  "identity_floor": (":", "another test person (floor)")}  # fmt: skip
        for key, (style, what) in bounds.items():
            level = result.metrics.get(key, {}).get("mean")
            if level is not None:
                ax.axhline(level, color=colour(7), ls=style, lw=1, label=what)
        ax.legend(title="similarity to", title_fontsize=8, fontsize=8, ncols=3, frameon=False,
                  loc="upper center", bbox_to_anchor=(0.5, -0.2))  # fmt: skip
    else:
        ax.text(0.5, 0.5, "no output had a detectable face", ha="center", transform=ax.transAxes)
    ax.set(xlabel="", ylabel="face similarity (cosine, in-domain identity encoder)",
           title="Identity kept and source leaked")  # fmt: skip
    ax.tick_params(axis="x", labelsize=8)
    ax = axes[1]
    shown = scores.dropna(subset=["requested_PSPI", "estimated_PSPI"])
    methods = _in_order(set(shown["method"]))
    # One line per method through the mean reading at each PSPI asked for (whole points), not
    # a cloud of every output: 95 % intervals over the outputs at that level.
    shown = shown.assign(method=shown["method"].map(label),
                         asked=shown["requested_PSPI"].round())  # fmt: skip
    sns.lineplot(shown, x="asked", y="estimated_PSPI", hue="method", style="method",
                 hue_order=[label(m) for m in methods], style_order=[label(m) for m in methods],
                 palette=_method_palette(methods, label), markers=_method_markers(methods, label),
                 dashes=False, errorbar=("ci", 95), n_boot=200, seed=0, err_style="bars",
                 markersize=5, ax=ax)  # fmt: skip
    ax.plot([0, 16], [0, 16], ls="--", color=colour(7), lw=0.8, label="read = asked for")
    ax.set(xlabel="PSPI asked for (0-16, whole points)",
           ylabel="PSPI read from the output (mean, 95 % CI)", xlim=(-0.5, 16.5),
           ylim=(-0.5, 16.5), title="Pain intensity: asked for vs read")  # fmt: skip
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "eval_identity_pspi.png")
    return fig


def extremes_figure(result: EvaluateResult, transfer_dir, figures_dir):
    """The best and worst 4 PainControl outputs by SSIM, each beside its exact answer."""
    import matplotlib.pyplot as plt

    from paincontrol_lib.figures import image_grid

    scores = result.scores
    ours = scores.head(0)
    if "ssim_to_exact" in scores:
        ours = scores[(scores["method"] == "paincontrol") & scores["ssim_to_exact"].notna()]
    if len(ours) and result.exact is not None:
        asked = requested_aus(result.manifest, result.table)
        ranked = ours.sort_values("ssim_to_exact", ascending=False)
        n = min(4, len(ranked) // 2) or 1
        picks = [("best", k + 1, i) for k, i in enumerate(ranked.index[:n])]
        picks += [("worst", n - k, i) for k, i in enumerate(ranked.index[len(ranked) - n :])
                  if i not in ranked.index[:n]]  # fmt: skip
        outputs, answers, columns = [], [], []
        for which, rank, i in picks:
            row = scores.loc[i]
            image = load_image(Path(transfer_dir) / row["path"])
            wanted = asked.loc[i, list(PAIN_AUS)].to_dict()
            crop, _ = result.exact(row["target"], wanted, image.shape[0])
            outputs.append(image)
            answers.append(crop)
            pair = f"{row['source']} -> {row['target']}"
            if row["mode"] == "explicit":  # no source: a PSPI level asked for directly
                pair = f"PSPI {row['requested_PSPI']:.0f} asked, {row['target']}"
            columns.append(f"{which} {rank}: SSIM {row['ssim_to_exact']:.2f}\n{pair}")
        title = "PainControl's best and worst outputs by SSIM to the exact answer"
        rows = ["PainControl\noutput", "exact answer\n(renderer)"]
        fig = image_grid([outputs, answers], rows, columns, cell_inches=1.3, title=title)
    else:  # real data: no renderer, no exact answers
        fig, ax = plt.subplots(figsize=(6, 1))
        ax.text(0.5, 0.5, "no exact answers on this dataset (SynthPain only)", ha="center")
        ax.axis("off")
    save_figure(fig, Path(figures_dir) / "eval_extremes.png")
    return fig


def tests_table(result: EvaluateResult) -> pd.DataFrame:
    """eval.json's ``tests``: each declared comparison (method minus baseline), 95 % CI, p,
    its Holm family and Holm-adjusted p."""
    rows = [
        {"metric": metric, "comparison": name, **test}
        for metric, tests in result.metrics["tests"].items()
        for name, test in tests.items()
    ]
    return pd.DataFrame(rows, columns=["metric", "comparison"] if not rows else None).set_index(
        ["metric", "comparison"]
    )


def realism_table(result: EvaluateResult) -> pd.DataFrame:
    """Per method (and the exact answers fed as one: the known floor) its realism metrics."""
    realism = result.metrics["realism"]
    if "reason" in realism:
        return pd.DataFrame({"reason": [realism["reason"]]})
    return pd.DataFrame({m: v for m, v in realism.items() if m not in ("features", "reference")}).T
