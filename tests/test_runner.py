"""The stage runner: only declared parameters are injected, expected terminal chatter is dropped
and anything else still shows, one line per stage."""

from __future__ import annotations

import json

import nbformat
import pytest

from paincontrol_lib import runner


def test_expected_chatter_is_dropped_and_the_rest_kept():
    text = "\n".join([
        "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All ...",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
        "W0000 00:00:1796.1 9941 inference_feedback_manager.cc:114] Feedback manager requires",
        "W0000 00:00:1796.2 9943 landmark_projection_calculator.cc:186] Using NORM_RECT",
        "UserWarning: something nobody expected",
        "E0000 00:00:1796.3 9943 graph.cc:1] a real MediaPipe error",
        # Two worker processes writing at once: a line split, another merged (seen in a run).
        "INFO: ",
        "Created TensorFlow Lite XNNPACK delegate for CPU.",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.W0000 00:00:1796.4 9945 "
        "inference_feedback_manager.cc:114] Feedback manager requires",
    ])  # fmt: skip
    assert runner.unexpected_lines(text) == [
        "UserWarning: something nobody expected",
        "E0000 00:00:1796.3 9943 graph.cc:1] a real MediaPipe error",
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


def test_executed_notebook_keeps_unexpected_stderr_once_per_warning(tmp_path):
    """What readers open: MediaPipe's start-up notes leave the cells, a repeated warning stays
    once with a count of the rest, and anything unexpected stays where it was printed."""
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
    notebook = nbformat.v4.new_notebook(cells=[cell])
    path = tmp_path / "executed.ipynb"
    nbformat.write(notebook, path)
    assert runner.drop_expected_stderr(path) == 7  # 2 INFO lines, a blank one, 4 repeats
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    texts = [(o["name"], o["text"]) for o in outputs]
    assert texts[0] == ("stderr", "The following part of your input was truncated because "
                                  "CLIP can only ... 0\n")  # fmt: skip
    assert texts[1:3] == [("stdout", "a result\n"), ("stderr", "UserWarning: unexpected\n")]
    assert texts[3][1].startswith("[runner] 4 more lines repeating") and len(texts) == 4
