"""DVC dependencies generated from imports: each notebook stage depends on the library it runs.

A stage's ``deps`` in ``dvc.yaml`` must name every ``paincontrol_lib`` file its notebook
executes, transitively; a file left out means ``dvc repro`` can serve results computed by old
code. Hand-kept lists drift, so this script derives them statically (``ast``, the package is
never imported): every ``import`` of a notebook's code cells and of the library files they
reach, module level and lazy (inside functions) alike, plus the ``__init__.py`` of each parent
package (importing ``a.b.c`` executes ``a/__init__.py`` and ``a/b/__init__.py``).

    python scripts/dvc_deps.py          # rewrite the library deps of each papermill stage
    python scripts/dvc_deps.py --check  # report missing and extra deps (data deps too), exit 1

``--check`` fails on missing deps (stale results) and also on extra ones (library paths listed
that the notebook does not run): an extra dep makes DVC rerun a stage needlessly whenever that
file changes, and usually means a module was moved or renamed. A directory dep covers the files
under it; the writer always writes explicit files, the library deps after all other deps
(notebook, data, ``${data.root}``, models), which keep their order. The writer edits the text of
``dvc.yaml`` (comments and ``>-`` commands stay as they are) and re-parses it to check that only
those deps changed.

Data deps are checked too (``--check`` only; they are written by hand): every path a stage
reads must be a dep of it, or a changed model or dataset can leave results stale. What a stage
reads is derived, not listed, so it cannot drift: its notebook receives the ``params.yaml``
sections its ``parameters`` cell names (the runner injects nothing else) and that cell's own
defaults (``landmarks_dir``, ``tuning``...). Every path-like value among them (it has a ``/``,
exists in the repository, or its key is named like a path: :data:`PATH_KEY`) counts as read,
unless ``paincontrol_lib/notebook.py: OUTPUTS`` declares it written: then an out of the stage
must lie at, inside or above it instead. ``""`` means none (``train.pretrained: ""``) and needs
no dep. Files named by data the stage reads count as read too (:data:`NAMED_BY`). A data dep
that no read path justifies is extra (it reruns the stage needlessly). The check reads
``params.yaml`` as it is: after merging a profile into it, rerun ``make deps-check``.

The import parser here is shared with tests/test_layering.py.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import sys
from pathlib import Path

import yaml

LIBRARY = "paincontrol_lib"
PAPERMILL = re.compile(r"\b(?:papermill|paincontrol_lib\.runner)\s+(\S+\.ipynb)")
RUNNER = "paincontrol_lib/runner.py"  # what runs each notebook: a dep of every notebook stage
REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_SETUP = "paincontrol_lib/notebook.py"  # its OUTPUTS: the parameters a stage writes
# A parameter whose key is named like this names a path even when its value has no "/".
PATH_KEY = re.compile(r"(?:^|_)(?:path|root|dir|file|checkpoint|generator|pretrained|init|"
                      r"init_from|ratings)$")  # fmt: skip
# Data whose content names the files its readers open: path -> (parameter naming them, why).
NAMED_BY = {
    "data/landmarks": ("data.root", "its table names the photos under data.root, to crop"),
}
TEMPLATE = re.compile(r"\$\{([\w.]+)\}")
# A parameter naming a model checkpoint: loading it also reads the identity encoder that makes
# its identity tokens (``train.identity_backend``: the one the pipeline's checkpoints read).
CHECKPOINT_KEY = re.compile(r"(?:^|_)(?:checkpoint|generator|init_from)$")


def module_file(module: str, root: Path) -> Path | None:
    """The file that defines ``module`` (``a/b.py`` or ``a/b/__init__.py``), None if absent."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the library file ``path`` (a package is named by its folder)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, package: str, root: Path) -> list[tuple[int, str]]:
    """(line, module) of each library module that ``tree`` imports, anywhere in the code.

    ``package`` is the package that relative imports start from ("" outside the library).
    ``from p import name`` imports the submodule ``p.name`` when that file exists, otherwise
    ``name`` is an attribute of ``p`` and the import runs ``p`` itself.
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 >= len(parts):
                    raise ImportError(f"line {node.lineno}: relative import beyond {package!r}")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if module_file(sub, root) else base))
    return [(line, m) for line, m in found if m == LIBRARY or m.startswith(LIBRARY + ".")]


def notebook_cells(path: Path) -> list[tuple[int, ast.Module]]:
    """(cell index, syntax tree) of each code cell; IPython ``%`` and ``!`` lines are blanked."""
    cells = json.loads(path.read_text())["cells"]
    trees = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = ["" if line.startswith(("%", "!")) else line for line in source.splitlines()]
        try:
            trees.append((index, ast.parse("\n".join(lines), filename=f"{path}[cell {index}]")))
        except SyntaxError as error:
            raise SyntaxError(f"{path}: code cell {index} does not parse: {error}") from error
    return trees


def file_imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of the library imports of a ``.py`` file or a notebook's code cells."""
    if path.suffix == ".ipynb":
        return [hit for _, tree in notebook_cells(path) for hit in imports(tree, "", root)]
    package = ""
    if path.is_relative_to(root / LIBRARY):
        name = module_name(path, root)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports(ast.parse(path.read_text(), filename=str(path)), package, root)


def executed_files(module: str, root: Path) -> list[Path]:
    """The files that importing ``module`` executes: its parents' ``__init__.py`` and its own."""
    parts = module.split(".")
    found = (module_file(".".join(parts[:n]), root) for n in range(1, len(parts) + 1))
    return [path for path in found if path]


def library_closure(path: Path, root: Path) -> list[str]:
    """Sorted repo-relative paths of the library files that running ``path`` executes.

    ``path`` itself is listed only if it is a library file (a notebook is its own dep).
    """
    seen: set[Path] = set()
    todo = [path]
    if path.is_relative_to(root / LIBRARY):  # running a library file runs it and its parents
        todo = executed_files(module_name(path, root), root)
        seen.update(todo)
    while todo:
        for _, module in file_imports(todo.pop(), root):
            new = [f for f in executed_files(module, root) if f not in seen]
            seen.update(new)
            todo += new
    return sorted(p.relative_to(root).as_posix() for p in seen)


def stage_closure(notebook: Path, root: Path) -> list[str]:
    """The library files a stage runs: its notebook's closure and, when it exists, the runner's."""
    runner = root / RUNNER
    extra = library_closure(runner, root) if runner.is_file() else []
    return sorted(set(library_closure(notebook, root)) | set(extra))


def stage_notebooks(dvc_yaml: dict) -> dict[str, str]:
    """Stage name -> notebook path, for each stage whose ``cmd`` runs ``papermill <notebook>``."""
    found = {}
    for name, stage in dvc_yaml.get("stages", {}).items():
        cmd = stage.get("cmd", "")
        match = PAPERMILL.search(cmd if isinstance(cmd, str) else " ".join(cmd))
        if match:
            found[name] = match.group(1)
    return found


def is_library(dep: str) -> bool:
    return dep == LIBRARY or dep.startswith(LIBRARY + "/")


def covers(dep: str, file: str) -> bool:
    """Whether the dep (a file or a directory) makes DVC watch ``file``."""
    return file == dep or file.startswith(dep.rstrip("/") + "/")


def missing_and_extra(
    root: Path, dvc_yaml: dict | None = None
) -> dict[str, tuple[list[str], list[str]]]:
    """Stage -> (missing, extra) library deps of each papermill stage.

    Missing: files the notebook runs that no dep covers. Extra: library deps that cover none of
    them. ``dvc_yaml`` defaults to the parsed ``root/dvc.yaml``.
    """
    if dvc_yaml is None:
        dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    report = {}
    for stage, notebook in stage_notebooks(dvc_yaml).items():
        needed = stage_closure(root / notebook, root)
        listed = [d for d in dvc_yaml["stages"][stage].get("deps", []) if is_library(d)]
        missing = [f for f in needed if not any(covers(d, f) for d in listed)]
        extra = [d for d in listed if not any(covers(d, f) for f in needed)]
        report[stage] = (missing, extra)
    return report


def rewritten_deps(deps: list[str], closure: list[str]) -> list[str]:
    """The other deps in their order, then the library files the notebook runs."""
    return [d for d in deps if not is_library(d)] + closure


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def deps_block(lines: list[str], stage: str) -> tuple[int, int]:
    """[start, end) line indices of the list items under ``stage``'s ``deps:`` in ``dvc.yaml``.

    Anything but a plain block list of one-line string items, with no comment or blank line
    inside, raises: the rewrite must never guess.
    """
    rows = [
        (i, indent(line), line.strip())
        for i, line in enumerate(lines)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    top = next(k for k, (_, ind, text) in enumerate(rows) if ind == 0 and text == "stages:")
    level = rows[top + 1][1]
    heads = [k for k in range(top + 1, len(rows)) if rows[k][1] == level]
    head = next(k for k in heads if rows[k][2] == f"{stage}:")
    end = next((k for k in heads if k > head), len(rows))
    key = next((k for k in range(head + 1, end) if rows[k][2] == "deps:"), end)
    rest = rows[key + 1 : end]
    n = 0
    while n < len(rest) and rest[n][2].startswith("- ") and rest[n][1] == rest[0][1]:
        n += 1
    block, after = rest[:n], rest[n : n + 1]
    plain = (
        block
        and block[0][1] >= rows[key][1]
        and all(ind <= rows[key][1] for _, ind, _ in after)  # no continuation or nested lines
        and block[-1][0] - block[0][0] == n - 1  # no comment or blank line inside
        and all(isinstance(yaml.safe_load(text)[0], str) for _, _, text in block)
    )
    if not plain:
        raise ValueError(f"dvc.yaml: the deps of stage {stage!r} are not a plain block list")
    return block[0][0], block[-1][0] + 1


def write_deps(root: Path) -> list[str]:
    """Rewrite the library deps of each papermill stage in ``root/dvc.yaml``; changed stages."""
    path = root / "dvc.yaml"
    text = path.read_text()
    old = yaml.safe_load(text)
    expected = copy.deepcopy(old)
    lines = text.splitlines(keepends=True)
    notebooks = stage_notebooks(old)
    blocks = {stage: deps_block(lines, stage) for stage in notebooks}
    changed = []
    # Bottom-up, so that rewriting one block leaves the line numbers of the others valid.
    for stage, (start, end) in sorted(blocks.items(), key=lambda item: -item[1][0]):
        closure = stage_closure(root / notebooks[stage], root)
        deps = expected["stages"][stage]["deps"] = rewritten_deps(
            old["stages"][stage]["deps"], closure
        )
        if deps == old["stages"][stage]["deps"]:
            continue
        prefix = lines[start][: indent(lines[start])] + "- "
        kept = [line for line in lines[start:end] if not is_library(yaml.safe_load(line)[0])]
        lines[start:end] = kept + [f"{prefix}{file}\n" for file in closure]
        changed.append(stage)
    new_text = "".join(lines)
    if yaml.safe_load(new_text) != expected:
        raise RuntimeError("dvc.yaml rewrite changed more than the library deps; nothing written")
    if changed:
        path.write_text(new_text)
    return sorted(changed)


def parameters_cell(path: Path) -> dict:
    """Name -> default of each ``name = literal`` in the notebook's cell tagged ``parameters``."""
    cells = json.loads(path.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{path}: {len(tagged)} cells tagged 'parameters', expected 1")
    source = tagged[0]["source"]
    defaults = {}
    for node in ast.parse(source if isinstance(source, str) else "".join(source)).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if not isinstance(target, ast.Name) or len(node.targets) != 1:
            raise ValueError(f"{path}: parameters cell line {node.lineno} is not `name = value`")
        try:
            defaults[target.id] = ast.literal_eval(node.value)
        except ValueError as error:
            raise ValueError(f"{path}: parameter {target.id} is not a literal") from error
    return defaults


def notebook_outputs(root: Path) -> dict[str, list[str]]:
    """Notebook stem -> dotted names of the parameters it writes (``notebook.py: OUTPUTS``)."""
    for node in ast.parse((root / NOTEBOOK_SETUP).read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "OUTPUTS":
            table = ast.literal_eval(node.value)
            return {stem: [".".join(path) for path in paths] for stem, paths in table.items()}
    raise ValueError(f"{NOTEBOOK_SETUP}: no OUTPUTS table")


def leaves(value, key: str):
    """(dotted key, value) of every scalar in a nested parameter."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from leaves(item, f"{key}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{key}.{index}")
    else:
        yield key, value


def is_path(key: str, value, root: Path) -> bool:
    """Whether a parameter names a path; ``""`` (none) does not."""
    if not isinstance(value, str) or not value:
        return False
    return "/" in value or bool(PATH_KEY.search(key.rpartition(".")[2])) or (root / value).exists()


def resolve(entry: str, params: dict) -> str:
    """A ``dvc.yaml`` path with its ``${section.key}`` filled in from ``params``, normalised."""

    def value(match: re.Match) -> str:
        found = params
        for key in match.group(1).split("."):
            if not isinstance(found, dict) or key not in found:
                raise KeyError(f"dvc.yaml: {match.group(0)} is not in params.yaml")
            found = found[key]
        return str(found)

    return os.path.normpath(TEMPLATE.sub(value, entry))


def stage_paths(stage: dict, kinds: tuple[str, ...], params: dict) -> list[tuple[str, str]]:
    """(entry as written, resolved path) of a stage's ``deps``/``outs``/... of ``kinds``."""
    entries = [e for kind in kinds for item in stage.get(kind, [])
               for e in ([item] if isinstance(item, str) else item)]  # fmt: skip
    return [(entry, resolve(entry, params)) for entry in entries]


def stage_reads(
    root: Path, stage: dict, defaults: dict, params: dict, written: list[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """(why, path) of each path a stage whose notebook's parameters cell holds ``defaults``
    reads (see the module docstring), and one line per parameter in ``written`` (dotted) that
    no out of the stage covers, or per out that a parameter not in ``written`` names."""
    outs = [path for _, path in stage_paths(stage, ("outs", "metrics", "plots"), params)]
    reads, lines = [], []
    for name in defaults:
        for key, value in leaves(params.get(name, defaults[name]), name):
            if not is_path(key, value, root):
                continue
            path = os.path.normpath(value)
            own = any(covers(out, path) or covers(path, out) for out in outs)
            if key in written and not own:
                lines.append(f"{key} = {value} is written but no out of the stage covers it")
            elif own and key not in written:
                lines.append(f"{key} = {value} is an out but {NOTEBOOK_SETUP}: OUTPUTS omits it")
            elif key not in written:
                reads.append((f"it reads {key}", path))
    encoder = token_encoder(root, params)
    if encoder and any(CHECKPOINT_KEY.search(why.rpartition(".")[2]) for why, _ in reads):
        reads.append(("its checkpoint's identity tokens are made by train.identity_backend's "
                      "encoder", encoder))  # fmt: skip
    for data, (key, why) in NAMED_BY.items():
        named = resolve(f"${{{key}}}", params)
        paths = [path for _, path in reads]
        if named not in (".", *paths) and any(covers(p, data) or covers(data, p) for p in paths):
            reads.append((f"it reads {data}: {why}", named))
    return reads, lines


def token_encoder(root: Path, params: dict) -> str | None:
    """The folder (repository-relative) of the encoder ``train.identity_backend`` names, None
    for a backend with no weights in the repository (dlib's come with its package)."""
    sys.path.insert(0, str(root))
    try:
        from paincontrol_lib.identity import BACKENDS
    finally:
        sys.path.pop(0)
    folder = getattr(
        BACKENDS.get(params.get("train", {}).get("identity_backend")), "default_dir", None
    )
    return os.path.relpath(folder, REPO_ROOT) if folder else None


def data_dep_problems(
    root: Path, dvc_yaml: dict | None = None, params: dict | None = None
) -> list[str]:
    """One line per data dep a papermill stage lacks or lists needlessly, per parameter it
    writes that no out of it covers, and per ``params.yaml`` section its notebook receives that
    the stage's ``params`` do not track (or the reverse). ``dvc_yaml`` and ``params`` default to
    the parsed ``root/dvc.yaml`` and ``root/params.yaml``."""
    if dvc_yaml is None:
        dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    if params is None:
        params = yaml.safe_load((root / "params.yaml").read_text())
    written_by = notebook_outputs(root)
    lines = []
    for name, notebook in stage_notebooks(dvc_yaml).items():
        stage, stem = dvc_yaml["stages"][name], Path(notebook).stem
        if stem not in written_by:
            raise KeyError(f"{NOTEBOOK_SETUP}: OUTPUTS has no entry for {stem}")
        defaults = parameters_cell(root / notebook)
        sections = {key for key in defaults if key in params}
        tracked = {entry for entry in stage.get("params", []) if isinstance(entry, str)}
        off = [f"params lacks {s} (its notebook receives it)" for s in sorted(sections - tracked)]
        off += [f"params has {t} (its notebook does not receive it)" for t in sorted(tracked)
                if t.split(".")[0] not in sections]  # fmt: skip
        reads, written_off = stage_reads(root, stage, defaults, params, written_by[stem])
        deps = [(entry, path) for entry, path in stage_paths(stage, ("deps",), params)
                if not is_library(entry) and path != os.path.normpath(notebook)]  # fmt: skip
        off += written_off
        off += [f"missing dep {path} ({why})" for why, path in reads
                if not any(covers(dep, path) for _, dep in deps)]  # fmt: skip
        off += [f"warning: extra dep {entry} (the stage reads no path in it: reruns needlessly)"
                for entry, dep in deps
                if not any(covers(dep, p) or covers(p, dep) for _, p in reads)]  # fmt: skip
        lines += [f"{name}: {line}" for line in off]
    return lines


def report_lines(report: dict[str, tuple[list[str], list[str]]]) -> list[str]:
    """One line per missing or extra dep of ``missing_and_extra``'s report."""
    lines = []
    for stage, (missing, extra) in report.items():
        lines += [f"{stage}: missing {dep} (the notebook runs it)" for dep in missing]
        lines += [
            f"{stage}: warning: extra {dep} (not run: DVC reruns needlessly)" for dep in extra
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report, do not write; exit 1 if off")
    args = parser.parse_args(argv)
    if not args.check:
        changed = write_deps(REPO_ROOT)
        print(f"dvc.yaml: library deps rewritten for {', '.join(changed) or 'no stage'}")
        return 0
    library = report_lines(missing_and_extra(REPO_ROOT))
    data = data_dep_problems(REPO_ROOT)
    if library:
        print("\n".join(library + ["dvc.yaml library deps are off: run `make deps`"]))
    if data:
        print("\n".join(data + ["dvc.yaml data deps are off: edit them by hand"]))
    if library or data:
        return 1
    print("dvc.yaml deps match the notebooks' imports and the paths the stages read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
