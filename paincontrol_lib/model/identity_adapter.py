"""How the shipped checkpoint's identity path is made (``make identity-adapter``).

The generator was first shipped reading dlib embeddings, which barely separate SynthPain people
(a stranger 0.92 cosine, the same person 0.97), so its identity tokens carried little and the
paper's sampler, from noise, lost the person. This gives it tokens from an in-domain encoder::

    python -m paincontrol_lib.model.identity_encoder --seed 31 ... \\
        --out pretrained/identity-encoder-conditioning          # 1 (the make target's first line)
    python -m paincontrol_lib.model.identity_adapter            # 2-5

1. The conditioning encoder: the identity encoder's recipe (``model/identity_encoder.py``) on
   people of seed 31, in ``pretrained/identity-encoder-conditioning/``. The instrument that
   scores identity (``pretrained/identity-encoder/``, seed 29) is never given to the model, so
   the model is scored by an encoder it was not conditioned on (and by dlib beside).
2. The people: the generator's own pretraining population (``pretrain.DEFAULT``: seed 1, 1000
   people, 4 % held out), rendered and meshed into ``--work``, reused by a rerun.
3. Training: a fresh identity adapter (``train --trainable identity_adapter``: the image
   projection and the identity key/value weights of every cross-attention, 0.15 M weights) on
   the frozen generator, the references embedded by the conditioning encoder, ``--steps``
   optimisation steps (the budget), a checkpoint every ``--curve_every``. The rest of the
   checkpoint is not changed, so rerunning on the published folder rebuilds the same adapter.
4. The learning curve: the untrained adapter (step 0) and every checkpoint sample held-out
   people from noise over the full schedule (the paper's sampler, ``SamplerConfig()``), scored by
   the instrument (top-1 among all held-out people's unseen frames; dlib beside) and by NME.
5. Publish: the final (EMA) model replaces ``--out``; ``PROVENANCE.json`` keeps the generator's
   record and adds ``identity_adapter`` (commands, data, steps, minutes, the curve).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from paincontrol_lib.identity import CONDITIONING_DIR, ENCODER_DIR

BACKEND = "synthface-conditioning"
ENCODER_COMMAND = (
    "python -m paincontrol_lib.model.identity_encoder --seed 31 --n_identities 600 --n_monitor 60 "
    "--frames 6 --steps 800 --out pretrained/identity-encoder-conditioning "
    "--work build/identity-encoder-conditioning"
)
PEOPLE = dict(seed=1, identities=1000, sequences=2, frames=4, test_fraction=0.04)
TRAINING = dict(steps=2000, batch_size=32, learning_rate=1e-3, warmup=100, ema_decay=0.99)


def training_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """The ``model/train.py`` arguments of the adapter run (its own parser validates them)."""
    from paincontrol_lib.model.train import parse_args

    work = Path(args.work)
    return parse_args([
        "--landmarks_dir", str(work / "landmarks"), "--output_dir", str(work / "run"),
        "--init_from", args.generator, "--trainable", "identity_adapter",
        "--identity_backend", BACKEND, "--identity_cache_dir", str(work / "identity_cache"),
        "--max_steps", str(args.steps), "--train_batch_size", str(args.batch_size),
        "--learning_rate", str(args.learning_rate), "--lr_warmup_steps", str(args.warmup),
        "--ema_decay", str(args.ema_decay), "--checkpointing_steps", str(args.curve_every),
        "--checkpoints_total_limit", str(args.steps // args.curve_every + 1),
        "--validation_steps", "0", "--resume_from_checkpoint", "latest",
        "--threads", str(args.threads), "--seed", "0", "--no-progress",
    ])  # fmt: skip


def learning_curve(train_args: argparse.Namespace, n_rows: int, seed: int = 0) -> list[dict]:
    """Model-alone scores of the untrained adapter (step 0) and of every kept checkpoint on the
    held-out people of the adapter's data (``test`` split): identity top-1 by the instrument
    (and dlib), NME and detection, ``n_rows`` samples spread over the people."""
    from paincontrol_lib.landmarks.mesher import FaceMesher
    from paincontrol_lib.model.heldout import IdentityScorer, evaluate_model, pick_rows
    from paincontrol_lib.model.presets import PainControlModel
    from paincontrol_lib.model.sampler import SamplerConfig
    from paincontrol_lib.model.train import checkpoint_folders, load_training_examples, start_model

    examples = load_training_examples(train_args, split="test")
    rows = pick_rows(examples, n_rows, seed)
    instrument = IdentityScorer.of(examples, "synthface", model_dir=ENCODER_DIR)
    judge = IdentityScorer.of(examples, "dlib")
    points = [(0, lambda: start_model(train_args))]
    for ckpt in checkpoint_folders(Path(train_args.output_dir)):
        step = json.loads((ckpt / "training_state.json").read_text())["step"]
        points.append((step, lambda c=ckpt: PainControlModel.from_pretrained(c / "model")))
    curve, mesher = [], FaceMesher()
    try:
        for step, load in points:
            scores, _ = evaluate_model(load(), examples, rows, SamplerConfig(), seed=seed,
                                       mesher=mesher, identity=instrument, judge=judge)  # fmt: skip
            curve.append({
                "step": step,
                "identity_top1": scores["identity_top1"],
                "identity_top1_dlib": scores.get("identity_top1_dlib"),
                "nme": scores["nme"],
                "detection_rate": scores["detection_rate"],
                "n_samples": scores["n_samples"],
                "n_people": scores.get("n_identities"),
            })  # fmt: skip
            point = curve[-1]
            print(f"curve: step {step}: identity top-1 {point['identity_top1']}, dlib "
                  f"{point['identity_top1_dlib']}, NME {point['nme']}", flush=True)  # fmt: skip
    finally:
        mesher.close()
    return curve


def publish(final: Path, generator: Path, out: Path, record: dict) -> dict:
    """``final`` copied to ``out`` (atomically) with the generator's PROVENANCE.json plus
    ``identity_adapter: record``."""
    from paincontrol_lib.io import atomic_folder

    provenance = json.loads((generator / "PROVENANCE.json").read_text())
    provenance["identity_adapter"] = record
    with atomic_folder(out) as tmp:  # ``out`` stays in place until the copy is whole, so
        shutil.copytree(final, tmp, dirs_exist_ok=True)  # ``final`` may even lie inside it
        (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--generator",
        default="pretrained/tiny-synthpain",
        help="the checkpoint whose adapter is replaced (its other weights stay)",
    )
    parser.add_argument("--out", default="pretrained/tiny-synthpain")
    parser.add_argument("--work", default="build/identity-adapter", help="renders, runs")
    for name, value in TRAINING.items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    parser.add_argument("--curve_every", type=int, default=250, help="steps between checkpoints")
    parser.add_argument("--curve_rows", type=int, default=160, help="held-out samples per point")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.curve_every < 1:
        parser.error("--steps and --curve_every must be positive")
    return args


def main(argv=None) -> dict:
    from paincontrol_lib.identity import make_identity
    from paincontrol_lib.model import train
    from paincontrol_lib.model.pretrain import git_revision, render_people

    args = parse_args(argv)
    make_identity(BACKEND)  # fails first, naming the make target, when the encoder is missing
    work, started = Path(args.work), time.perf_counter()
    reused = (work / "landmarks" / "landmarks.parquet").is_file()
    if reused:
        print(f"people: reusing {work / 'landmarks'}")
    else:
        render_people(work, **PEOPLE, workers=args.workers)
    render_minutes = None if reused else (time.perf_counter() - started) / 60
    train_args = training_arguments(args)
    result = train.main(train_args)
    curve = learning_curve(train_args, args.curve_rows)
    conditioning = json.loads((CONDITIONING_DIR / "PROVENANCE.json").read_text())
    command = "python -m paincontrol_lib.model.identity_adapter " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    record = {
        "commands": [ENCODER_COMMAND, command.strip()],
        "code_revision": git_revision(),
        "conditioning_encoder": {
            k: conditioning[k]
            for k in ("seed", "n_identities", "steps", "data_hash", "minutes", "monitor")
        },
        "people": PEOPLE | {"reference_frames": train_args.references_per_subject},
        "training": {k: getattr(args, k) for k in TRAINING} | {
            "trainable": train_args.trainable,
            "identity_backend": BACKEND,
            "steps_run": result["steps"],
            "stopped_by": result["stopped_by"],
            "train_minutes": result["train_minutes"],
            "weights": result["weights"],
            "device": json.loads((Path(result["final"]) / "training.json").read_text())["device"],
            "threads": args.threads,
        },
        "people_reused": reused,  # rendered by an earlier run: their minutes are not these
        "render_minutes": render_minutes,
        "curve_sampler": "PainControl from noise, every step (SamplerConfig())",
        "curve": curve,
    }  # fmt: skip
    publish(Path(result["final"]), Path(args.generator), Path(args.out), record)
    last = curve[-1]
    print(f"identity adapter -> {args.out}: {result['steps']} steps, "
          f"{result['train_minutes']:.1f} min; held-out identity top-1 "
          f"{curve[0]['identity_top1']} at step 0 -> {last['identity_top1']}")  # fmt: skip
    return record


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
