"""dvc.yaml's library deps match what each notebook runs (scripts/dvc_deps.py), and the
resolver behind that check follows lazy imports, submodules, parent packages and notebooks;
its data deps name every path each stage reads."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from paincontrol_lib.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import dvc_deps  # noqa: E402


def test_dvc_yaml_lists_every_library_file_each_notebook_runs():
    report = dvc_deps.missing_and_extra(REPO_ROOT)
    assert report, "no papermill stage found in dvc.yaml"
    off = dvc_deps.report_lines(report)
    assert not off, "dvc.yaml is off, run `make deps`:\n" + "\n".join(off)


def test_a_deleted_dep_is_reported_missing():
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    stage, notebook = next(iter(dvc_deps.stage_notebooks(dvc_yaml).items()))
    closure = dvc_deps.stage_closure(REPO_ROOT / notebook, REPO_ROOT)
    assert closure, f"{notebook} runs no library file: the check would be vacuous"
    deps = dvc_yaml["stages"][stage]["deps"]
    dvc_yaml["stages"][stage]["deps"] = dvc_deps.rewritten_deps(deps, closure)
    assert dvc_deps.missing_and_extra(REPO_ROOT, dvc_yaml)[stage] == ([], [])

    deleted = closure[-1]
    dvc_yaml["stages"][stage]["deps"].remove(deleted)
    dvc_yaml["stages"][stage]["deps"].append("paincontrol_lib/not_run.py")
    assert dvc_deps.missing_and_extra(REPO_ROOT, dvc_yaml)[stage] == (
        [deleted],
        ["paincontrol_lib/not_run.py"],
    )


def test_writer_fixes_the_deps_and_keeps_the_rest_of_dvc_yaml(tmp_path):
    for folder in ("paincontrol_lib", "notebooks"):
        (tmp_path / folder).symlink_to(REPO_ROOT / folder)
    text = (REPO_ROOT / "dvc.yaml").read_text()
    (tmp_path / "dvc.yaml").write_text(text)

    dvc_deps.write_deps(tmp_path)
    new = (tmp_path / "dvc.yaml").read_text()
    assert all(off == ([], []) for off in dvc_deps.missing_and_extra(tmp_path).values())
    assert dvc_deps.write_deps(tmp_path) == [], "a second run must change nothing"
    assert outside_deps(new) == outside_deps(text), "comments and commands must stay as they are"
    old, rewritten = yaml.safe_load(text), yaml.safe_load(new)
    for stage in dvc_deps.stage_notebooks(old):
        others = [d for d in old["stages"][stage]["deps"] if not dvc_deps.is_library(d)]
        assert rewritten["stages"][stage]["deps"][: len(others)] == others, stage


def outside_deps(text):
    """The lines of a dvc.yaml text, less the deps items of its papermill stages."""
    lines = text.splitlines(keepends=True)
    for stage in dvc_deps.stage_notebooks(yaml.safe_load(text)):
        start, end = dvc_deps.deps_block(lines, stage)
        lines[start:end] = []
    return lines


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def fake_repo(tmp_path):
    """A tiny ``paincontrol_lib`` whose files import each other in each way the resolver knows."""
    lib = tmp_path / "paincontrol_lib"
    write(lib / "__init__.py")
    write(lib / "base.py")
    write(lib / "unused.py")
    write(lib / "pkg" / "__init__.py", "VALUE = 1\n")
    write(lib / "pkg" / "sub" / "__init__.py")
    write(lib / "pkg" / "sub" / "deep.py", "from .. import sibling\n")
    write(lib / "pkg" / "sibling.py", "from ..base import thing\n")
    write(lib / "pkg" / "leaf.py")
    write(lib / "lazy.py", "def f():\n    import paincontrol_lib.pkg.sub.deep\n")
    write(lib / "top.py", "from paincontrol_lib.pkg import leaf, VALUE\n")
    return tmp_path


def closure(repo, source, name="entry.py"):
    write(repo / name, source)
    return dvc_deps.library_closure(repo / name, repo)


def test_lazy_import_is_followed_with_parent_packages_and_relative_imports(fake_repo):
    assert closure(fake_repo, "from paincontrol_lib import lazy\n") == [
        "paincontrol_lib/__init__.py",
        "paincontrol_lib/base.py",
        "paincontrol_lib/lazy.py",
        "paincontrol_lib/pkg/__init__.py",
        "paincontrol_lib/pkg/sibling.py",
        "paincontrol_lib/pkg/sub/__init__.py",
        "paincontrol_lib/pkg/sub/deep.py",
    ]


def test_from_package_import_resolves_submodules_and_attributes(fake_repo):
    assert closure(fake_repo, "from paincontrol_lib.pkg import VALUE\n") == [
        "paincontrol_lib/__init__.py",
        "paincontrol_lib/pkg/__init__.py",
    ]
    assert closure(fake_repo, "import paincontrol_lib.top\n") == [
        "paincontrol_lib/__init__.py",
        "paincontrol_lib/pkg/__init__.py",
        "paincontrol_lib/pkg/leaf.py",
        "paincontrol_lib/top.py",
    ]


def test_a_library_file_runs_itself_and_its_parents(fake_repo):
    leaf = fake_repo / "paincontrol_lib" / "pkg" / "leaf.py"
    assert dvc_deps.library_closure(leaf, fake_repo) == [
        "paincontrol_lib/__init__.py",
        "paincontrol_lib/pkg/__init__.py",
        "paincontrol_lib/pkg/leaf.py",
    ]


def notebook(cells):
    return json.dumps(
        {"cells": [{"cell_type": kind, "metadata": {}, "source": src} for kind, src in cells]}
    )


def test_notebook_cells_are_followed_and_magics_skipped(fake_repo):
    source = notebook(
        [
            ("markdown", "import paincontrol_lib.unused"),
            ("code", ["%matplotlib inline\n", "!ls\n", "from paincontrol_lib import top\n"]),
            ("code", "x = 1\nfrom paincontrol_lib.pkg import sibling"),
        ]
    )
    assert closure(fake_repo, source, "nb.ipynb") == [
        "paincontrol_lib/__init__.py",
        "paincontrol_lib/base.py",
        "paincontrol_lib/pkg/__init__.py",
        "paincontrol_lib/pkg/leaf.py",
        "paincontrol_lib/pkg/sibling.py",
        "paincontrol_lib/top.py",
    ]


def test_a_notebook_cell_that_does_not_parse_is_named(fake_repo):
    source = notebook([("code", "x = 1"), ("code", "def broken(:\n")])
    with pytest.raises(SyntaxError, match=r"nb\.ipynb: code cell 1 does not parse"):
        closure(fake_repo, source, "nb.ipynb")


def test_stage_notebooks_reads_papermill_commands():
    dvc_yaml = {
        "stages": {
            "a": {"cmd": "mkdir -p r && papermill notebooks/00_a.ipynb r/00_a.ipynb -f p.yaml"},
            "b": {"cmd": ["echo", "papermill  notebooks/01_b.ipynb out.ipynb"]},
            "c": {"cmd": "python scripts/other.py"},
        }
    }
    assert dvc_deps.stage_notebooks(dvc_yaml) == {
        "a": "notebooks/00_a.ipynb",
        "b": "notebooks/01_b.ipynb",
    }


def test_every_notebook_stage_depends_on_the_runner_that_runs_it():
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    stages = dvc_deps.stage_notebooks(dvc_yaml)
    assert len(stages) == 7
    for stage in stages:
        assert "paincontrol_lib/runner.py" in dvc_yaml["stages"][stage]["deps"], stage
        assert "paincontrol_lib.runner" in dvc_yaml["stages"][stage]["cmd"], stage


def repo_config():
    """Fresh parsed copies of the repository's dvc.yaml and params.yaml."""
    return tuple(yaml.safe_load((REPO_ROOT / f).read_text()) for f in ("dvc.yaml", "params.yaml"))


def test_every_path_a_stage_reads_is_a_dep_of_it():
    off = dvc_deps.data_dep_problems(REPO_ROOT)
    assert not off, "dvc.yaml's data deps are off:\n" + "\n".join(off)


def test_transfer_depends_on_the_checkpoint_it_loads_not_on_the_augment_generator():
    deps = repo_config()[0]["stages"]["transfer"]["deps"]
    assert "${transfer.checkpoint}" in deps and "${augment.generator}" not in deps


def test_a_model_read_but_not_a_dep_is_missing_and_an_unread_dep_is_extra():
    dvc_yaml, params = repo_config()
    deps = dvc_yaml["stages"]["transfer"]["deps"]
    deps[deps.index("${transfer.checkpoint}")] = "${augment.generator}"
    assert dvc_deps.data_dep_problems(REPO_ROOT, dvc_yaml, params) == [
        f"transfer: missing dep {params['transfer']['checkpoint']} (it reads transfer.checkpoint)",
        "transfer: warning: extra dep ${augment.generator} (the stage reads no path in it: "
        "reruns needlessly)",
    ]


def test_an_empty_path_parameter_needs_no_dep_and_a_set_one_does():
    dvc_yaml, params = repo_config()
    assert params["train"]["pretrained"] == ""
    assert dvc_deps.data_dep_problems(REPO_ROOT, dvc_yaml, params) == []
    params["train"]["pretrained"] = "weights/stable-diffusion-v1-5"
    assert dvc_deps.data_dep_problems(REPO_ROOT, dvc_yaml, params) == [
        "train: missing dep weights/stable-diffusion-v1-5 (it reads train.pretrained)"
    ]


def test_a_written_parameter_needs_an_out_of_the_stage_not_a_dep():
    dvc_yaml, params = repo_config()
    params["evaluate"]["au_estimator"]["path"] = "data/elsewhere.npz"
    assert dvc_deps.data_dep_problems(REPO_ROOT, dvc_yaml, params) == [
        "evaluate: evaluate.au_estimator.path = data/elsewhere.npz is written but no out of the "
        "stage covers it"
    ]


def test_an_out_named_by_a_parameter_not_declared_written_is_reported(monkeypatch):
    dvc_yaml, params = repo_config()
    outputs = dvc_deps.notebook_outputs(REPO_ROOT)
    outputs["04_au_identity"].remove("evaluate.au_estimator.path")
    monkeypatch.setattr(dvc_deps, "notebook_outputs", lambda root: outputs)
    path = params["evaluate"]["au_estimator"]["path"]
    assert dvc_deps.data_dep_problems(REPO_ROOT, dvc_yaml, params) == [
        f"evaluate: evaluate.au_estimator.path = {path} is an out but "
        "paincontrol_lib/notebook.py: OUTPUTS omits it"
    ]


def test_photos_named_by_the_landmark_table_are_deps_of_its_readers():
    dvc_yaml, params = repo_config()
    dvc_yaml["stages"]["study"]["deps"].remove("${data.root}")
    # the study stage receives params' data section too (what its real items are), so that is
    # the reason the check gives first
    assert dvc_deps.data_dep_problems(REPO_ROOT, dvc_yaml, params) == [
        f"study: missing dep {params['data']['root']} (it reads data.root)"
    ]


def test_a_params_section_the_notebook_receives_must_be_tracked():
    dvc_yaml, params = repo_config()
    dvc_yaml["stages"]["transfer"]["params"].remove("sampler")
    dvc_yaml["stages"]["transfer"]["params"].append("augment")
    assert dvc_deps.data_dep_problems(REPO_ROOT, dvc_yaml, params) == [
        "transfer: params lacks sampler (its notebook receives it)",
        "transfer: params has augment (its notebook does not receive it)",
    ]


def test_a_parameters_cell_that_is_not_literal_is_named(tmp_path):
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "x = f()\n"}
    write(tmp_path / "nb.ipynb", json.dumps({"cells": [cell]}))
    with pytest.raises(ValueError, match=r"nb\.ipynb: parameter x is not a literal"):
        dvc_deps.parameters_cell(tmp_path / "nb.ipynb")
