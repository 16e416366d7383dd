"""The supplement a reader opens without running anything: the default run's executed notebooks
and figures are committed (DVC outs with ``cache: false``), and ``make book`` builds them with
the README and docs/ into a static HTML book that a headless Chromium opens page by page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_study_browser import _browser

from paincontrol_lib.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import book  # noqa: E402

# figures + executed notebooks in git; 27 MB since SynthPain v2 (the AU atlas gained zoomed
# crops and change maps, +1.5 MB): issue 33 trims the figures
MAX_REPORT_BYTES = 27_000_000


def _report_outs() -> list[str]:
    """Every figure and executed notebook that dvc.yaml lists, with its ``cache`` setting."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    found = []
    for stage in stages.values():
        for out in stage.get("outs", []):
            path, spec = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            if path.startswith(("reports/figures/", "reports/notebooks/", "reports/logs/")):
                found.append((path, (spec or {}).get("cache", True)))
    return found


def test_results_are_committed_uncached_and_small():
    outs = _report_outs()
    assert len(outs) >= 30
    cached = [path for path, cache in outs if cache is not False]
    assert not cached, f"figures and notebooks must be `cache: false` outs: {cached}"
    tracked = set(
        subprocess.run(
            ["git", "ls-files", "reports"],
            cwd=REPO_ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.split()
    )
    missing = [path for path, _ in outs if path not in tracked]
    assert not missing, f"not committed (run `make repro` and commit reports/): {missing}"
    size = sum((REPO_ROOT / path).stat().st_size for path, _ in outs)
    assert size <= MAX_REPORT_BYTES, f"committed reports are {size / 1e6:.1f} MB"


def test_every_figure_has_a_print_version():
    pngs = {p for p, _ in _report_outs() if p.endswith(".png")}
    assert pngs and all(p[:-4] + ".pdf" in {q for q, _ in _report_outs()} for p in pngs)


def _image_outputs(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in out.get("data", {}) for c in cells for out in c.get("outputs", []))


MAX_LINES = 20  # printed text and raw reprs: lines; tables: body rows (notebook.SHOWN_ROWS)


def _table_rows(html: str) -> int:
    """Body rows of the HTML tables of one output."""
    return sum(body.count("<tr") for body in re.findall(r"<tbody.*?</tbody>", html, re.S))


def _noise(notebook: Path) -> list[str]:
    """Outputs a reader should not see: warning text beyond the one line per cell that says
    where the stage's log has it, printed reprs of figures or paths, and printed text, raw reprs
    or tables longer than :data:`MAX_LINES`."""
    noise = []
    for i, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = "".join(out.get("text", []))
            if out.get("name") == "stderr":
                if not re.fullmatch(r"\[runner\] [^\n]*reports/logs/\S+\.log\n?", text):
                    noise.append(f"cell {i}: warning text in the notebook: {text[:120]!r}")
                continue
            html = "".join(data.get("text/html", []))
            if "image/png" not in data:
                text += "".join(data.get("text/plain", []))
            if "PosixPath(" in text or "<Figure size" in text:
                noise.append(f"cell {i}: a printed path or figure repr: {text.strip()[:120]}")
            if "<table" in html:
                if _table_rows(html) > MAX_LINES:
                    noise.append(f"cell {i}: a table of {_table_rows(html)} rows")
            elif text.strip().count("\n") >= MAX_LINES:
                noise.append(f"cell {i}: {text.strip().count(chr(10)) + 1} lines: {text[:80]!r}")
    return noise


@pytest.mark.parametrize(
    "notebook", sorted((REPO_ROOT / book.NOTEBOOKS).glob("*.ipynb")), ids=lambda p: p.stem
)
def test_executed_notebook_tells_its_result_without_noise(notebook):
    assert _image_outputs(notebook) >= 1, f"{notebook.name} shows no figure"
    text = notebook.read_text()
    assert "## Findings" in text and "## Try this" in text and "dvc exp run -S" in text
    noise = _noise(notebook)
    assert not noise, noise
    log = REPO_ROOT / "reports" / "logs" / f"{notebook.stem}.log"
    assert log.is_file(), f"{log} missing: the runner writes each stage's warnings there"


DISPLAYED = ("display_data", "execute_result")


def _figure_cells(notebook: Path) -> list[dict]:
    cells = json.loads(notebook.read_text())["cells"]
    return [c for c in cells if any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]


@pytest.mark.parametrize(
    "notebook", sorted((REPO_ROOT / book.NOTEBOOKS).glob("*.ipynb")), ids=lambda p: p.stem
)
def test_every_notebook_figure_is_numbered_and_captioned(notebook):
    """Each figure a notebook shows carries its caption and label (myst-nb's cell metadata
    ``mystnb.figure``), so the book numbers it and a reader knows what it shows."""
    for cell in _figure_cells(notebook):
        figure = cell["metadata"].get("mystnb", {}).get("figure", {})
        source = "".join(cell["source"])[:60]
        assert len(figure.get("caption", "")) > 40 and figure.get("name", "").startswith("fig-"), (
            f"{notebook.name}: figure without a caption: {source}"
        )
        shown = [o for o in cell["outputs"] if o.get("output_type") in DISPLAYED]
        assert len(shown) == 1, f"{notebook.name}: a captioned cell shows one thing: {source}"


def test_the_transfer_animation_plays():
    """The GIF loops over every frame of the sequence (the browser test checks it loads)."""
    from PIL import Image

    gif = Image.open(REPO_ROOT / "reports" / "figures" / "transfer_animation.gif")
    assert gif.n_frames >= 3 and gif.info.get("loop") == 0


def test_book_builds_offline_and_every_page_renders_in_chromium(tmp_path):
    index = book.build(REPO_ROOT, tmp_path / "book")
    html = index.parent
    docs, notebooks = book.pages(REPO_ROOT)
    driver = _browser(tmp_path / "chromium-profile")
    try:
        driver.get(index.as_uri())
        assert "PainControl" in driver.title
        for page in notebooks:
            driver.get((html / f"{page}.html").as_uri())
            images = driver.find_elements("css selector", "article img")
            expected = _image_outputs(REPO_ROOT / f"{page}.ipynb")
            assert len(images) >= expected, f"{page}: {len(images)} images, {expected} expected"
            broken = driver.execute_script(
                "return Array.from(document.querySelectorAll('article img'))"
                ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
            )
            assert not broken, f"{page}: images that do not load: {broken}"
            assert driver.find_elements("css selector", "article h1"), f"{page}: no title"
            assert "Findings" in driver.find_element("tag name", "article").text
            captions = driver.find_elements("css selector", "article figure figcaption")
            numbered = [c for c in captions if c.text.startswith("Fig.")]
            assert len(numbered) >= expected, f"{page}: {len(numbered)} numbered captions"
            if page.endswith("03_transfer"):  # the animation loaded, as a GIF
                gifs = driver.execute_script(
                    "return Array.from(document.querySelectorAll('article img'))"
                    ".filter(i => i.src.includes('.gif') && i.naturalWidth > 0).length"
                )
                assert gifs >= 1, f"{page}: the transfer animation did not load"
        for page in docs:
            driver.get((html / f"{page}.html").as_uri())
            assert driver.find_elements("css selector", "article h1"), f"{page}: no title"
        driver.get((html / "docs" / "references.html").as_uri())
        assert len(driver.find_elements("css selector", "article .citation")) >= 10
    finally:
        driver.quit()
