"""Figures fit for a paper: one seaborn theme with a colour-blind-safe palette, and image grids
whose rows and columns carry their own labels (never one title listing every column).

Saving (PNG at 200 dpi plus a PDF beside it) is :func:`paincontrol_lib.io.save_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Okabe and Ito's colour-blind-safe palette, its eight colours told apart at a glance (seaborn's
# "colorblind" has a brown beside two oranges): blue, orange, bluish green, vermillion, reddish
# purple, sky blue, yellow; and grey for reference lines.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#7F7F7F"]


def theme() -> None:
    """The one theme every notebook draws with (``notebook.setup`` applies it)."""
    import seaborn as sns

    sns.set_theme(
        context="paper",
        style="ticks",
        palette=PALETTE,
        rc={
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.dpi": 100,
            "image.interpolation": "nearest",
        },
    )


def colour(index: int):
    """The ``index``-th colour of the palette (for lines and bars coloured by hand)."""
    import seaborn as sns

    colours = sns.color_palette(PALETTE)
    return colours[index % len(colours)]


def image_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str] = (),
    column_labels: Sequence[str] = (),
    cell_inches: float = 1.2,
    title: str | None = None,
):
    """A grid of images (``None`` leaves a cell empty) with a label on every row (left) and
    every column (top)."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    for labels, n, what in ((row_labels, n_rows, "row"), (column_labels, n_cols, "column")):
        if labels and len(labels) != n:
            raise ValueError(f"{len(labels)} {what} labels for {n} {what}s")
    label_width = 1.1 if row_labels else 0.05
    lines = max((str(label).count("\n") + 1 for label in column_labels), default=0)
    header = (0.14 + 0.13 * lines if column_labels else 0.05) + (0.35 if title else 0.0)
    width, height = label_width + cell_inches * n_cols, header + cell_inches * n_rows
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(
        left=label_width / width,
        right=1 - 0.02 / width,
        bottom=0.02 / height,
        top=1 - header / height,
        wspace=0.03,
        hspace=0.03,
    )
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            image = row[j] if j < len(row) else None
            if image is not None:
                ax.imshow(image)
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(image is not None)
                spine.set_linewidth(0.3)
        if row_labels:
            axes[i, 0].set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
    for j, label in enumerate(column_labels):
        axes[0, j].set_title(label, fontsize=8)
    if title:  # above the column labels, whatever their height
        fig.suptitle(title, fontsize=9, y=1 - 0.06 / height, va="top")
    return fig
