"""Results tables in README.md and docs/*.md are rendered from the metrics files: the committed
pages agree with the committed metrics, a number typed into a table is caught, and no
measurement is typed into the prose around them."""

import importlib.util
import re

import pytest

from paincontrol_lib.config import REPO_ROOT

spec = importlib.util.spec_from_file_location("results", REPO_ROOT / "scripts" / "results.py")
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_every_page_is_rendered_by_default():
    """`make results` (no arguments) renders and checks README.md and every docs/*.md."""
    assert results.pages() == PAGES
    assert len(PAGES) > 1


def test_committed_pages_match_the_committed_metrics():
    assert results.main(["--check"]) == 0


def test_every_results_block_is_rendered_somewhere():
    """Each renderer has a block in some page (a table dropped in a move is caught), and each
    block names a known renderer."""
    used = {m.group(2) for page in PAGES for m in results.BLOCK.finditer(page.read_text())}
    assert used == set(results.RENDERERS), (
        f"renderers without a block: {sorted(set(results.RENDERERS) - used)}; "
        f"blocks without a renderer: {sorted(used - set(results.RENDERERS))}"
    )


def test_a_changed_number_in_a_table_is_caught(tmp_path):
    page = (REPO_ROOT / "docs" / "evaluation.md").read_text()
    start = page.index("<!-- results:evaluate -->")
    end = page.index("<!-- /results:evaluate -->")
    block = page[start:end]
    digit = next(i for i, ch in enumerate(block) if ch.isdigit() and i > 30)
    changed = block[:digit] + str((int(block[digit]) + 1) % 10) + block[digit + 1 :]
    copy = tmp_path / "evaluation.md"
    copy.write_text(page[:start] + changed + page[end:])
    assert results.main(["--check", str(copy)]) == 1
    assert results.main([str(copy)]) == 0  # rewriting mends it
    assert copy.read_text() == page
    assert results.main(["--check", "--readme", str(copy)]) == 0  # the older spelling


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_result_numbers_typed_into_the_prose(page):
    """Outside the rendered tables and code blocks README.md and docs/*.md carry no number that
    looks typed from a run (they drift from the metrics); scripts/results.py: NOT_RESULTS lists
    the phrases whose numbers are not results."""
    typed = results.typed_numbers(page.read_text())
    assert not typed, f"hand-typed measurements in {page.relative_to(REPO_ROOT)}: {typed}"


def test_a_two_decimal_or_percent_result_typed_into_prose_is_caught():
    text = (
        "The mesh NME is 0.03 and detection 98 % (typed).\n"
        "<!-- results:landmarks -->\n| NME | 0.034 |\n<!-- /results:landmarks -->\n"
        "```\nlr = 0.0001\n```\n"
        "MediaPipe 0.10.21 on Python 3.11 with 2 cores, 95 %\nCIs, 0.5 px.\n"
    )
    assert results.typed_numbers(text) == ["0.03", "98 %"]


def test_every_not_results_phrase_is_used():
    """An exemption whose phrase left the pages would excuse the next typed number."""
    prose = " ".join(re.sub(r"\s+", " ", page.read_text()) for page in PAGES)
    unused = [phrase for phrase in results.NOT_RESULTS if phrase not in prose]
    assert not unused, f"NOT_RESULTS phrases in no page: {unused}"
