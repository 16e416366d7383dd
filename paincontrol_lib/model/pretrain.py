"""The shipped starting checkpoint: how its training data is made and how it is published.

A from-scratch model cannot learn identity from the 48 training people of the default dataset
in ten CPU minutes, so stage 02 fine-tunes a checkpoint this project trained itself, with its
own code, on a larger SynthPain population of *other* people (another seed: none of them is any
default-profile person, held-out or not)::

    # 1. data (CPU, ~15 min): SynthPain -> MediaPipe landmarks -> dlib references -> one .npz
    python -m paincontrol_lib.model.pretrain prepare --out build/pretrain
    # 2. training (the stock training script; minutes on a GPU, hours on a CPU)
    python -m paincontrol_lib.model.train --examples build/pretrain/examples.npz \\
        --output_dir build/pretrain/run ...   # exact arguments: pretrained/*/PROVENANCE.json
    # 3. copy the final weights and write PROVENANCE.json beside them
    python -m paincontrol_lib.model.pretrain publish --run build/pretrain/run \\
        --data build/pretrain --out pretrained/tiny-synthpain
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from paincontrol_lib.io import file_digest

DEFAULT = dict(seed=1, identities=1000, sequences=2, frames=4, test_fraction=0.04, references=3)


def prepare(
    out: str | Path,
    seed: int,
    identities: int,
    sequences: int,
    frames: int,
    test_fraction: float,
    references: int,
    resolution: int = 64,
    workers: int = 2,
) -> dict:
    """Render SynthPain people of ``seed``, mesh them, embed references, pack the examples."""
    from paincontrol_lib.model.data import (
        identity_embeddings,
        prepare_examples,
        reference_rows,
        save_examples,
    )

    out = Path(out)
    started = time.perf_counter()
    table = render_people(out, seed, identities, sequences, frames, test_fraction, workers)
    refs = reference_rows(table, references, seed)
    embeddings = identity_embeddings(refs, "dlib", out / "identity_cache")
    examples = prepare_examples(table, embeddings, resolution)
    path = save_examples(examples, out / "examples.npz")
    summary = {
        "options": {"seed": seed, "identities": identities, "sequences": sequences,
                    "frames": frames, "test_fraction": test_fraction, "references": references},
        "resolution": resolution,
        "n_examples": len(examples),
        "n_train_subjects": int(examples.table.loc[examples.table["split"] == "train",
                                                   "subject"].nunique()),
        "detection_rate": float(table["detected"].mean()),
        "examples_sha256": file_digest(path),
        "examples_mb": path.stat().st_size / 1e6,
        "prepare_minutes": (time.perf_counter() - started) / 60,
    }  # fmt: skip
    (out / "prepare.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def render_people(out: str | Path, seed: int, identities: int, sequences: int, frames: int,
                  test_fraction: float, workers: int = 2):  # fmt: skip
    """SynthPain people of ``seed`` rendered into ``out/synthpain`` and meshed into
    ``out/landmarks``; their landmark table."""
    from paincontrol_lib.data.sources import load_records
    from paincontrol_lib.data.synthpain.generate import SynthPainConfig, generate
    from paincontrol_lib.landmarks.batch import build_landmark_table
    from paincontrol_lib.landmarks.table import load_landmark_table

    if seed == 0:
        raise ValueError("seed 0 makes the default dataset's people: pretrain on another seed")
    out = Path(out)
    config = SynthPainConfig(
        seed=seed, n_identities=identities, n_sequences=sequences,
        frames_per_sequence=frames, test_fraction=test_fraction,
    )  # fmt: skip
    generate(config, out / "synthpain", workers=workers)
    records = load_records("synthpain", out / "synthpain")
    build_landmark_table(records, out / "synthpain", out / "landmarks", workers=workers)
    return load_landmark_table(out / "landmarks")


def training_argv(arguments: dict, **overrides) -> list[str]:
    """The ``paincontrol_lib.model.train`` command line of recorded ``arguments`` (the
    ``arguments`` of a final model's training.json), with ``overrides`` applied."""
    argv = []
    for key, value in (arguments | overrides).items():
        if value is None or key == "progress":
            continue
        values = value if isinstance(value, list | tuple) else [value]
        argv += [f"--{key}", *[str(v) for v in values]]
    return argv + ["--no-progress"]


def git_revision() -> str | None:
    """The repository's HEAD commit, None outside git."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def training_chain(final: str | Path) -> list[dict]:
    """The training records behind a final model, oldest first: a run that started from
    another model (``--init_from``) is preceded by that model's own record."""
    record = json.loads((Path(final) / "training.json").read_text())
    start = record["arguments"].get("init_from")
    return (training_chain(start) if start else []) + [record]


def publish(run: str | Path, data: str | Path, out: str | Path, revision: str | None = None):
    """Copy ``run/final`` to ``out`` with PROVENANCE.json: data recipe, every training run's
    arguments (in order), steps, time, device and the code revision they came from."""
    from paincontrol_lib.io import atomic_folder

    run, data = Path(run), Path(data)
    runs = training_chain(run / "final")
    prepared = json.loads((data / "prepare.json").read_text())
    for record in runs:
        if record["examples_sha256"] != prepared["examples_sha256"]:
            raise ValueError(f"{run} was not trained on {data / 'examples.npz'}")
    provenance = {
        "code_revision": revision or git_revision(),
        "prepare_command": "python -m paincontrol_lib.model.pretrain prepare "
        + " ".join(f"--{k} {v}" for k, v in prepared["options"].items())
        + f" --out {data}",
        "training_commands": [
            "python -m paincontrol_lib.model.train " + " ".join(training_argv(r["arguments"]))
            for r in runs
        ],
        "prepared": prepared,
        "training_runs": runs,
    }  # fmt: skip
    with atomic_folder(out) as tmp:
        shutil.copytree(run / "final", tmp, dirs_exist_ok=True)
        (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paincontrol_lib.model.pretrain")
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="make the pretraining examples (.npz)")
    prep.add_argument("--out", default="build/pretrain")
    for name, value in DEFAULT.items():
        prep.add_argument(f"--{name}", type=type(value), default=value)
    prep.add_argument("--workers", type=int, default=2)
    pub = commands.add_parser("publish", help="copy a finished run and write its provenance")
    pub.add_argument("--run", required=True)
    pub.add_argument("--data", default="build/pretrain")
    pub.add_argument("--out", default="pretrained/tiny-synthpain")
    pub.add_argument("--revision", default=None, help="code revision (default: git HEAD)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        options = {k: getattr(args, k) for k in DEFAULT} | {"workers": args.workers}
        print(json.dumps(prepare(args.out, **options), indent=2))
    else:
        publish(args.run, args.data, args.out, args.revision)
        print(f"published {args.run}/final to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
