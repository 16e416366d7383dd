"""Stage 02 (notebook ``02_train_controlnet``): fine-tune the shipped checkpoint (for
``train.max_steps``, 0 by default: the shipped weights as they are), choose the sampler on
validation people, optionally train our recipe and the plain diffusers-example recipe from
scratch for the same number of steps, and score every run on held-out identities (final models
and along training).

Every run's budget is ``train.max_steps`` optimisation steps, so the same commit makes the same
model on any machine; ``train.max_minutes`` is only a safety cap, and a run it cuts short says
so on the console and in ``train.json`` (``stopped_by: "minutes"``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.io import PhaseClock, save_figure, write_json
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.model.heldout import (
    IdentityScorer,
    evaluate_model,
    ground_truth_images,
    identity_photo_images,
    identity_photos,
    pick_rows,
    score_images,
)
from paincontrol_lib.model.presets import PainControlModel
from paincontrol_lib.model.sampler import SamplerConfig
from paincontrol_lib.model.train import (
    checkpoint_folders,
    load_training_examples,
    main,
    parse_args,
)
from paincontrol_lib.model.tuning import (
    ExactAnswers,
    require_split,
    summarise,
    tune_sampler,
    tuning_rows,
)

METRICS = "train.json"
TUNING = "tuning.json"

# Runs of the stage: name -> (recipe, starts from the shipped checkpoint?)
RUNS = {
    "ours": ("ours", True),
    "scratch": ("ours", False),
    "diffusers_baseline": ("diffusers_baseline", False),
}


def train_args(landmarks_dir, output_dir, recipe: str, train: dict, seed: int,
               init_from: str | None = None):  # fmt: skip
    """One run's command line for ``model/train.py``'s own parser (the stage and the command
    line are validated alike): ``train.max_steps`` steps, ``train.max_minutes`` as a cap,
    ``train.threads`` torch threads."""
    rate = train["finetune_learning_rate"] if init_from else train["learning_rate"]
    argv = {
        "--landmarks_dir": landmarks_dir, "--output_dir": output_dir, "--recipe": recipe,
        "--max_steps": train["max_steps"], "--max_minutes": train["max_minutes"], "--seed": seed,
        "--threads": train["threads"], "--train_batch_size": train["batch_size"],
        "--learning_rate": rate, "--resolution": train["resolution"],
        "--checkpointing_steps": train["checkpointing_steps"],
        "--checkpoints_total_limit": train["checkpoints_total_limit"],
        "--validation_steps": train["validation_steps"], "--resume_from_checkpoint": "latest",
        "--identity_cache_dir": Path(output_dir).parent / "identity_cache",
        "--preset": train["preset"], "--pretrained": train["pretrained"] or None,
        "--controlnet": train["controlnet_init"] or None,
        "--identity_backend": train["identity_backend"],
        # "fp32", not accelerate's "no": a bare `no` reads as false in YAML 1.1
        "--mixed_precision": {"fp32": "no"}.get(train["precision"], train["precision"]),
    }  # fmt: skip
    if init_from:
        argv["--init_from"] = init_from
    flat = [str(part) for pair in argv.items() if pair[1] is not None for part in pair]
    channels = [str(c) for c in train["block_out_channels"]]
    return parse_args([*flat, "--no-progress", "--block_out_channels", *channels])


def checkpoint_curve(
    output_dir: Path, examples, rows, sampler: SamplerConfig, seed: int, start=None, identity=None
) -> pd.DataFrame:
    """Held-out scores of every kept checkpoint against the steps it had trained (``start``: the
    model the run began from, scored at step 0); ``train_minutes`` is this machine's time;
    ``identity``: the :class:`IdentityScorer` (made once, not per checkpoint)."""
    points = [(0, 0.0, start)] if start is not None else []
    for ckpt in checkpoint_folders(output_dir):
        state = json.loads((ckpt / "training_state.json").read_text())
        points.append((state["step"], state["seconds"] / 60, ckpt / "model"))
    records = []
    for step, minutes, path in points:
        model = PainControlModel.from_pretrained(path)
        scores, _ = evaluate_model(model, examples, rows, sampler, seed=seed, identity=identity)
        records.append(
            {
                "step": step,
                "train_minutes": minutes,
                "nme": scores["nme"],
                "detection_rate": scores["detection_rate"],
            }
        )
    return pd.DataFrame(records)


def steps_to_reach(curve: pd.DataFrame, target: float | None) -> int | None:
    """First checkpoint step at which a curve's held-out NME is at or below ``target``."""
    if target is None or curve.empty:
        return None
    hit = curve[curve["nme"].notna() & (curve["nme"] <= target)]
    return int(hit["step"].min()) if len(hit) else None


def _summary(scores: dict, result: dict) -> dict:
    return {
        "steps": result["steps"],
        "stopped_by": result["stopped_by"],
        "train_minutes": result["train_minutes"],
        "heldout_detection_rate": scores["detection_rate"],
        "heldout_nme": scores["nme"],
        "heldout_nme_shuffled": scores["nme_shuffled"],
        "heldout_tracking_corr": scores["tracking_corr"],
        "heldout_tracking_slope": scores["tracking_slope"],
        "heldout_identity_top1": scores["identity_top1"],
        "heldout_identity_top1_other_reference": scores.get("identity_top1_other_reference"),
        "heldout_identity_top1_identity_photo": scores.get("identity_top1_identity_photo"),
        "heldout_identity_top1_dlib": scores.get("identity_top1_dlib"),
    }


def _provenance(init_from: str | None) -> dict | None:
    path = Path(init_from or "") / "PROVENANCE.json"
    if not init_from or not path.is_file():
        return None
    record = json.loads(path.read_text())
    runs = record["training_runs"]
    out = {
        "path": str(init_from),
        "code_revision": record["code_revision"],
        "devices": sorted({r["device"] for r in runs}),
        "steps": sum(r["steps"] for r in runs),
        "train_minutes": sum(r["train_minutes"] for r in runs),
        "n_identities": record["prepared"]["n_train_subjects"],
    }
    adapter = record.get("identity_adapter")
    if adapter:  # its learning curve: identity on the adapter's held-out people by steps
        out["identity_adapter"] = {
            "identity_backend": adapter["training"]["identity_backend"],
            "steps": adapter["training"]["steps_run"],
            "train_minutes": adapter["training"]["train_minutes"],
            "device": adapter["training"]["device"],
            "conditioning_encoder_seed": adapter["conditioning_encoder"]["seed"],
            "curve_sampler": adapter["curve_sampler"],
            "curve": adapter["curve"],
        }
    return out


@dataclass
class TrainResult:
    metrics: dict  # reports/metrics/train.json
    curves: dict[str, pd.DataFrame]  # held-out NME along training, per run
    rows: np.ndarray  # the held-out rows sampled
    samples: dict[str, np.ndarray]  # per run (and ``noise_start``): the samples of ``rows``
    held_out: object  # the held-out Examples
    tuning: dict  # reports/metrics/tuning.json: the sampler grid on validation people


def run(
    base: dict,
    train: dict,
    evaluate_training: dict,
    sampler: dict,
    tune: dict,
    landmarks_dir,
    models_dir,
    reports_dir,
) -> TrainResult:
    """Train every run, choose the sampler on validation people (``tuning.json``), score every
    run on test people and write ``train.json``.

    Top-level metrics are the default run (``ours``: the shipped checkpoint fine-tuned for
    ``max_steps``, or from scratch when ``init_from`` is empty) drawn with PainControl's sampler
    (from noise) chosen on validation people, as transfer draws. ``noise_start`` is the same
    model drawn by :meth:`SamplerConfig.model_alone` (pure noise, identity scale 1), like
    ``from_scratch`` and ``reference_recipe`` (our recipe and the plain diffusers-example recipe
    from random weights for the same steps, when ``compare_from_scratch`` is on), so that race
    measures training, not sampling. Identity is scored against a frame of each person that no
    sampler saw, by the in-domain identity encoder (``identity.SynthFaceIdentity``), dlib beside
    as a second judge."""
    started, clock = time.perf_counter(), PhaseClock()
    seed, models_dir = base["seed"], Path(models_dir)
    init_from = train.get("init_from") or None
    if init_from and not Path(init_from).is_dir():
        raise FileNotFoundError(f"train.init_from={init_from}: no such checkpoint folder")
    names = ["ours"]
    if train["compare_from_scratch"]:
        names += ["scratch", "diffusers_baseline"] if init_from else ["diffusers_baseline"]
    results = {}
    for name in names:
        recipe, pretrained = RUNS[name]
        args = train_args(
            landmarks_dir, models_dir / name, recipe, train, seed, init_from if pretrained else None
        )
        with clock(f"train_{name}"):
            results[name] = main(args)
    ours = PainControlModel.from_pretrained(models_dir / "ours" / "final")
    validation = load_training_examples(args, split="val")
    encoder = {"model_dir": evaluate_training["identity_encoder"]}
    mesher = FaceMesher()
    with clock("tune_sampler"):
        from paincontrol_lib.au_reading.pixels import PixelAU

        exact = ExactAnswers(validation, tuning_rows(validation, tune, seed),
                             IdentityScorer.of(validation, **encoder),
                             PixelAU.load(tune["au_reader"]), mesher)  # fmt: skip
        tuning, per_row = tune_sampler(ours, validation, SamplerConfig.from_params(sampler),
                                       tune, seed, exact)  # fmt: skip
    write_json(Path(reports_dir) / "metrics" / TUNING, tuning)
    config = SamplerConfig.from_params(tuning["paincontrol"])
    effect = None
    if init_from and results["ours"]["steps"] > 0:
        with clock("finetune_effect"):
            chosen = tuning["grid_rows"]["paincontrol"]
            effect = finetune_effect(init_from, validation, exact, config, per_row[chosen],
                                     tuning["grid"][chosen]["nme"], tune, seed)  # fmt: skip
    mesher.close()
    held_out = load_training_examples(args, split="test")
    require_split(held_out, "test")
    rows = pick_rows(held_out, evaluate_training["n_samples"], seed)
    # The in-domain instrument scores identity (the model is conditioned on another encoder);
    # dlib judges beside.
    judges = IdentityScorer.of(held_out, **encoder), IdentityScorer.of(held_out, "dlib")
    scores, samples, curves = _score_runs(
        names,
        models_dir,
        held_out,
        rows,
        config,
        evaluate_training["curve_samples"],
        init_from,
        seed,
        clock,
        judges,
    )
    with clock("ceilings"):
        metrics = _metrics(scores, results, curves, config, held_out, rows, init_from, judges)
    metrics["finetune_effect_val"] = effect
    metrics["phase_seconds"] = clock.seconds
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    return TrainResult(metrics, curves, rows, samples, held_out, tuning)


def finetune_effect(init_from, validation, exact: ExactAnswers, sampler: SamplerConfig,
                    final: dict, final_nme, tune: dict, seed: int) -> dict:  # fmt: skip
    """What fine-tuning changed on validation people: the shipped checkpoint (step 0) and the
    fine-tuned model drawn by PainControl's tuned sampler on the tuning rows, scored against the
    exact answers by the tuning objective; differences (final minus step 0) paired by row, with
    95 % bootstrap intervals over people."""
    start = PainControlModel.from_pretrained(init_from)
    rows = tuning_rows(validation, tune, seed)
    scorer = {"mesher": exact.mesher, "identity": exact.identity}
    scores, images = evaluate_model(start, validation, rows, sampler, seed=seed, **scorer)
    step0 = exact.closeness(images, tune["objective"])
    difference = {k: final[k] - step0[k] for k in final}
    return {
        "split": "val",
        "sampler": sampler.label,
        "step_0": summarise(step0, exact.subjects, seed) | {"nme": scores.get("nme")},
        "final": summarise(final, exact.subjects, seed) | {"nme": final_nme},
        "final_minus_step_0": summarise(difference, exact.subjects, seed),
    }


def identity_adapter_curve(result: TrainResult) -> pd.DataFrame | None:
    """The starting checkpoint's identity-adapter learning curve (``train.json: init_from``):
    identity top-1 on the adapter's held-out people by steps, None when it has none."""
    adapter = (result.metrics.get("init_from") or {}).get("identity_adapter")
    return pd.DataFrame(adapter["curve"]).set_index("step") if adapter else None


def _score_runs(names, models_dir, held_out, rows, sampler, n_curve, init_from, seed, clock,
                judges):  # fmt: skip
    """Held-out scores and samples of each run's final model (``ours`` with the pipeline's
    sampler and as the model alone, the others as the model alone), and NME curves. ``judges``:
    the identity scorer and the second judge (``ours`` only)."""
    alone = sampler.model_alone()
    identity, judge = judges
    scores, samples, curves = {}, {}, {}
    for name in names:
        model = PainControlModel.from_pretrained(models_dir / name / "final")
        drawn_by = sampler if name == "ours" else alone
        with clock("score_final_models"):
            second = judge if name == "ours" else None
            scores[name], samples[name] = evaluate_model(
                model, held_out, rows, drawn_by, seed=seed, identity=identity, judge=second
            )
            if name == "ours":
                scores["noise_start"], samples["noise_start"] = evaluate_model(
                    model, held_out, rows, alone, seed=seed, identity=identity, judge=judge
                )
        start = init_from if RUNS[name][1] else None
        with clock("score_checkpoints"):
            curves[name] = checkpoint_curve(
                models_dir / name, held_out, rows[:n_curve], alone, seed, start, identity
            )
    return scores, samples, curves


def _metrics(scores, results, curves, sampler, held_out, rows, init_from, judges) -> dict:
    identity, judge = judges
    ground_truth = score_images(
        ground_truth_images(held_out, rows), held_out, rows, identity=identity
    )
    # "Output = the identity photo": a perfect copy, scored as every method is.
    copy = score_images(
        identity_photo_images(held_out, rows), held_out, rows, identity=identity, judge=judge
    )
    metrics = _summary(scores["ours"], results["ours"]) | {
        "heldout_split": "test",
        "identity_scoring": "unseen_frame",
        "identity_scorer": identity.label,
        "identity_judge": judge.label,
        "sampler": sampler.as_dict(),
        "sampler_chosen_on": "val",
        "noise_start": _summary(scores["noise_start"], results["ours"]),
        "init_from": _provenance(init_from),
        # Does the text reach the model whole? (words split, prompts cut at the token budget)
        "text_conditioning": results["ours"]["text_conditioning"],
        "identity_top1_ceiling": copy["identity_top1"],
        "identity_top1_other_reference_ceiling": copy["identity_top1_other_reference"],
        "identity_top1_ceiling_dlib": copy.get("identity_top1_dlib"),
        "ground_truth_ceiling": ground_truth,
        "n_heldout_samples": scores["ours"]["n_samples"],
        "n_heldout_identities": scores["ours"].get("n_identities"),
    }
    if "scratch" in scores:
        metrics["from_scratch"] = _summary(scores["scratch"], results["scratch"])
    if "diffusers_baseline" in scores:
        # Kept under its historical key: the plain diffusers-example recipe.
        baseline = results["diffusers_baseline"]
        metrics["reference_recipe"] = _summary(scores["diffusers_baseline"], baseline)
        metrics["reference_steps"] = baseline["steps"]
        final = curves["diffusers_baseline"]["nme"].dropna()
        target = float(final.iloc[-1]) if len(final) else None
        # Our recipe against the baseline from the same (random) start: a fair race.
        ours_scratch = curves["scratch" if "scratch" in curves else "ours"]
        metrics["steps_to_reference_nme"] = steps_to_reach(ours_scratch, target)
    return metrics


SAMPLE_COLUMNS = {  # sample runs as a reader should read them
    "ours": "PainControl\n(tuned sampler)",
    "noise_start": "model alone\n(id. scale 1)",
    "scratch": "our recipe,\nfrom scratch",
    "diffusers_baseline": "diffusers example\nrecipe, from scratch",
}


RUN_LABELS = {  # training runs in the curves' legends
    "ours": "ours",
    "scratch": "our recipe, from scratch",
    "diffusers_baseline": "diffusers example recipe, from scratch",
}


def heldout_grid(result: TrainResult, n: int = 8) -> tuple[list[list[np.ndarray]], list[str]]:
    """Rows of control | identity photo | ground truth | sample of each run, and the person of
    each row: ``n`` scored rows spread over the PSPI range (most held-out frames are neutral;
    rows evenly spaced in PSPI order show the expressions too), one per person where possible."""
    held_out, rows = result.held_out, result.rows
    table = held_out.table.iloc[rows].reset_index(drop=True)
    pspi = table["PSPI"].fillna(0).to_numpy() if "PSPI" in table else np.zeros(len(rows))
    best = table.assign(pspi=pspi, j=np.arange(len(table)))  # each person's strongest row
    best = best.sort_values(["pspi", "j"], ascending=[False, True]).drop_duplicates("subject")
    ranked = best["j"].tolist()
    spaced = np.linspace(0, len(ranked) - 1, min(n, len(ranked))).round().astype(int)
    pick = [ranked[k] for k in spaced]
    cells, people = [], []
    for j in pick:
        i = rows[j]
        person = held_out.table["subject"].iloc[i]
        photo = identity_photos(held_out, [person])[0]
        cells.append([
            (held_out.controls[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8),
            ((photo.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8),
            ground_truth_images(held_out, np.array([i]))[0],
        ] + [images[j] for images in result.samples.values()])  # fmt: skip
        pspi = held_out.table["PSPI"].iloc[i] if "PSPI" in held_out.table else None
        people.append(person if pspi is None or pspi != pspi else f"{person}, PSPI {pspi:.0f}")
    return cells, people


def heldout_grid_figure(result: TrainResult, figures_dir):
    from paincontrol_lib.figures import image_grid

    cells, people = heldout_grid(result)
    columns = ["control (mesh)", "identity photo", "ground truth",
               *(SAMPLE_COLUMNS.get(run, run) for run in result.samples)]  # fmt: skip
    fig = image_grid(cells, people, columns, cell_inches=1.0,
                     title="Test people: the sample takes its expression from the control "
                     "and its identity from the photo")  # fmt: skip
    save_figure(fig, Path(figures_dir) / "train_heldout_grid.png")
    return fig


def curves_figure(result: TrainResult, models_dir, figures_dir):
    """Training loss and held-out NME against training steps, one line per run."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for run_name, curve in result.curves.items():
        log = pd.read_csv(Path(models_dir) / run_name / "logs" / "loss.csv")
        smooth = log["loss"].rolling(20, min_periods=1).mean()
        label = RUN_LABELS.get(run_name, run_name)
        if run_name == "ours" and result.metrics.get("init_from"):
            label += ", fine-tuned from the shipped checkpoint"
        axes[0].plot(log["step"], smooth, label=label)
        axes[1].plot(curve["step"], curve["nme"], "o-", label=label)
    axes[0].set(xlabel="training step", ylabel="training loss (rolling mean of 20 steps)",
                yscale="log", title="Training loss")  # fmt: skip
    scored = [pd.to_numeric(c["nme"], errors="coerce") for c in result.curves.values() if len(c)]
    top = max([float(v.max()) for v in scored if v.notna().any()] + [0.01])  # None: unscored
    axes[1].set(xlabel="training step", ylabel="NME of the sample's mesh to the control",
                ylim=(0, 1.15 * top), title="Held-out landmark error (axis from 0)")  # fmt: skip
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "train_curves.png")
    return fig


def curves_table(result: TrainResult) -> pd.DataFrame:
    return pd.concat(result.curves, names=["run"]).round(4)


def tuning_table(result: TrainResult) -> pd.DataFrame:
    """Every sampler setting tried on validation people with its scores."""
    rows = [{**row["settings"], **{k: v for k, v in row.items() if k not in ("settings",
             "tracking_slope")}} for row in result.tuning["grid"]]  # fmt: skip
    return pd.DataFrame(rows)
