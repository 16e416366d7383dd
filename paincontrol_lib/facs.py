"""FACS action units and the PSPI pain score (Prkachin & Solomon Pain Intensity).

Bottom layer: names and arithmetic shared by the datasets, the AU estimators and the metrics.
AU columns use py-feat's spelling (``AU04``) so tables look like py-feat's ``Fex``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAIN_AUS = ("AU04", "AU06", "AU07", "AU09", "AU10", "AU43")
BINARY_AUS = ("AU43",)  # coded present/absent (0/1), not 0-5
PSPI_MAX = 16
# FACS names (Ekman, Friesen & Hager 2002) of the AUs SynthPain renders, for figures and tables.
AU_DESCRIPTIONS = {
    "AU01": "inner brow raiser",
    "AU02": "outer brow raiser",
    "AU04": "brow lowerer",
    "AU06": "cheek raiser",
    "AU07": "lid tightener",
    "AU09": "nose wrinkler",
    "AU10": "upper lip raiser",
    "AU12": "lip corner puller",
    "AU25": "lips part",
    "AU26": "jaw drop",
    "AU43": "eyes closed",
}


def au_name(code: int | str) -> str:
    """Normalise ``4``, ``"4"``, ``"AU4"`` or ``"au04"`` to ``"AU04"``."""
    text = str(code).strip().upper().removeprefix("AU")
    if not text.isdigit():
        raise ValueError(f"not an action-unit code: {code!r}")
    return f"AU{int(text):02d}"


def pspi(aus) -> np.ndarray | float:
    """PSPI = AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43 (0-16).

    ``aus`` is a mapping or DataFrame with AU columns; missing pain AUs count as 0.
    """
    if isinstance(aus, pd.DataFrame):
        get = lambda name: aus[name].to_numpy(float) if name in aus else np.zeros(len(aus))  # noqa: E731
    else:
        get = lambda name: np.asarray(aus.get(name, 0.0), dtype=float)  # noqa: E731
    value = (
        get("AU04")
        + np.maximum(get("AU06"), get("AU07"))
        + np.maximum(get("AU09"), get("AU10"))
        + get("AU43")
    )
    return float(value) if np.ndim(value) == 0 else value
