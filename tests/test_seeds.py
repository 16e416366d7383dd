"""Random streams come from one base seed and a named purpose, never from scattered salts."""

import re

import numpy as np
import pytest

from paincontrol_lib.config import REPO_ROOT
from paincontrol_lib.seeds import PURPOSES, stream


def test_streams_are_reproducible_and_distinct_per_purpose():
    a = stream("heldout_rows", 0).random(4)
    np.testing.assert_array_equal(a, stream("heldout_rows", 0).random(4))
    assert not np.array_equal(a, stream("transfer_targets", 0).random(4))
    assert not np.array_equal(a, stream("heldout_rows", 1).random(4))
    assert len(set(PURPOSES.values())) == len(PURPOSES)
    with pytest.raises(KeyError, match="add it to seeds.PURPOSES"):
        stream("no such purpose", 0)


def test_no_hex_salts_outside_the_seeds_module():
    salt = re.compile(r"default_rng\(\[[^\]]*0x[0-9A-Fa-f]+")
    found = [
        f"{path.relative_to(REPO_ROOT)}: {line.strip()}"
        for path in (REPO_ROOT / "paincontrol_lib").rglob("*.py")
        if path.name != "seeds.py"
        for line in path.read_text().splitlines()
        if salt.search(line)
    ]
    assert not found, "\n".join(found)
