"""The adapter registry: records of any supported dataset, by name, in the common schema.

The adapters (``synthpain``, ``unbc``, ``delaware``, ``folder``) build on ``data.records`` (the
schema and its helpers) and never import this module, so the registry sits above them all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paincontrol_lib.data import delaware, folder, unbc
from paincontrol_lib.data.synthpain import records as synthpain_records

ADAPTERS = {
    "synthpain": synthpain_records,
    "unbc": unbc.records,
    "delaware": delaware.records,
    "folder": folder.records,
}


def load_records(source: str, root: str | Path, **options) -> pd.DataFrame:
    """Records of ``source`` (synthpain | unbc | delaware | folder) found under ``root``."""
    if source not in ADAPTERS:
        raise ValueError(f"unknown data.source {source!r}; choose one of {sorted(ADAPTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{source}: dataset folder {root} does not exist")
    return ADAPTERS[source](root, **options)
