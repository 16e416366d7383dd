"""README results tables are rendered from the metrics files: the committed README agrees with the
committed metrics, and a number typed into a table is caught."""

import importlib.util

from paincontrol_lib.config import REPO_ROOT

spec = importlib.util.spec_from_file_location("results", REPO_ROOT / "scripts" / "results.py")
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)


def test_committed_readme_tables_match_the_committed_metrics():
    assert results.main(["--check"]) == 0


def test_a_changed_number_in_a_table_is_caught(tmp_path):
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("<!-- results:evaluate -->")
    end = readme.index("<!-- /results:evaluate -->")
    block = readme[start:end]
    digit = next(i for i, ch in enumerate(block) if ch.isdigit() and i > 30)
    changed = block[:digit] + str((int(block[digit]) + 1) % 10) + block[digit + 1 :]
    copy = tmp_path / "README.md"
    copy.write_text(readme[:start] + changed + readme[end:])
    assert results.main(["--check", "--readme", str(copy)]) == 1
    assert results.main(["--readme", str(copy)]) == 0  # rewriting mends it
    assert copy.read_text() == readme


def test_no_result_numbers_typed_into_the_readme_prose():
    """Numbers with three or more decimals are measurements; outside the rendered tables and code
    blocks the README must not carry any (they drift from the metrics)."""
    import re

    readme = (REPO_ROOT / "README.md").read_text()
    prose = re.sub(r"<!-- results:(\w+) -->.*?<!-- /results:\1 -->", "", readme, flags=re.S)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    typed = re.findall(r"(?<![\w.])\d+\.\d{3,}\b", prose)
    assert not typed, f"hand-typed measurements in README.md: {typed}"
