"""Run one stage notebook under papermill, quietly, and say in one line what it did.

    python -m paincontrol_lib.runner notebooks/04_au_identity.ipynb \
        reports/notebooks/04_au_identity.ipynb

What DVC stages run (``dvc.yaml``). Compared with ``papermill NB OUT -f params.yaml``:

- only the ``params.yaml`` sections the notebook's ``parameters`` cell declares are injected
  (papermill warns "Passed unknown parameter" for every other one, on every stage);
- what the kernel and native libraries write straight to the terminal is caught, and the
  messages known to appear on every healthy run (:data:`EXPECTED_STDERR`, each with why) are
  dropped, even when another process wrote into the same line; any other text is printed after
  the stage, so an unexpected warning still shows; in the executed notebook the same messages
  are removed and every other warning moves to ``reports/logs/<stage>.log``, the cell keeping
  one line that says how many went there (:func:`move_stderr_to_log`);
- the kernel runs with :data:`KERNEL_ENV` (OpenMP's passive wait policy, MediaPipe's C++
  logging at errors only);
- no papermill progress bar; one line per stage: its wall time and a headline metric read back
  from its metrics file;
- the executed notebook is written once, at the end, so Ctrl-C (one line, exit code 130) or a
  kill leaves the last complete run's as it was.

Errors are not quietened: a failing cell raises papermill's error with the cell's traceback.
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
GLOG = r"[WI]\d{4} [\d:.]+\s+\d+ "  # an absl/glog line's head: level, date, time, thread
# What a healthy run writes to the terminal, each message whole. Worker processes write at
# once, so a message can share its line with another one (glued before or after it): each is
# matched anywhere in a line and only its own span is removed (:func:`without_expected`).
EXPECTED_STDERR = tuple(
    re.compile(head + re.escape(message))
    for head, message in (
        # Jupyter's kernel talks to papermill over localhost TCP; nothing leaves the machine.
        (
            r"(?:\[IPKernelApp\] WARNING \| )?",
            "Kernel is running over TCP without encryption. All communication (including code "
            "and outputs) is sent in plain text and is susceptible to eavesdropping. Use IPC "
            "transport or launch with kernel manager-provisioned CurveZMQ keys to enable "
            "transport encryption.",
        ),
        # MediaPipe's TensorFlow Lite runtime announces itself once per graph (its "INFO: " is
        # a write of its own: another worker's line can split it off, see SPLIT_OFF)...
        ("(?:INFO: )?", "Created TensorFlow Lite XNNPACK delegate for CPU."),
        (
            "",
            "WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR",
        ),
        # ...and its face-mesh graph notes two things about its own models on every start.
        (
            GLOG + r"inference_feedback_manager\.cc:\d+\] ",
            "Feedback manager requires a model with a single signature inference. Disabling "
            "support for feedback tensors.",
        ),
        (
            GLOG + r"landmark_projection_calculator\.cc:\d+\] ",
            "Using NORM_RECT without IMAGE_DIMENSIONS is only supported for the square ROI. "
            "Provide IMAGE_DIMENSIONS or use PROJECTION_MATRIX.",
        ),
    )
)
SPLIT_OFF = re.compile(r"(?:\s|INFO:)*")  # what is left of a line that said nothing else


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


def without_expected(line: str) -> str:
    """One line less the spans of :data:`EXPECTED_STDERR`; "" when nothing else is left."""
    for pattern in EXPECTED_STDERR:
        line = pattern.sub("", line)
    return "" if SPLIT_OFF.fullmatch(line) else line


def unexpected_lines(text: str) -> list[str]:
    """The lines of captured terminal output, less what :data:`EXPECTED_STDERR` explains;
    lines left with nothing else are dropped."""
    return [rest for line in text.splitlines() if (rest := without_expected(line))]


@contextlib.contextmanager
def captured_stderr():
    """Redirect file descriptor 2 (this process and the kernel it starts) to a temporary file;
    yields a callable returning what was written. Unexpected lines are printed afterwards, but
    not after Ctrl-C: then they are the kernel's tracebacks as it is shut down mid-cell."""
    sys.stderr.flush()
    saved = os.dup(2)
    interrupted = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)

        def text() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace")

        try:
            yield text
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not interrupted:
                for line in unexpected_lines(text()):
                    print(line, file=sys.stderr)


def log_path(output: Path) -> Path:
    """Where an executed notebook's warnings go: ``reports/logs/<stem>.log`` beside
    ``reports/notebooks/<stem>.ipynb``."""
    return output.parent.parent / "logs" / f"{output.stem}.log"


def move_stderr_to_log(output: Path, log: Path | None = None) -> int:
    """Clean the executed notebook's stderr outputs for readers: remove what
    :data:`EXPECTED_STDERR` explains (MediaPipe's start-up notes reach the cells through the
    kernel, from worker processes too) and move every other warning to ``log`` (default
    :func:`log_path`), each cell's under its number, a warning that repeats within a cell once
    with a count of the rest. The cell keeps one line saying how many lines went where. The log
    is written on every run (a run without warnings says so). Returns the lines removed."""
    import nbformat

    log = log or log_path(output)
    book = nbformat.read(str(output), as_version=4)
    removed, entries = 0, []
    for number, cell in enumerate(book.cells):
        if cell.cell_type != "code":
            continue
        kept, seen, repeats, warned = [], set(), 0, []
        for out in cell.outputs:
            if out.get("output_type") != "stream" or out.get("name") != "stderr":
                kept.append(out)
                continue
            for line in out["text"].splitlines():
                rest = without_expected(line)
                removed += 1
                if rest and rest[:REPEAT_PREFIX] in seen:
                    repeats += 1
                elif rest:
                    seen.add(rest[:REPEAT_PREFIX])
                    warned.append(rest)
        if warned:
            if repeats:
                warned.append(f"[runner] {repeats} more lines repeating the warnings above")
            entries.append(f"## cell {number}\n" + "\n".join(warned) + "\n")
            note = f"[runner] {len(warned)} lines of warnings from this cell: {log.as_posix()}\n"
            kept.append(nbformat.v4.new_output("stream", name="stderr", text=note))
        cell.outputs = kept
    from paincontrol_lib.io import atomic_write_bytes

    header = f"# warnings of {output.name}'s last run, by cell (paincontrol_lib/runner.py)\n"
    body = "\n".join(entries) if entries else "no warnings\n"
    atomic_write_bytes(log, (header + body).encode())
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
            # Written once, at the end (or with a failing cell's error): an interrupted run
            # leaves the last complete run's executed notebook as it was.
            request_save_on_cell_execute=False,
        )
    move_stderr_to_log(output)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    stem = Path(args.notebook).stem
    try:
        seconds = run(args.notebook, args.output, args.params)
    except KeyboardInterrupt:  # Ctrl-C: outputs are written whole or not at all (io.py)
        print(f"interrupted: {stem}; nothing half-written was kept", file=sys.stderr)
        return 130
    print(f"{stem:22s} {seconds:6.0f} s   {headline(Path(args.notebook))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
