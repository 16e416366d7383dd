"""Stage 00 (notebook ``00_synthpain``): render SynthPain, the embedded default dataset, and
measure its realism bar (does MediaPipe find the faces, and do its landmarks follow the
expression?) and its appearance evidence (does each pain AU change the skin, in a way a warp of
the neutral photo cannot reach?)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from paincontrol_lib import facemesh
from paincontrol_lib.data.synthpain import generate as synthpain
from paincontrol_lib.data.synthpain.realism import realism_report
from paincontrol_lib.data.synthpain.sheet import contact_sheet
from paincontrol_lib.facemesh import N_POINTS, expression_features
from paincontrol_lib.facs import BINARY_AUS, PAIN_AUS
from paincontrol_lib.io import save_figure, write_json
from paincontrol_lib.landmarks.batch import detect_files
from paincontrol_lib.parallel import process_pool
from paincontrol_lib.stats import bootstrap_ci

METRICS = "synthpain.json"
SIGNAL_INTENSITIES = (1, 3, 5)  # appearance signal: full render vs geometry only, per AU
DEFICIT_INTENSITIES = (0, 1, 3, 5)  # warp deficit against AU intensity (AU43: 0, 1)


@dataclass
class SynthesizeResult:
    config: synthpain.SynthPainConfig
    table: pd.DataFrame  # one row per rendered image
    detected: np.ndarray  # MediaPipe found the face
    predicted: np.ndarray  # (n, 478, 3) MediaPipe's mesh, NaN where not detected
    metrics: dict


def run(base: dict, synthesize: dict, data_dir, reports_dir) -> SynthesizeResult:
    """Render the dataset into ``data_dir``, mesh every render and write the realism report
    and the appearance evidence (``synthesize.evidence_people`` people)."""
    started = time.perf_counter()
    config = synthpain.SynthPainConfig.from_params(synthesize, base["seed"])
    evidence_people = int(synthesize.get("evidence_people", 10))
    table = synthpain.generate(config, data_dir, workers=base["workers"])
    results = detect_files([Path(data_dir) / p for p in table["image"]], workers=base["workers"])
    detected = np.array([r.detected for r in results])
    predicted = np.stack(
        [r.landmarks if r.detected else np.full((N_POINTS, 3), np.nan) for r in results]
    )
    metrics = realism_report(table, detected, predicted)
    metrics.update(appearance_evidence(config, synthesize_people(config, evidence_people),
                                       base["workers"], n_bootstrap=1000))  # fmt: skip
    metrics["generation_seconds"] = table.attrs["generation_seconds"]
    metrics["seconds"] = time.perf_counter() - started
    write_json(Path(reports_dir) / "metrics" / METRICS, metrics)
    return SynthesizeResult(config, table, detected, predicted, metrics)


def synthesize_people(config, n_people: int) -> list[int]:
    """The dataset's first ``n_people`` people (the evidence is about the renderer: any people
    of the dataset's seed will do, and the first ones are the atlas's and contact sheet's)."""
    if not 2 <= n_people <= config.n_identities:
        raise ValueError(f"evidence_people={n_people} must lie in [2, n_identities]")
    return list(range(n_people))


def _region_error(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute difference (0-255 grey levels, over RGB) of two images inside a mask."""
    return float(np.abs(a.astype(float) - b.astype(float))[region].mean())


def _person_evidence(args) -> dict:
    """One person's appearance signals and warp errors per pain AU and intensity, and the
    seconds its renders took with and without appearance."""
    from paincontrol_lib.au_to_mesh import default_model
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import Renderer
    from paincontrol_lib.warp import warp_to

    config, index = args
    model = default_model()
    renderers = {mode: Renderer(model, config.image_size, config.face_fraction, config.supersample,
                                appearance=mode == "appearance")
                 for mode in ("appearance", "geometry_only")}  # fmt: skip
    identity = sample_identity(model, config.seed, index)
    # the identity photo's pose (render_exact's): the warp and the exact answer share it
    jitter = synthpain.reference_pose_jitter(config, index)
    neutral = renderers["geometry_only"].render(identity, {}, pose_jitter=jitter)
    out = {"signal": {}, "warp_error": {}, "seconds": dict.fromkeys(renderers, 0.0), "renders": 0}
    for au in PAIN_AUS:
        levels = (0, 1) if au in BINARY_AUS else DEFICIT_INTENSITIES
        for level in sorted(set(levels) | ({1} if au in BINARY_AUS else set(SIGNAL_INTENSITIES))):
            facs = {au: float(level)}
            region = renderers["appearance"].au_region(identity, au, facs, pose_jitter=jitter)
            exact = {}
            for mode, renderer in renderers.items():
                started = time.perf_counter()
                exact[mode] = renderer.render(identity, facs, pose_jitter=jitter)
                out["seconds"][mode] += time.perf_counter() - started
            out["renders"] += 1
            if level in SIGNAL_INTENSITIES:
                full, geometry = exact["appearance"].image, exact["geometry_only"].image
                out["signal"][(au, level)] = _region_error(full, geometry, region)
            if level in levels:
                for mode, truth in exact.items():
                    warped = warp_to(neutral.image, neutral.landmarks_2d, truth.landmarks_2d)
                    out["warp_error"][(mode, au, level)] = _region_error(warped, truth.image,
                                                                         region)  # fmt: skip
    return out


def appearance_evidence(config, people: list[int], workers: int, n_bootstrap: int) -> dict:
    """Does each pain AU change the skin where a warp cannot follow? Per AU:

    - ``appearance.<AU>.signal_<i>``: mean absolute difference (grey levels) between the full
      render and the geometry-only render inside the AU's region at intensity ``i``, averaged
      over people (AU43 is coded 0/1: ``signal_1`` only);
    - ``warp_deficit[_geometry_only].<AU>``: the error of the warp of the person's neutral frame
      onto the exact mesh against the exact render inside the AU's region, regressed on AU
      intensity per person; ``slope`` (grey levels per intensity unit; AU43 per 0->1) is the
      mean over people with a bootstrap CI over people. Geometry only, a warp is nearly exact
      (slope near 0); with appearance, it misses what the AU adds (slope > 0).
      ``warp_deficit_excess``: the difference of the two slopes, person by person: the part of
      the warp's deficit that the AU's appearance alone adds (the piecewise-affine warp also
      misses some geometry: it cannot close a lid over the eye or re-shade a moved surface).
    """
    jobs = [(config, index) for index in people]
    if workers > 1:
        with process_pool(workers) as pool:
            per_person = list(pool.map(_person_evidence, jobs))
    else:
        per_person = [_person_evidence(job) for job in jobs]
    appearance, deficits = {}, {"appearance": {}, "geometry_only": {}, "excess": {}}
    for au in PAIN_AUS:
        levels = (0, 1) if au in BINARY_AUS else DEFICIT_INTENSITIES
        shown = (1,) if au in BINARY_AUS else SIGNAL_INTENSITIES
        appearance[au] = {f"signal_{i}": float(np.mean([p["signal"][(au, i)] for p in per_person]))
                          for i in shown}  # fmt: skip
        slopes = {}
        for mode in ("appearance", "geometry_only"):
            slopes[mode] = np.array(
                [np.polyfit(levels, [p["warp_error"][(mode, au, v)] for v in levels], 1)[0]
                 for p in per_person]
            )  # fmt: skip
        # the excess: what appearance adds to the warp's error, paired person by person
        slopes["excess"] = slopes["appearance"] - slopes["geometry_only"]
        for mode, out in deficits.items():
            mean, low, high = bootstrap_ci(slopes[mode], n_boot=n_bootstrap, seed=config.seed)
            out[au] = {"slope": mean, "ci_low": low, "ci_high": high}
            if mode != "excess":
                at_max = [p["warp_error"][(mode, au, levels[-1])] for p in per_person]
                out[au]["error_at_max"] = float(np.mean(at_max))
    seconds = {m: sum(p["seconds"][m] for p in per_person) for m in ("appearance", "geometry_only")}
    renders = sum(p["renders"] for p in per_person)
    return {
        "appearance_switch": bool(config.appearance),
        "evidence_people": len(people),
        "appearance": appearance,
        "warp_deficit": deficits["appearance"],
        "warp_deficit_geometry_only": deficits["geometry_only"],
        "warp_deficit_excess": deficits["excess"],
        "render_per_image_seconds": {m: v / renders for m, v in seconds.items()},
        "throughput_cost_ratio_appearance": seconds["appearance"] / seconds["geometry_only"],
    }


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
    """MediaPipe's expression features against the ground truth's; each title gives the
    correlation of the person's own neutral frame (the baseline that knows who, not what)."""
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
            f"(own neutral frame {report['subject_template_tracking_corr'][name]:.2f})",
        )
    axes[0].legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    save_figure(fig, Path(figures_dir) / "synthpain_tracking.png")
    return fig


ATLAS_ZOOM = {  # landmarks whose box, widened, frames each AU's zoomed crop
    "brows": (*facemesh.RIGHT_BROW_UPPER, *facemesh.LEFT_BROW_UPPER, 168, 6),
    "eye": (*facemesh.RIGHT_BROW_UPPER, 33, 133, 145, 117, 50, 168),
    "nose": (168, 6, 129, 358, 2, 55, 285),
    "mouth": (129, 358, 61, 291, 17, 0, 205, 425),
}
ATLAS_REGION = {
    "AU01": "brows",
    "AU02": "brows",
    "AU04": "brows",
    "AU06": "eye",
    "AU07": "eye",
    "AU43": "eye",
    "AU09": "nose",
}  # fmt: skip  (every other AU: the mouth)


def _zoom_box(points: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """A square box around ``points`` (pixels), widened by a quarter, inside the image."""
    lo, hi = points.min(0), points.max(0)
    centre, half = 0.5 * (lo + hi), 0.625 * (hi - lo).max()
    x0, y0 = np.clip(np.round(centre - half).astype(int), 0, None)
    side = int(min(round(2 * half), size - x0, size - y0))
    return int(x0), int(y0), int(x0 + side), int(y0 + side)


def au_atlas_figure(result: SynthesizeResult, figures_dir, subject: str | None = None):
    """One person with each AU alone at intensity 1, 3 and 5 (AU43, coded 0/1: closed), zoomed
    on the AU's region, beside the whole face at the strongest intensity and a map of what
    changed against the neutral face: rendered exactly (reference pose, no sensor noise) at
    twice the dataset's size, so furrows and small movements (AU1, AU2, AU6, AU7) show."""
    import matplotlib

    from paincontrol_lib.au_to_mesh import default_model
    from paincontrol_lib.data.synthpain.identity import sample_identity
    from paincontrol_lib.data.synthpain.render import Renderer
    from paincontrol_lib.facs import AU_DESCRIPTIONS
    from paincontrol_lib.figures import image_grid

    config = result.config
    subject = subject or sorted(result.table["subject"].unique())[0]
    index = int(subject.lstrip("S"))
    size = 2 * config.image_size
    renderer = Renderer(default_model(), size, config.face_fraction, config.supersample,
                        config.appearance)  # fmt: skip
    identity = sample_identity(renderer.model, config.seed, index)
    jitter = synthpain.reference_pose_jitter(config, index)

    def render(aus: dict):
        return renderer.render(identity, aus, pose_jitter=jitter)

    neutral = render({})
    heat = matplotlib.colormaps["magma"]
    rows = []
    for au in synthpain.SYNTHPAIN_AUS:
        levels = (1,) if au in BINARY_AUS else ATLAS_INTENSITIES
        images = {level: render({au: float(level)}).image for level in levels}
        strongest = images[levels[-1]]
        zoom = ATLAS_ZOOM[ATLAS_REGION.get(au, "mouth")]
        x0, y0, x1, y1 = _zoom_box(neutral.landmarks_2d[list(zoom)], size)
        crops = [image[y0:y1, x0:x1] for image in (neutral.image, *images.values())]
        change = np.abs(strongest.astype(float) - neutral.image.astype(float)).mean(-1)[
            y0:y1, x0:x1
        ]
        change_map = (heat(np.clip(change / 40.0, 0, 1))[..., :3] * 255).astype(np.uint8)
        padding = [None] * (len(ATLAS_INTENSITIES) - len(levels))
        rows.append([strongest, crops[0], *crops[1:], *padding, change_map])
    labels = [f"{au}\n{AU_DESCRIPTIONS.get(au, '')}" for au in synthpain.SYNTHPAIN_AUS]
    columns = ["face at max", "zoom: none", *(f"{v}" for v in ATLAS_INTENSITIES),
               "change at max"]  # fmt: skip
    look = "with AU appearance" if config.appearance else "geometry only"
    title = (f"AU atlas: SynthPain person {subject}, each AU alone at intensity 1, 3, 5 ({look}; "
             "AU43 coded 0/1); change: |max - none|, 0-40 grey levels")  # fmt: skip
    fig = image_grid(rows, labels, columns, cell_inches=1.0, title=title)
    save_figure(fig, Path(figures_dir) / "synthpain_au_atlas.png")
    return fig


def appearance_table(metrics: dict) -> pd.DataFrame:
    """Per pain AU: appearance signal at each intensity and the warp-deficit slopes with CIs."""
    rows = {}
    for au, signal in metrics["appearance"].items():
        row = {key.replace("signal_", "signal at "): value for key, value in signal.items()}
        for label, key in (("warp deficit", "warp_deficit"),
                           ("geometry only", "warp_deficit_geometry_only"),
                           ("excess", "warp_deficit_excess")):  # fmt: skip
            d = metrics[key][au]
            row[f"{label}: slope"] = d["slope"]
            row[f"{label}: 95 % CI"] = f"[{d['ci_low']:.2f}, {d['ci_high']:.2f}]"
        rows[au] = row
    return pd.DataFrame(rows).T


def realism_table(metrics: dict) -> pd.DataFrame:
    """The realism bar in one short table: MediaPipe against the no-expression baselines."""
    rows = {
        "detection rate": {"MediaPipe": metrics["mediapipe_detection_rate"]},
        "NME (mean)": {"MediaPipe": metrics["mediapipe_nme"],
                       "generic template": metrics["template_nme"],
                       "person's own neutral frame": metrics["subject_template_nme"]},
    }  # fmt: skip
    for name, r in metrics["tracking_corr"].items():
        rows[f"tracking r: {name.replace('_', ' ')}"] = {
            "MediaPipe": r,
            "person's own neutral frame": metrics["subject_template_tracking_corr"][name],
        }
    return pd.DataFrame(rows).T.round(3)
