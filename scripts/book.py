"""Build the compendium as a static HTML book (Jupyter Book 1, Sphinx): the README as its front
page, docs/*.md, and the executed notebooks of the default run under reports/notebooks/ with
their outputs as committed. Nothing is executed and nothing is downloaded.

    python scripts/book.py                    # -> build/book/_build/html/index.html
    python scripts/book.py --out /tmp/book    # elsewhere

Jupyter Book only reads files below its source folder, so the pages are staged into
``<out>/src`` in the repository's own layout (README.md, docs/, reports/notebooks/,
reports/figures/): every relative link and image path of the Markdown keeps working.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = "reports/notebooks"
FIGURES = "reports/figures"


def pages(root: Path) -> tuple[list[str], list[str]]:
    """(docs pages, executed notebooks) as paths relative to ``root``, without suffixes."""
    docs = sorted(p for p in (root / "docs").glob("*.md"))
    index = [p for p in docs if p.stem == "index"]
    docs = index + [p for p in docs if p.stem != "index"]
    notebooks = sorted((root / NOTEBOOKS).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no executed notebooks in {root / NOTEBOOKS}: run `make repro`")
    return [_stem(p, root) for p in docs], [_stem(p, root) for p in notebooks]


def _stem(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def stage(root: Path, src: Path) -> None:
    """Copy the book's pages (and the figures they show) into ``src``, in the repo's layout."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    shutil.copy2(root / "README.md", src / "README.md")
    for folder in ("docs", NOTEBOOKS, FIGURES):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, src / folder)
    docs, notebooks = pages(root)
    toc = {
        "format": "jb-book",
        "root": "README",
        "parts": [
            {
                "caption": "Results: the executed notebooks (default run)",
                "chapters": [{"file": nb} for nb in notebooks],
            },
            {"caption": "Documentation", "chapters": [{"file": d} for d in docs]},
        ],
    }
    config = {
        "title": "PainControl: a reproducible compendium",
        "author": "the PainControl contributors",
        "copyright": "",
        "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "sphinx": {
            "config": {
                "html_show_copyright": False,
                "suppress_warnings": [
                    "myst.header",
                    "myst.xref_missing",
                    "mystnb.unknown_mime_type",
                ],
            }
        },
        "html": {"use_repository_button": False, "use_issues_button": False},
    }
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def build(root: Path, out: Path) -> Path:
    """Stage and build; returns the book's index.html."""
    src = out / "src"
    stage(root, src)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(src), "--path-output", str(out), "--quiet"]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
    index = out / "_build" / "html" / "index.html"
    if not index.is_file():
        raise RuntimeError(f"jupyter-book reported success but wrote no {index}")
    return index


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "book"))
    args = parser.parse_args(argv)
    try:
        index = build(ROOT, Path(args.out))
    except (FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"book: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
