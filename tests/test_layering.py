"""The library's import layering, checked statically (``ast``, nothing is imported).

Each module sits on a layer (``LAYERS``, the one place the architecture is written down) and may
import only modules of its own layer or lower; no modules import each other in a cycle; stage
modules stand on the core only, never on each other; notebooks stay thin (they call stage
functions, which do the loops and the writing). The import parser is scripts/dvc_deps.py's.
"""

from __future__ import annotations

import ast
import sys

import pytest

from paincontrol_lib.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import dvc_deps  # noqa: E402

LIBRARY = dvc_deps.LIBRARY

# (module prefix, layer), bottom to top. A prefix covers the module and everything under it,
# except the bare package, whose entry covers its (trivial) __init__ only; the longest prefix
# wins. A module that no entry covers fails test_every_module_has_a_layer: place it here.
LAYERS = [
    (LIBRARY, 0),
    (f"{LIBRARY}.config", 0),
    (f"{LIBRARY}.io", 0),
    (f"{LIBRARY}.facs", 0),
    (f"{LIBRARY}.seeds", 0),
    (f"{LIBRARY}.stats", 0),
    (f"{LIBRARY}.parallel", 0),  # spawned worker pools that fail fast
    (f"{LIBRARY}.figures", 0),  # the one figure theme and labelled image grids
    (f"{LIBRARY}.facemesh", 1),
    (f"{LIBRARY}.au_to_mesh", 2),
    (f"{LIBRARY}.au_basis", 2),  # the AU->mesh model in the canonical frame, and its inverse
    (f"{LIBRARY}.landmarks.align", 2),  # the canonical frame: geometry on au_to_mesh's face
    (f"{LIBRARY}.data", 3),
    (f"{LIBRARY}.landmarks", 3),
    (f"{LIBRARY}.identity", 4),
    (f"{LIBRARY}.warp", 4),
    (f"{LIBRARY}.au_reading", 4),  # the AU readers: mesh, learned ridge, pixel CNN, py-feat
    (f"{LIBRARY}.realism", 4),  # realism metrics and the feature network they use
    (f"{LIBRARY}.model", 5),
    (f"{LIBRARY}.retarget", 6),
    (f"{LIBRARY}.transfer", 6),
    (f"{LIBRARY}.evaluate", 7),
    (f"{LIBRARY}.augment", 7),
    (f"{LIBRARY}.study", 7),
    (f"{LIBRARY}.stages", 8),
    (f"{LIBRARY}.findings", 9),  # each notebook's closing findings, from its metrics
    (f"{LIBRARY}.notebook", 9),  # a notebook's parameters, paths and scratch folder
    (f"{LIBRARY}.runner", 9),  # runs a stage notebook (dvc.yaml's commands)
    (f"{LIBRARY}.check", 9),  # paincontrol check: external weight folders
    (f"{LIBRARY}.cli", 9),
]
STAGES = f"{LIBRARY}.stages"

# Notebooks held to test_notebooks_are_thin: all of them; narrow this only while rewriting one.
THIN_NOTEBOOKS = sorted(p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))
# Calls that write files or split data: a notebook leaves them to the stage functions.
FORBIDDEN_CALLS = {
    "open",
    "write_json",
    "atomic_write_bytes",
    "to_csv",
    "to_parquet",
    "write_text",
    "write_bytes",
    "savefig",
    "save_figure",
    "subject_split",
}


def layer_of(module: str) -> int | None:
    """The layer of ``module`` by its longest ``LAYERS`` prefix; None if no entry covers it."""
    matches = [
        (len(prefix), layer)
        for prefix, layer in LAYERS
        if module == prefix or (prefix != LIBRARY and module.startswith(prefix + "."))
    ]
    return max(matches)[1] if matches else None


def library_modules() -> dict[str, str]:
    """Dotted name -> repo-relative path of every module of the library."""
    files = sorted((REPO_ROOT / LIBRARY).rglob("*.py"))
    return {dvc_deps.module_name(p, REPO_ROOT): p.relative_to(REPO_ROOT).as_posix() for p in files}


def library_imports() -> list[tuple[str, str, int, str]]:
    """(importer, its path, line, imported module) of every library import, lazy ones too."""
    return [
        (module, path, line, imported)
        for module, path in library_modules().items()
        for line, imported in dvc_deps.file_imports(REPO_ROOT / path, REPO_ROOT)
    ]


def test_every_module_has_a_layer():
    names = set(library_modules()) | {imported for *_, imported in library_imports()}
    unknown = sorted(name for name in names if layer_of(name) is None)
    assert not unknown, "\n".join(f"unknown module {name}: add it to LAYERS" for name in unknown)


def test_no_import_runs_up_the_layers():
    offences = [
        f"{path}:{line}  {importer} (L{layer_of(importer)}) -> {imported} (L{layer_of(imported)})"
        for importer, path, line, imported in library_imports()
        if None not in (layer_of(importer), layer_of(imported))
        and layer_of(imported) > layer_of(importer)
    ]
    assert not offences, "imports up the layers:\n" + "\n".join(offences)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` that hold more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_strongly_connected_finds_cycles_only():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"d"}, "e": {"a"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycles():
    """Module granularity; importing ``pkg.sub`` is an edge to ``pkg.sub`` only, not to ``pkg``
    (only explicit imports count); lazy imports count too: a cycle is a cycle."""
    graph: dict[str, set[str]] = {}
    where = {}
    for importer, path, line, imported in library_imports():
        if imported != importer:
            graph.setdefault(importer, set()).add(imported)
            where.setdefault((importer, imported), f"{path}:{line}")
    cycles = [
        f"cycle among {', '.join(component)}:"
        + "".join(
            f"\n  {where[a, b]}  {a} -> {b}"
            for a in component
            for b in component
            if (a, b) in where
        )
        for component in strongly_connected(graph)
    ]
    assert not cycles, "\n".join(cycles)


def test_stage_modules_import_core_only():
    """A stage module runs on layers 0-7 only: never another stage, and the stages package's
    __init__ imports nothing (importing any stage executes it)."""
    stages = [m for m in library_modules() if m.startswith(STAGES + ".")]
    assert len(stages) == len(THIN_NOTEBOOKS), f"one stage module per notebook, found {stages}"
    offences = [
        f"{path}:{line}  {importer} -> {imported}"
        for importer, path, line, imported in library_imports()
        if importer == STAGES
        or (importer.startswith(STAGES + ".") and layer_of(imported) == layer_of(STAGES))
    ]
    assert not offences, "imports between stages (or by stages/__init__):\n" + "\n".join(offences)


def thin_offences(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each loop, ``with``, definition or forbidden call in a notebook cell."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            found.append((node.lineno, "loop"))
        elif isinstance(node, ast.With | ast.AsyncWith):
            found.append((node.lineno, "with statement"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append((node.lineno, f"definition of {node.name}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in FORBIDDEN_CALLS:
                found.append((node.lineno, f"call to {name}()"))
    return sorted(found)


@pytest.mark.parametrize("notebook", THIN_NOTEBOOKS)
def test_notebooks_are_thin(notebook):
    """Notebooks call stage functions and show results: loops, ``with`` blocks, definitions and
    file writing belong in ``paincontrol_lib.stages``, where they are tested."""
    offences = [
        f"cell {index} line {line}: {what}"
        for index, tree in dvc_deps.notebook_cells(REPO_ROOT / "notebooks" / notebook)
        for line, what in thin_offences(tree)
    ]
    assert not offences, f"{notebook} is not thin:\n" + "\n".join(offences)
