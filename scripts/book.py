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
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = "reports/notebooks"
FIGURES = "reports/figures"
# Repository files the pages link to: staged beside them, so the book offers them as downloads.
LINKED_FILES = ("CITATION.cff", "LICENSE", "params.yaml")
NOTICES = "THIRD_PARTY_NOTICES"  # a page of the book (Documentation)
# A Markdown link to a folder of the repository: the book has no page for a folder, so it shows
# the link's text (the path) where GitHub shows a folder listing.
FOLDER_LINK = re.compile(r"\[([^\]]+)\]\(((?:\.\./)*[\w.-]+(?:/[\w.-]+)*/)\)")


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
    for name in (*LINKED_FILES, f"{NOTICES}.md"):
        shutil.copy2(root / name, src / name)
    for folder in ("docs", NOTEBOOKS, FIGURES):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, src / folder)
    for notebook in (src / NOTEBOOKS).glob("*.ipynb"):
        hide_boilerplate(notebook)
    for page in [src / "README.md", src / f"{NOTICES}.md", *(src / "docs").glob("*.md")]:
        text = unlink_folders(page.read_text(), root / page.parent.relative_to(src))
        page.write_text(numbered_figures(text, page.stem.lower()))
    docs, notebooks = pages(root)
    toc = {
        "format": "jb-book",
        "root": "README",
        "parts": [
            {
                "caption": "Results: the executed notebooks (default run)",
                "chapters": [{"file": nb} for nb in notebooks],
            },
            {
                "caption": "Documentation",
                "chapters": [{"file": d} for d in docs] + [{"file": NOTICES}],
            },
        ],
    }
    config = {
        "title": "PainControl: a reproducible compendium",
        "author": "the PainControl contributors",
        "copyright": "",
        "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},
        "bibtex_bibfiles": ["docs/references.bib"],
        "sphinx": {"config": {"html_show_copyright": False, "myst_heading_anchors": 3}},
        "html": {"use_repository_button": False, "use_issues_button": False},
    }
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


# Cell tags -> what the book does with the cell: parameter cells (the defaults and what the
# pipeline injected) are removed, their values are in params.yaml; set-up code is folded away.
HIDDEN = {"parameters": "remove-cell", "injected-parameters": "remove-cell",
          "boilerplate": "hide-input"}  # fmt: skip


def hide_boilerplate(notebook: Path) -> None:
    """Tag a staged notebook's cells for the book as :data:`HIDDEN` says."""
    import json

    book = json.loads(notebook.read_text())
    for cell in book["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        tags += [HIDDEN[t] for t in list(tags) if t in HIDDEN and HIDDEN[t] not in tags]
    notebook.write_text(json.dumps(book, indent=1, ensure_ascii=False))


# A paragraph that is one Markdown image: in the book it becomes a numbered figure whose caption
# is the image's alt text (GitHub shows the plain image; the book numbers every figure).
LONE_IMAGE = re.compile(r"^!\[([^\]]+)\]\(([^)\s]+)\)[ \t]*$", re.M)


def numbered_figures(text: str, page: str) -> str:
    """``text`` with each image that stands alone on its line as a MyST figure, named
    ``fig-<page>-<n>``, captioned with its alt text."""
    count = iter(range(1, 1000))

    def figure(match: re.Match) -> str:
        name = f"fig-{re.sub(r'[^a-z0-9]+', '-', page)}-{next(count)}"
        return f"```{{figure}} {match.group(2)}\n:name: {name}\n\n{match.group(1)}\n```"

    return LONE_IMAGE.sub(figure, text)


def unlink_folders(text: str, repo_dir: Path) -> str:
    """``text`` with each Markdown link to a folder of the repository (relative to ``repo_dir``,
    the page's folder there) replaced by the link's text."""

    def replace(match: re.Match) -> str:
        target = (repo_dir / match.group(2)).resolve()
        return match.group(1) if target.is_dir() else match.group(0)

    return FOLDER_LINK.sub(replace, text)


def build(root: Path, out: Path) -> Path:
    """Stage and build; returns the book's index.html."""
    src = out / "src"
    stage(root, src)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(src), "--path-output", str(out), "--quiet",
               "--warningiserror", "--keep-going"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        warnings = [line for line in (run.stdout + run.stderr).splitlines() if "WARNING" in line]
        raise RuntimeError(
            "jupyter-book build failed (every Sphinx warning is an error: a dead link, a missing "
            "figure or citation):\n"
            + "\n".join(warnings[:40])
            + f"\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
        )
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
