"""Stage 00 (notebook ``00_synthpain``): render SynthPain, the embedded default dataset, and
measure its realism bar: does MediaPipe find the faces, and do its landmarks follow the
expression?"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.data.synthpain import generate as synthpain
from paincontrol_lib.data.synthpain.realism import realism_report
from paincontrol_lib.data.synthpain.sheet import contact_sheet
from paincontrol_lib.facemesh import N_POINTS, expression_features
from paincontrol_lib.io import save_figure, write_json
from paincontrol_lib.landmarks.batch import detect_files

METRICS = "synthpain.json"


@dataclass
class SynthesizeResult:
    config: synthpain.SynthPainConfig
    table: pd.DataFrame  # one row per rendered image
    detected: np.ndarray  # MediaPipe found the face
    predicted: np.ndarray  # (n, 478, 3) MediaPipe's mesh, NaN where not detected
    metrics: dict


def run(base: dict, synthesize: dict, data_dir, reports_dir) -> SynthesizeResult:
    """Render the dataset into ``data_dir``, mesh every render and write the realism report."""
    started = time.perf_counter()
    config = synthpain.SynthPainConfig(seed=base["seed"], **synthesize)
    table = synthpain.generate(config, data_dir, workers=base["workers"])
    results = detect_files([Path(data_dir) / p for p in table["image"]], workers=base["workers"])
    detected = np.array([r.detected for r in results])
    predicted = np.stack(
        [r.landmarks if r.detected else np.full((N_POINTS, 3), np.nan) for r in results]
    )
    metrics = realism_report(table, detected, predicted)
    metrics["generation_seconds"] = table.attrs["generation_seconds"]
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    return SynthesizeResult(config, table, detected, predicted, metrics)


def people_per_split(result: SynthesizeResult) -> pd.DataFrame:
    return result.table.groupby("split")["subject"].nunique().rename("identities").to_frame().T


def contact_sheet_figure(result: SynthesizeResult, data_dir, figures_dir):
    # 4 people at 1 inch a frame: enough to see pain grow, small enough to commit (200 dpi)
    fig = contact_sheet(result.table, data_dir, n_identities=4, cell=1.0)
    save_figure(fig, Path(figures_dir) / "synthpain_contact_sheet.png")
    return fig


ATLAS_INTENSITIES = (1, 3, 5)


def pspi_figure(result: SynthesizeResult, figures_dir):
    """PSPI histogram and how often each AU occurs."""
    import matplotlib.pyplot as plt

    from paincontrol_lib.figures import colour

    table = result.table
    fig, ax = plt.subplots(1, 2, figsize=(9, 2.8))
    ax[0].hist(table["PSPI"], bins=np.arange(18) - 0.5, color=colour(3))
    share = (table["PSPI"] == 0).mean()
    ax[0].set(xlabel="PSPI (Prkachin-Solomon pain intensity, 0-16)", ylabel="frames",
              title=f"{share:.0%} of frames have PSPI 0")  # fmt: skip
    (table[list(synthpain.SYNTHPAIN_AUS)] > 0).mean().plot.bar(ax=ax[1], color=colour(0))
    ax[1].set(xlabel="action unit", ylabel="share of frames with the AU present",
              title="How often each AU occurs")  # fmt: skip
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "synthpain_pspi.png")
    return fig


def tracking_figure(result: SynthesizeResult, figures_dir):
    """MediaPipe's expression features against the ground truth's, with the template baseline."""
    import matplotlib.pyplot as plt

    truth = expression_features(synthpain.landmarks(result.table)[result.detected])
    found = expression_features(result.predicted[result.detected])
    report = result.metrics
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, name in zip(axes, truth, strict=False):
        words = name.replace("_", " ")
        ax.scatter(truth[name], found[name], s=4, alpha=0.4, label="one image")
        low, high = np.nanmin(truth[name]), np.nanmax(truth[name])
        ax.plot([low, high], [low, high], color="0.4", lw=0.8, ls="--", label="identity line")
        ax.set(
            xlabel="ground-truth mesh (inter-ocular units)",
            ylabel="MediaPipe (inter-ocular units)",
            title=f"{words}: r = {report['tracking_corr'][name]:.2f} "
            f"(fixed template {report['template_tracking_corr'][name]:.2f})",
        )
    axes[0].legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "synthpain_tracking.png")
    return fig


def au_atlas_figure(result: SynthesizeResult, figures_dir, subject: str | None = None):
    """One person with no expression and with each AU alone at intensity 1, 3 and 5 (AU43, coded
    0/1: closed), rendered exactly (reference pose, no sensor noise): the FACS mapping of the
    renderer, to be judged by eye against the FACS manual."""
    from paincontrol_lib.facs import AU_DESCRIPTIONS, BINARY_AUS
    from paincontrol_lib.figures import image_grid

    subject = subject or sorted(result.table["subject"].unique())[0]

    def image(aus: dict) -> np.ndarray:
        return synthpain.render_exact(result.config, subject, aus).image

    neutral = image({})
    rows = [
        [neutral, *([image({au: 1.0}), None, None] if au in BINARY_AUS
                    else [image({au: float(v)}) for v in ATLAS_INTENSITIES])]
        for au in synthpain.SYNTHPAIN_AUS
    ]  # fmt: skip
    labels = [f"{au}\n{AU_DESCRIPTIONS.get(au, '')}" for au in synthpain.SYNTHPAIN_AUS]
    columns = ["no expression", *(f"intensity {v}" for v in ATLAS_INTENSITIES)]
    title = f"AU atlas: SynthPain person {subject}, each AU alone (AU43: 0/1)"
    fig = image_grid(rows, labels, columns, cell_inches=0.8, title=title)
    save_figure(fig, Path(figures_dir) / "synthpain_au_atlas.png")
    return fig
