"""Run one stage notebook under papermill, quietly, and say in one line what it did.

    python -m paincontrol_lib.runner notebooks/04_au_identity.ipynb \
        reports/notebooks/04_au_identity.ipynb

What DVC stages run (``dvc.yaml``). Compared with ``papermill NB OUT -f params.yaml``:

- only the ``params.yaml`` sections the notebook's ``parameters`` cell declares are injected
  (papermill warns "Passed unknown parameter" for every other one, on every stage);
- what the kernel and native libraries write straight to the terminal is caught, and the lines
  known to appear on every healthy run (:data:`EXPECTED_STDERR`, each with why) are dropped;
  any other line is printed after the stage, so an unexpected warning still shows; the same
  lines are removed from the executed notebook's stderr outputs (:func:`drop_expected_stderr`);
- the kernel runs with :data:`KERNEL_ENV` (OpenMP's passive wait policy, MediaPipe's C++
  logging at errors only);
- no papermill progress bar; one line per stage: its wall time and a headline metric read back
  from its metrics file.

Errors are not quietened: a failing cell raises papermill's error with the cell's traceback, and
warnings the notebook's own cells raise stay in the executed notebook.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

# notebook stem -> (metrics file, label, path of the headline value in it)
HEADLINES = {
    "00_synthpain": ("synthpain.json", "images", ("n_images",)),
    "01_landmarks": ("landmarks.json", "mesh NME", ("nme",)),
    "02_train_controlnet": ("train.json", "test identity top-1", ("heldout_identity_top1",)),
    "03_transfer": ("transfer.json", "source-target pairs", ("n_pairs",)),
    "04_au_identity": (
        "eval.json",
        "PainControl PSPI MAE",
        ("methods", "paincontrol", "pspi_mae"),
    ),  # fmt: skip
    "05_augmentation": (
        "augment.json",
        "AUC gain at 1 pain person",
        ("claim", "paincontrol_vs_real", "1", "estimate"),
    ),  # fmt: skip
    "06_realism_study": (
        "study.json",
        "null false-positive rate",
        ("validation", "false_positive_rate"),
    ),  # fmt: skip
}
KERNEL_ENV = {
    "GLOG_minloglevel": "2",  # MediaPipe's C++ logging: errors only
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # OpenMP threads wait passively instead of spinning: with anything else running on a 2-core
    # laptop, 2 spinning torch threads made each training step 3x slower (scripts/bench.py train).
    "OMP_WAIT_POLICY": "PASSIVE",
}
EXPECTED_STDERR = tuple(
    re.compile(pattern)
    for pattern in (
        # Jupyter's kernel talks to papermill over localhost TCP; nothing leaves the machine.
        r"Kernel is running over TCP without encryption",
        # MediaPipe's TensorFlow Lite runtime announces itself once per graph...
        r"Created TensorFlow Lite XNNPACK delegate for CPU",
        r"^\s*INFO:\s*$",  # its prefix, when another worker's line split it off
        r"WARNING: All log messages before absl::InitializeLog\(\) is called",
        # ...and its face-mesh graph notes two things about its own models on every start.
        # Unanchored: two worker processes can write into the same line.
        r"\b[WI]\d{4} .*(inference_feedback_manager|landmark_projection_calculator)\.cc",
        r"^\s*$",
    )
)


REPEAT_PREFIX = 60  # lines of a cell that start alike repeat one warning (its first is kept)


def declared_parameters(notebook: Path) -> set[str]:
    """Names the notebook's cell tagged ``parameters`` assigns."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def headline(notebook: Path, reports_dir: Path = Path("reports")) -> str:
    """``label value`` from the stage's metrics file, or "" when it has none."""
    if notebook.stem not in HEADLINES:
        return ""
    name, label, keys = HEADLINES[notebook.stem]
    path = reports_dir / "metrics" / name
    if not path.is_file():
        return ""
    value = json.loads(path.read_text())
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, float):
        value = f"{value:.3f}"
    return f"{label} {value}"


def unexpected_lines(text: str) -> list[str]:
    """The lines of captured terminal output that no :data:`EXPECTED_STDERR` pattern matches."""
    return [line for line in text.splitlines()
            if not any(p.search(line) for p in EXPECTED_STDERR)]  # fmt: skip


@contextlib.contextmanager
def captured_stderr():
    """Redirect file descriptor 2 (this process and the kernel it starts) to a temporary file;
    yields a callable returning what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)

        def text() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace")

        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            for line in unexpected_lines(text()):
                print(line, file=sys.stderr)


def drop_expected_stderr(output: Path) -> int:
    """Clean the executed notebook's stderr outputs for readers: remove the lines
    :data:`EXPECTED_STDERR` explains (MediaPipe's start-up notes reach the cells through the
    kernel, from worker processes too), and within a cell keep only the first of lines that
    repeat the same warning, with a count of the rest. Any other line stays where it was printed.
    Returns the lines removed."""
    import nbformat

    book = nbformat.read(str(output), as_version=4)
    removed = 0
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        kept, seen, repeats = [], set(), 0
        for out in cell.outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                wanted = []
                for line in out["text"].splitlines(keepends=True):
                    kind = line[:REPEAT_PREFIX]
                    if not unexpected_lines(line) or kind in seen:
                        repeats += kind in seen and bool(unexpected_lines(line))
                        removed += 1
                        continue
                    seen.add(kind)
                    wanted.append(line)
                if not wanted:
                    continue
                out["text"] = "".join(wanted)
            kept.append(out)
        if repeats:
            note = f"[runner] {repeats} more lines repeating the warnings above were left out\n"
            kept.append(nbformat.v4.new_output("stream", name="stderr", text=note))
        cell.outputs = kept
    if removed:
        tmp = output.with_name(f".{output.name}.tmp")
        nbformat.write(book, str(tmp))
        os.replace(tmp, output)
    return removed


def run(notebook, output, params_file="params.yaml") -> float:
    """Execute ``notebook`` into ``output`` with its declared sections of ``params_file``;
    returns the wall seconds."""
    import papermill
    import yaml

    notebook, output = Path(notebook), Path(output)
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook}: no such notebook")
    params = yaml.safe_load(Path(params_file).read_text()) or {}
    wanted = declared_parameters(notebook)
    injected = {k: v for k, v in params.items() if k in wanted}
    if "pipeline" in wanted:  # notebook.setup: injected parameters, committed output folders
        injected["pipeline"] = True
    output.parent.mkdir(parents=True, exist_ok=True)
    os.environ.update({k: v for k, v in KERNEL_ENV.items() if k not in os.environ})
    started = time.perf_counter()
    with captured_stderr():
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=injected,
            cwd=".",
            progress_bar=False,
            log_output=False,
        )
    drop_expected_stderr(output)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    seconds = run(args.notebook, args.output, args.params)
    stem = Path(args.notebook).stem
    print(f"{stem:22s} {seconds:6.0f} s   {headline(Path(args.notebook))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
