"""Choose the sampler on validation people, never on the people the final numbers are about.

Every sampler setting that is tried (``params.yaml: tune.grids``, a union of grids over the
``sampler`` section) is drawn on the same seeded rows of the *validation* people and scored by
the objective ``params.yaml: tune.objective`` declares before the run: closeness to each row's
exact answer (the person's own frame with the requested expression), which carries identity and
expression at once::

    objective = identity_weight * cos(identity(output), identity(exact answer))
              - au_error_weight * mean over pain AUs |AU(output) - AU(exact answer)| / AU range

Identity is read by the in-domain identity encoder (never the encoder whose embedding the model
is conditioned on; an output with no face found counts similarity 0), AUs by the shipped pixel
reader (fresh identities only). The grid contains the warp itself (a start image at strength 0)
and pure noise, so if the warp is the closest, the warp wins, and ``tuning.json`` says so.

Three winners are recorded: ``paincontrol`` (the best noise-start setting: the paper's method,
what every table calls PainControl), ``warp_start`` (the best setting that runs >= 1 step on the
warped target, named by its steps) and ``selected`` (the best of all, what the CLI samples with).
A fourth, ``au_guided``, is PainControl's setting with AU guidance (``tune.au_guidance_grid``:
its step size and schedule drawn on top of the chosen PainControl, the same rows, the same
objective; ``model/au_guidance.py``); its rows are in ``grid`` too, marked ``au_guided``, and
take no part in the first three choices.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from paincontrol_lib.facs import PAIN_AUS
from paincontrol_lib.landmarks.mesher import FaceMesher
from paincontrol_lib.model.heldout import (
    IdentityScorer,
    draw_samples,
    ground_truth_images,
    identity_photo_images,
    mesh_images,
    pick_rows,
    score_images,
)
from paincontrol_lib.model.sampler import SamplerConfig
from paincontrol_lib.stats import cluster_bootstrap_ci

OBJECTIVE = (
    "{identity_weight:g} x identity-encoder cosine similarity to the exact answer - "
    "{au_error_weight:g} x mean pain-AU error against the exact answer / AU range (pixel reader)"
)
OBJECTIVE_KEYS = ("identity_weight", "au_error_weight")
TUNE_KEYS = {"n_samples", "grids", "objective", "au_reader", "au_guide", "au_guidance_grid"}


def require_split(examples, split: str) -> None:
    """Fail unless every row of ``examples`` belongs to ``split`` (tuning reads ``val`` only, the
    final scorer ``test`` only)."""
    found = set(examples.table["split"])
    if found != {split}:
        raise ValueError(f"expected {split!r} people only, got splits {sorted(found)}")


def amplitude_ratio(slopes: dict, ceiling: dict) -> float | None:
    ratios = [
        slopes[k] / ceiling[k] for k in ceiling if slopes.get(k) is not None and ceiling.get(k)
    ]
    return float(np.mean(ratios)) if ratios else None


def grid_settings(grids: list[dict], base: SamplerConfig) -> list[dict]:
    """Every combination of each grid's values, in a fixed order, without settings that draw the
    same thing: from noise the start strength is unused (a start image at strength 1 runs every
    step from noise), and at strength 0 (the start image itself) nothing that steers the model
    is."""
    fields = set(SamplerConfig.__dataclass_fields__)
    settings, seen = [], set()
    for grid in grids:
        unknown = set(grid) - fields
        if unknown:
            raise ValueError(f"tune.grids has unknown sampler settings {sorted(unknown)}")
        names = sorted(grid)
        for values in itertools.product(*(grid[n] for n in names)):
            setting = dict(zip(names, values, strict=True))
            config = replace(base, **setting)
            if not config.from_start_image and config.steps_run:  # every step: from noise
                setting = {k: v for k, v in setting.items() if k != "start_strength"}
                setting["start"] = "noise"
            elif config.steps_run == 0:
                setting = {"start": config.start, "start_strength": 0.0}
            key = replace(base, **setting)  # what is drawn, not how the grid spelled it
            if key not in seen:
                seen.add(key)
                settings.append(setting)
    return settings


def check_objective(objective: dict) -> dict:
    """The declared weights: both present, finite and >= 0, nothing else."""
    if set(objective) != set(OBJECTIVE_KEYS):
        raise ValueError(
            f"tune.objective: expected exactly {OBJECTIVE_KEYS}, got {sorted(objective)}"
        )
    for key in OBJECTIVE_KEYS:
        value = objective[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"tune.objective.{key} {value!r}: expected a number >= 0")
    return objective


class ExactAnswers:
    """The exact answers of ``examples[rows]`` read once, so every setting is scored against the
    same readings: identity embeddings (encoder) and pain-AU intensities (pixel reader, beside
    each person's identity photo as the neutral)."""

    def __init__(self, examples, rows, identity: IdentityScorer, reader, mesher: FaceMesher):
        self.identity, self.reader, self.mesher = identity, reader, mesher
        self.subjects = np.asarray(examples.table["subject"].iloc[rows])
        self.neutrals = identity_photo_images(examples, rows)
        self.images = ground_truth_images(examples, rows)
        self.embeddings = self._embed(self.images)
        self.aus = reader.predict(self.images, self.neutrals)

    def _embed(self, images, meshed=None) -> np.ndarray:
        """(n, d) identity embeddings, NaN rows where no face is found (``meshed``:
        :func:`~paincontrol_lib.model.heldout.mesh_images` of ``images``, if done already)."""
        big, found = meshed or mesh_images(images, self.mesher)
        out = np.full((len(images), self.identity.backend.dim), np.nan, np.float32)
        for i, (image, face) in enumerate(zip(big, found, strict=True)):
            if face.detected:
                out[i] = self.identity.backend.embed(image, face.landmarks)
        return out

    def closeness(self, images, objective: dict, meshed=None) -> dict[str, np.ndarray]:
        """Per-row identity similarity, AU error (fraction of each AU's range, mean over the pain
        AUs) and the objective of ``images`` against the exact answers."""
        from paincontrol_lib.au_reading.pixels import SCALE

        found = self._embed(images, meshed)
        similarity = np.nansum(found * self.embeddings, axis=1)
        similarity[np.isnan(found).any(1)] = 0.0  # no face found: nothing of the person kept
        similarity[np.isnan(self.embeddings).any(1)] = np.nan  # the exact answer unreadable
        error = (np.abs(self.reader.predict(images, self.neutrals) - self.aus) / SCALE).mean(1)
        score = objective["identity_weight"] * similarity - objective["au_error_weight"] * error
        return {"identity_similarity": similarity, "au_error": error, "objective": score}


def summarise(per_row: dict, subjects, seed: int) -> dict:
    """Each per-row measure's mean with a 95 % bootstrap interval over people."""
    out = {}
    for name, values in per_row.items():
        mean, lo, hi = cluster_bootstrap_ci(values, subjects, seed=seed)
        out[name], out[f"{name}_ci"] = mean, [lo, hi]
    return out


def select(grid_rows: list[dict], where) -> dict | None:
    """The grid row with the highest objective among those ``where`` accepts (None if none)."""
    rows = [r for r in grid_rows if where(r) and np.isfinite(r["objective"])]
    return max(rows, key=lambda r: r["objective"]) if rows else None


def tune_sampler(model, examples, base: SamplerConfig, tune: dict, seed: int,
                 exact: ExactAnswers) -> tuple[dict, list]:  # fmt: skip
    """Score every grid setting on validation ``examples`` against ``exact`` (the exact answers
    of ``tuning_rows``, read by the objective's instruments); returns ``tuning.json`` and each
    grid row's per-row closeness (:meth:`ExactAnswers.closeness`, in ``grid`` order: labels do
    not tell identity scales or guidance apart)."""
    require_split(examples, "val")
    unknown = set(tune) - TUNE_KEYS
    if unknown:
        raise ValueError(f"params tune: unknown {sorted(unknown)}; expected {sorted(TUNE_KEYS)}")
    objective = check_objective(tune["objective"])
    rows = tuning_rows(examples, tune, seed)
    scorer = {"mesher": exact.mesher, "identity": exact.identity}
    ceiling = score_images(exact.images, examples, rows, **scorer)
    grid_rows, per_row = [], []

    def draw(settings: dict, au_guided: bool = False) -> None:
        config = replace(base, **settings)
        label = config.label if config.steps_run else "warp"
        images = draw_samples(model, examples, rows, config, seed, tune.get("au_guide"))
        meshed = mesh_images(images, exact.mesher)  # read once by both scorers
        scores = score_images(images, examples, rows, meshed=meshed, **scorer)
        per_row.append(exact.closeness(images, objective, meshed))
        grid_rows.append(
            {"settings": settings, "label": label, "steps_run": config.steps_run,
             "au_guided": au_guided}
            | summarise(per_row[-1], exact.subjects, seed)
            | {
                "identity_top1": scores.get("identity_top1"),
                "nme": scores.get("nme"),
                "detection_rate": scores["detection_rate"],
                "amplitude_ratio": amplitude_ratio(
                    scores.get("tracking_slope") or {}, ceiling.get("tracking_slope") or {}
                ),
            }
        )  # fmt: skip

    for settings in grid_settings(tune["grids"], base):
        draw(settings)
    best = select(grid_rows, lambda r: True)

    def start(row):
        return row["settings"].get("start", base.start)

    def guided(row):
        return replace(base, **row["settings"]).au_guided_steps > 0

    chosen = {
        "paincontrol": select(grid_rows, lambda r: start(r) == "noise" and not guided(r)),
        "warp_start": select(
            grid_rows,
            lambda r: r["steps_run"] > 0 and start(r) == "warped_target" and not guided(r),
        ),
    }
    missing = [name for name, row in chosen.items() if row is None]
    if missing:
        raise ValueError(f"tune.grids has no setting for {missing}: include a noise start and a "
                         "start image at strength > 0")  # fmt: skip
    configs = {name: replace(base, **row["settings"]) for name, row in chosen.items()}
    if tune.get("au_guidance_grid"):
        unguided = chosen["paincontrol"]["settings"]
        for settings in grid_settings([tune["au_guidance_grid"]], configs["paincontrol"]):
            if replace(configs["paincontrol"], **settings).au_guided_steps:
                draw(unguided | settings, au_guided=True)
        chosen["au_guided"] = select(grid_rows, lambda r: r["au_guided"])
        configs["au_guided"] = replace(base, **chosen["au_guided"]["settings"])
    report = {
        "split": "val",
        "n_people": int(examples.table["subject"].nunique()),
        "n_samples": int(len(rows)),
        "objective": objective,
        "rule": "maximise " + OBJECTIVE.format(**objective),
        "identity_scorer": exact.identity.label,
        "au_reader": exact.reader.record.get("role", "pixels"),
        "pain_aus": list(PAIN_AUS),
        # the exact answers scored against themselves: the objective's ceiling
        "exact_answer": summarise(exact.closeness(exact.images, objective), exact.subjects, seed),
        "ground_truth_slopes": ceiling.get("tracking_slope"),
        "grid": grid_rows,
        "selected": replace(base, **best["settings"]).as_dict(),
        "selected_label": best["label"],
        "steps_run": best["steps_run"],
        "warp_wins": best["steps_run"] == 0,
        **{name: config.as_dict() for name, config in configs.items()},
        "labels": {name: c.label for name, c in configs.items()},
        # each winner's row of ``grid`` (labels alone do not tell identity scales apart)
        "grid_rows": {name: grid_rows.index(row) for name, row in chosen.items()}
        | {"selected": grid_rows.index(best)},
        "steps_run_of": {name: c.steps_run for name, c in configs.items()},
    }
    return report, per_row


def tuning_rows(examples, tune: dict, seed: int) -> np.ndarray:
    """The validation rows every setting is drawn on (seeded)."""
    return pick_rows(examples, tune["n_samples"], seed)
