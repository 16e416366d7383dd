"""Stage 01 (notebook ``01_landmarks``): every image of the chosen dataset becomes a 478-point
MediaPipe mesh, an aligned crop transform and a control image, in one landmark table."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib.data.bundled import bundled_photos
from paincontrol_lib.data.records import with_subject_split
from paincontrol_lib.data.sources import load_records
from paincontrol_lib.facemesh import nme
from paincontrol_lib.io import save_figure, write_json
from paincontrol_lib.landmarks.align import aligned_crop
from paincontrol_lib.landmarks.batch import build_landmark_table, raw_mediapipe_rate
from paincontrol_lib.landmarks.control import draw_points
from paincontrol_lib.landmarks.image import load_image
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.landmarks.table import landmark_metrics, row_transform, stack_landmarks

METRICS = "landmarks.json"


@dataclass
class LandmarksResult:
    records: pd.DataFrame
    table: pd.DataFrame  # the landmark table written to ``out_dir``
    metrics: dict
    photos: list  # (bundled photograph, faces MediaPipe found in it)


def run(base: dict, data: dict, landmarks: dict, out_dir, reports_dir) -> LandmarksResult:
    """Mesh, align, crop and draw every record's image; time the stage against raw MediaPipe.

    Datasets without a split of their own (real data) are split by subject here, seeded."""
    started = time.perf_counter()
    records = load_records(data["source"], data["root"])
    records = with_subject_split(
        records, data["test_fraction"], base["seed"], data.get("val_fraction", 0.0)
    )
    table, seconds = build_landmark_table(
        records, data["root"], out_dir, crop_size=landmarks["crop_size"], workers=base["workers"]
    )
    n_bench = min(landmarks["raw_benchmark_images"], len(records))
    sample = records["image"].sample(n_bench, random_state=base["seed"])
    metrics = landmark_metrics(table, seconds, raw_mediapipe_rate(sample))
    if "pspi_from_facs" in records:  # UNBC frames without a PSPI file (data/unbc.py)
        metrics["pspi_from_facs"] = int(records["pspi_from_facs"].sum())
    with FaceMesher() as mesher:
        photos = [(p, mesher.detect_all(load_image(p.path))) for p in bundled_photos()]
    metrics["real_photos"] = {
        p.name: {"faces": p.faces, "meshable": p.meshable, "meshed": len(found)}
        for p, found in photos
    }
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    return LandmarksResult(records, table, metrics, photos)


def synthetic_figure(result: LandmarksResult, out_dir, figures_dir):
    """The highest-PSPI frames of three people and the neutral frames of two others (one column
    per person): MediaPipe's mesh (red) over the ground truth (green, where known), the aligned
    crop and the control image."""
    from PIL import Image

    from paincontrol_lib.figures import image_grid

    found = result.table[result.table["detected"]]
    strongest = found.sort_values("PSPI", ascending=False, kind="stable")
    strongest = strongest.drop_duplicates("subject").head(3)
    neutral = found[(found["PSPI"].fillna(0) == 0) & ~found["subject"].isin(strongest["subject"])]
    show = pd.concat([strongest, neutral.drop_duplicates("subject").head(2)])
    meshes, crops, controls, columns = [], [], [], []
    for _, row in show.iterrows():
        image = load_image(row["image"])
        points = np.asarray(row["landmarks"]).reshape(-1, 3)
        if row.get("landmarks_2d") is not None:
            truth = np.asarray(row["landmarks_2d"]).reshape(-1, 2)
            image = draw_points(image, truth, (0, 200, 0), 0.6)
        meshes.append(draw_points(image, points, (255, 0, 0), 0.5))
        crops.append(aligned_crop(load_image(row["image"]), row_transform(row), row["crop_size"]))
        controls.append(np.asarray(Image.open(Path(out_dir) / row["control"])))
        columns.append(f"{row['subject']}, PSPI {row['PSPI']:.0f}")
    rows = ["MediaPipe mesh (red)\nover ground truth (green)", "aligned crop", "control image"]
    fig = image_grid([meshes, crops, controls], rows, columns, cell_inches=1.6)
    save_figure(fig, Path(figures_dir) / "landmarks_synthetic.png")
    return fig


def real_photos_figure(result: LandmarksResult, figures_dir):
    """The faces found in the photographs that ship inside installed packages (read in place),
    meshed with the full-range detector; returns the figure and a table of faces found in every
    one. The figure shows only the photographs whose licence permits redistribution (the
    committed figure is a copy); the table counts them all."""
    import matplotlib.pyplot as plt
    from PIL import Image

    shown_photos = [(p, f) for p, f in result.photos if p.redistributable]
    fig, axes = plt.subplots(1, len(shown_photos), figsize=(3.2 * len(shown_photos), 3.4),
                             squeeze=False)  # fmt: skip
    for ax, (photo, faces) in zip(axes.ravel(), shown_photos, strict=True):
        image = load_image(photo.path)
        for face in faces:
            image = draw_points(image, face.landmarks, (255, 0, 0), max(1, image.shape[1] / 500))
        shown = Image.fromarray(image)
        shown.thumbnail((240, 240))  # about the figure's resolution: keeps committed files small
        ax.imshow(np.asarray(shown))
        ax.set_title(f"{photo.name}\n{len(faces)} of {photo.faces} faces meshed", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "landmarks_real_photos.png")
    found = [
        {"photo": p.name, "faces": p.faces, "meshable": p.meshable, "meshed": len(f),
         "shown": p.redistributable}
        for p, f in result.photos
    ]  # fmt: skip
    return fig, pd.DataFrame(found)


def statistics_figure(result: LandmarksResult, figures_dir):
    """Where ground truth exists, MediaPipe's NME per image, neutral frames against frames in
    pain (the title gives the detection rate per split); without it, the detection rate per
    split."""
    import matplotlib.pyplot as plt

    from paincontrol_lib.figures import colour

    table = result.table
    rate = table.groupby("split")["detected"].mean()
    rates = ", ".join(f"{split} {value:.1%}" for split, value in rate.items())
    title = f"Faces found in {table['detected'].mean():.1%} of {len(table)} images ({rates})"
    fig, ax = plt.subplots(figsize=(7, 3))
    found = table[table["detected"]]
    if "landmarks_2d" in table:
        truth = np.stack([np.asarray(v).reshape(-1, 2) for v in found["landmarks_2d"]])
        error = nme(stack_landmarks(found), truth)
        pain = found["PSPI"].fillna(0).to_numpy() > 0
        bins = np.linspace(0, np.percentile(error, 99.5), 40)
        for k, (mask, name) in enumerate(((~pain, "PSPI 0"), (pain, "PSPI > 0"))):
            ax.hist(error[mask], bins=bins, color=colour(k * 3), alpha=0.6,
                    label=f"{name} ({mask.sum()} images)")  # fmt: skip
        ax.set(xlabel="MediaPipe's error against the ground truth (NME, inter-ocular)",
               ylabel="images", title=title)  # fmt: skip
        ax.legend(fontsize=8)
    else:
        rate.plot.bar(ax=ax, ylim=(0, 1.05), color=colour(0), rot=0)
        ax.set(xlabel="split (people)", ylabel="share of images with a face found", title=title)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "landmarks_statistics.png")
    return fig


def failures(result: LandmarksResult) -> pd.DataFrame:
    """Images without a face, with the reason."""
    missed = result.table[~result.table["detected"]]
    return missed[["subject", "image", "error"]]
