"""The stage runner: only declared parameters are injected, expected terminal chatter is dropped
(even mid-line) and anything else still shows, one line per stage, and one line on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from paincontrol_lib import runner

TCP = (
    "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication "
    "(including code and outputs) is sent in plain text and is susceptible to eavesdropping. Use "
    "IPC transport or launch with kernel manager-provisioned CurveZMQ keys to enable transport "
    "encryption."
)
XNNPACK = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
FEEDBACK = (
    "W0000 00:00:1796.1 9941 inference_feedback_manager.cc:114] Feedback manager requires a "
    "model with a single signature inference. Disabling support for feedback tensors."
)
NORM_RECT = (
    "W0000 00:00:1796.2 9943 landmark_projection_calculator.cc:186] Using NORM_RECT without "
    "IMAGE_DIMENSIONS is only supported for the square ROI. Provide IMAGE_DIMENSIONS or use "
    "PROJECTION_MATRIX."
)
ABSL = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def test_expected_chatter_is_dropped_and_the_rest_kept():
    text = "\n".join([TCP, XNNPACK, FEEDBACK, NORM_RECT, ABSL, "",
                      "UserWarning: something nobody expected",
                      "E0000 00:00:1796.3 9943 graph.cc:1] a real MediaPipe error"])  # fmt: skip
    assert runner.unexpected_lines(text) == [
        "UserWarning: something nobody expected",
        "E0000 00:00:1796.3 9943 graph.cc:1] a real MediaPipe error",
    ]


def test_interleaved_worker_lines_lose_the_expected_messages_and_keep_the_rest():
    """Worker processes write at once (seen in runs): TensorFlow Lite's "INFO: " is a write of
    its own, so another line can split it from its message or glue onto either end."""
    text = "\n".join([
        "INFO: ",  # a line cut in two
        XNNPACK.removeprefix("INFO: "),
        XNNPACK + FEEDBACK,  # two expected messages glued
        "INFO: " + NORM_RECT,  # a split-off prefix glued to another worker's line
        "UserWarning: unexpected" + XNNPACK,  # unexpected text glued to expected messages
        FEEDBACK + "E0000 00:00:1796.5 9946 graph.cc:1] a real error",
        "a warning cut by " + NORM_RECT + " in its middle",
    ])  # fmt: skip
    assert runner.unexpected_lines(text) == [
        "UserWarning: unexpected",
        "E0000 00:00:1796.5 9946 graph.cc:1] a real error",
        "a warning cut by  in its middle",
    ]


def test_runs_a_notebook_with_only_its_declared_parameters(tmp_path, capfd):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}  # fmt: skip
    params = nbformat.v4.new_code_cell("base = {}\nout = 'x.json'")
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import json, sys\n"
        "print('to the terminal', file=sys.__stderr__)\n"
        "json.dump(base, open(out, 'w'))"
    )
    notebook.cells = [params, body]
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook, path)
    out = str(tmp_path / "seen.json")
    (tmp_path / "p2.yaml").write_text(f"base: {{seed: 3}}\nunrelated: {{a: 1}}\nout: {out}\n")
    seconds = runner.run(path, tmp_path / "executed.ipynb", tmp_path / "p2.yaml")
    assert seconds > 0 and json.loads((tmp_path / "seen.json").read_text()) == {"seed": 3}
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    injected = next(
        c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])
    )
    assert "unrelated" not in injected.source and "base" in injected.source
    assert "to the terminal" in capfd.readouterr().err  # an unexpected line still shows
    with pytest.raises(FileNotFoundError, match="no such notebook"):
        runner.run(tmp_path / "missing.ipynb", tmp_path / "x.ipynb", tmp_path / "p2.yaml")


def test_headline_reads_the_stage_metrics(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "landmarks.json").write_text(json.dumps({"nme": 0.0339}))
    assert (
        runner.headline(runner.Path("notebooks/01_landmarks.ipynb"), tmp_path) == "mesh NME 0.034"
    )
    assert runner.headline(runner.Path("notebooks/02_train_controlnet.ipynb"), tmp_path) == ""


def test_executed_notebook_moves_warnings_to_a_log_and_says_where(tmp_path):
    """What readers open: MediaPipe's start-up notes leave the cells, every other warning moves
    to the stage's log (a repeated one once with a count of the rest), and the cell says in one
    line how many lines went where; output that is not a warning stays."""
    cell = nbformat.v4.new_code_cell("run()")
    stderr = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n" + "".join(
        f"The following part of your input was truncated because CLIP can only ... {i}\n"
        for i in range(5)
    )
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=stderr),
        nbformat.v4.new_output("stream", name="stdout", text="a result\n"),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: unexpected\n"),
        nbformat.v4.new_output("stream", name="stderr", text="INFO: \n\n"),
    ]
    quiet = nbformat.v4.new_code_cell("quiet()")
    quiet.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"{XNNPACK}\n")]
    path = tmp_path / "notebooks" / "executed.ipynb"
    path.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[cell, quiet]), path)
    assert runner.move_stderr_to_log(path) == 10  # every stderr line left the notebook
    cells = nbformat.read(path, as_version=4).cells
    texts = [(o["name"], o["text"]) for o in cells[0].outputs]
    log = tmp_path / "logs" / "executed.log"
    note = f"[runner] 3 lines of warnings from this cell: {log.as_posix()}\n"
    assert texts == [("stdout", "a result\n"), ("stderr", note)]
    assert cells[1].outputs == []
    logged = log.read_text()
    assert (
        "## cell 0\nThe following part of your input was truncated because CLIP can only ... 0\n"
        in logged
    )
    assert "UserWarning: unexpected\n[runner] 4 more lines repeating" in logged
    assert "cell 1" not in logged and "XNNPACK" not in logged
    nbformat.write(nbformat.v4.new_notebook(cells=[quiet]), path)
    runner.move_stderr_to_log(path)
    assert log.read_text().endswith("no warnings\n")


def test_expected_messages_glued_to_unexpected_text_leave_the_executed_notebook(tmp_path):
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [nbformat.v4.new_output(
        "stream", name="stderr", text=f"{XNNPACK}UserWarning: unexpected\n{FEEDBACK}\n"
    )]  # fmt: skip
    path = tmp_path / "executed.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    runner.move_stderr_to_log(path, tmp_path / "executed.log")
    assert (tmp_path / "executed.log").read_text().endswith("## cell 0\nUserWarning: unexpected\n")


# A notebook that says it is busy (a file) and then waits: a stage in the middle of its work.
BUSY = "import pathlib, time\npathlib.Path(marker).write_text('busy')\ntime.sleep(120)"


def test_ctrl_c_ends_the_runner_with_one_line_exit_code_130_and_no_notebook(tmp_path):
    params = nbformat.v4.new_code_cell(f"marker = {str(tmp_path / 'busy')!r}")
    params.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(BUSY)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}  # fmt: skip
    nbformat.write(notebook, tmp_path / "busy.ipynb")
    (tmp_path / "p.yaml").write_text("base: {seed: 0}\n")
    command = [sys.executable, "-m", "paincontrol_lib.runner", "busy.ipynb", "executed.ipynb",
               "--params", "p.yaml"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "busy").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the notebook never got busy"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err == "interrupted: busy; nothing half-written was kept\n"
    assert not (tmp_path / "executed.ipynb").exists()
