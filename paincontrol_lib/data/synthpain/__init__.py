"""SynthPain: the embedded synthetic pain-face dataset with exact ground truth."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def records(root: Path) -> pd.DataFrame:
    """SynthPain's table in the common record schema (AUs it never uses are exactly 0)."""
    from paincontrol_lib.data.records import AU_COLUMNS, finish_records
    from paincontrol_lib.data.synthpain.generate import load_table

    table = load_table(root)
    table = table.assign(image=[str(Path(root) / p) for p in table["image"]])
    for col in AU_COLUMNS:
        if col not in table:
            table[col] = 0.0
    return finish_records(table, "synthpain")
