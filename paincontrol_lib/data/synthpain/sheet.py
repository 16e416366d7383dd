"""Contact sheet: one row per person, frames ordered by PSPI, so identity varies down the
rows and pain visibly grows along them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def pick_frames(rows: pd.DataFrame, n_columns: int) -> pd.DataFrame:
    """The neutral reference, then frames spread evenly over the person's PSPI range."""
    neutral = rows[rows["neutral_reference"]]
    rest = rows.drop(neutral.index).sort_values(["PSPI", "sequence", "frame"], kind="stable")
    take = np.unique(np.linspace(0, len(rest) - 1, n_columns - 1).round().astype(int))
    return pd.concat([neutral.head(1), rest.iloc[take]])


def contact_sheet(
    table: pd.DataFrame, data_dir, n_identities: int = 10, n_columns: int = 8, cell: float = 1.3
):
    import matplotlib.pyplot as plt

    subjects = sorted(table["subject"].unique())[:n_identities]
    fig, axes = plt.subplots(len(subjects), n_columns,
                             figsize=(cell * n_columns, (cell + 0.15) * len(subjects)),
                             squeeze=False)  # fmt: skip
    for r, subject in enumerate(subjects):
        picked = pick_frames(table[table["subject"] == subject], n_columns)
        for c in range(n_columns):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(picked):
                continue
            row = picked.iloc[c]
            ax.imshow(np.asarray(Image.open(Path(data_dir) / row["image"])))
            label = "neutral" if row["neutral_reference"] else f"PSPI {row['PSPI']:.0f}"
            ax.set_title(label, fontsize=7, pad=2)
        axes[r, 0].text(-8, 64, subject, fontsize=7, rotation=90, va="center", ha="right")
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.97))
    fig.suptitle("SynthPain: one person per row, frames ordered by PSPI", fontsize=9, y=0.995)
    return fig
