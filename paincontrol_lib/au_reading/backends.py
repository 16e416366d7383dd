"""Action-unit estimation backends, one py-feat-style table out (``AU01 … AU43`` + ``PSPI``).

- ``oracle``: the dataset's own FACS coding (SynthPain's ground truth, UNBC's FACS frames);
- ``mesh``: offline, from MediaPipe meshes: the expression displacement from the person's
  neutral mesh explained by the AU->mesh model (``au_basis.estimate_aus``);
- ``learned``: offline, the same meshes read by a regression trained on the dataset's training
  people (``au_reading.learned``), robust to generated-image degradations;
- ``pixels``: the aligned crop's pixels beside the person's neutral crop, read by a CNN
  (``au_reading.pixels``) that sees appearance (furrows, wrinkles, bulges) the meshes cannot:
  shipped weights trained on fresh identities across the 0-5 range, fine-tuned on training people;
- ``pyfeat``: py-feat's detector, when the user has its model weights; without them it stops at
  once and says what to download (nothing is fetched at run time). :func:`backend_agreement`
  compares it with ``learned`` on the same images.

:func:`validate_backends` trains and chooses the readers on validation people, reports every
one on test people (ICC(2,1), absolute agreement, and ICC(3,1), with intervals over people)
and picks one per AU on validation people (:class:`AUReaders` reads with that choice). The
``guide`` pixel reader is reported beside and never scores.

FACS scale throughout: 0-5, AU43 0/1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from paincontrol_lib.data.records import AU_COLUMNS
from paincontrol_lib.facs import BINARY_AUS, PAIN_AUS, pspi

# The goals a reader must meet before its readings judge methods (issue 29): absolute agreement
# (ICC(2,1)) on degraded test crops, and error on the exact answers of the evaluation's requests.
GOAL_ICC = {**dict.fromkeys(PAIN_AUS, 0.85), "PSPI": 0.9}
GOAL_EXACT_ERROR = {**dict.fromkeys(PAIN_AUS, 0.5), "AU43": 0.15}
SCORING_BACKENDS = ("mesh", "learned", "pixels")  # the readers an AU may be scored with


def _table(values: np.ndarray, index=None) -> pd.DataFrame:
    table = pd.DataFrame(values, columns=list(AU_COLUMNS), index=index)
    table["PSPI"] = pspi(table)
    return table


def oracle(records: pd.DataFrame) -> pd.DataFrame:
    """The dataset's own AU coding (missing AUs NaN) with PSPI."""
    missing = [au for au in PAIN_AUS if au not in records]
    if missing:
        raise ValueError(f"no ground-truth AUs {missing} in these records: use --au mesh")
    values = np.stack([records[a].to_numpy(float) if a in records else np.full(len(records), np.nan)
                       for a in AU_COLUMNS], axis=1)  # fmt: skip
    return _table(values, records.index)


def mesh_aus(meshes: np.ndarray, neutrals: np.ndarray) -> pd.DataFrame:
    """AU estimates for meshes (n, 478, 3) against each one's neutral mesh (n, 478, 3), any
    image frame. AUs outside the AU->mesh model stay NaN."""
    from paincontrol_lib.au_basis import estimate_aus

    meshes, neutrals = np.asarray(meshes, float), np.asarray(neutrals, float)
    if meshes.shape != neutrals.shape or meshes.ndim != 3:
        raise ValueError(
            f"meshes {meshes.shape} and neutrals {neutrals.shape} must match (n,478,3)"
        )
    rows = []
    for mesh, neutral in zip(meshes, neutrals, strict=True):
        found = estimate_aus(mesh, neutral)
        rows.append([found.get(a, np.nan) for a in AU_COLUMNS])
    return _table(np.array(rows).reshape(-1, len(AU_COLUMNS)))


def mesh_read(meshes: np.ndarray, neutrals: np.ndarray) -> pd.DataFrame:
    """:func:`mesh_aus` with NaN rows where either mesh is missing (no face found)."""
    meshes, neutrals = np.asarray(meshes, float), np.asarray(neutrals, float)
    found = np.isfinite(meshes).all((1, 2)) & np.isfinite(neutrals).all((1, 2))
    out = pd.DataFrame(np.nan, index=range(len(meshes)), columns=[*AU_COLUMNS, "PSPI"])
    if found.any():
        out.loc[found] = mesh_aus(meshes[found], neutrals[found]).to_numpy()
    return out


def mesh_reads(faces) -> pd.DataFrame:
    """The ``mesh`` backend on :class:`~paincontrol_lib.au_reading.learned.Faces`."""
    return mesh_read(faces.meshes, faces.neutrals)


class AUReaders:
    """Named readers (``name -> read(faces) -> AU table``) and, per pain AU, the one that scores
    it (``backend_per_au``; default: the first reader). PSPI is derived from the chosen AUs.
    Readers no AU is taken from (the ``guide``) are read by :meth:`read_all` only."""

    def __init__(self, readers: dict | None = None, backend_per_au: dict | None = None):
        self.readers = dict(readers or {"mesh": mesh_reads})
        first = next(iter(self.readers))
        self.backend_per_au = {au: (backend_per_au or {}).get(au, first) for au in PAIN_AUS}
        unknown = set(self.backend_per_au.values()) - set(self.readers)
        if unknown:
            raise ValueError(f"AUs assigned to readers {sorted(unknown)} that are not given")

    def combine(self, tables: dict) -> pd.DataFrame:
        out = pd.DataFrame({au: tables[b][au].to_numpy() for au, b in self.backend_per_au.items()})
        out["PSPI"] = pspi(out[list(PAIN_AUS)])
        out.loc[out[list(PAIN_AUS)].isna().all(axis=1), "PSPI"] = np.nan
        return out

    def read_all(self, faces) -> dict[str, pd.DataFrame]:
        return {name: read(faces).reset_index(drop=True) for name, read in self.readers.items()}

    def __call__(self, faces) -> pd.DataFrame:
        used = set(self.backend_per_au.values())
        return self.combine({b: self.readers[b](faces).reset_index(drop=True) for b in used})


def validate_backends(reads, settings: dict, seed: int, n_boot: int = 1000,
                      val_answers=None) -> tuple[AUReaders, dict]:  # fmt: skip
    """Train, choose and report every reader on the landmark table's people: ``learned``
    (``au_reading.learned.select_and_validate``), ``pixels`` (the shipped ``scoring`` weights
    fine-tuned on training people, the step kept chosen on validation people) and ``mesh``; the
    ``guide`` pixel reader as shipped, reported only; the learned estimator is saved to
    ``settings["path"]``. Per AU the scoring backend is the one with the higher ICC(2,1) on
    *degraded validation* crops, the exact answers of strong requests on validation people
    (``val_answers``, :class:`~paincontrol_lib.au_reading.learned.KnownFaces`)
    pooled in where given. ``(readers, report)``: the report is ``au_estimator.json`` (test
    people, intervals over people; goals in :data:`GOAL_ICC`)."""
    from paincontrol_lib.au_reading.learned import (
        KnownFaces,
        check_splits,
        score_known,
        select_and_validate,
    )
    from paincontrol_lib.au_reading.pixels import PixelAU, Views, fine_tune

    check_splits(reads)
    split = reads.rows["split"].to_numpy()
    val = reads.known(split == "val")
    if val_answers is not None:
        val = KnownFaces.concat([val, val_answers])
    test = reads.known(split == "test")
    copies = [int(c) for c in settings["degraded_copies"]]
    learned, learned_report = select_and_validate(reads, settings["alphas"], copies, n_boot=0)
    learned.save(settings["path"])

    pixel_settings = settings["pixels"]
    pixels = PixelAU.load(pixel_settings["weights"])
    views = Views.of_table(reads, split == "train")

    def on_val(reader) -> float:
        return _mean_icc(score_known(val, reader.reads, n_boot=0))

    pixels, curve = fine_tune(pixels, views, sorted(set(reads.rows["subject"][split == "train"])),
                              on_val, int(pixel_settings["fine_tune_steps"]), seed,
                              int(pixel_settings["eval_every"]),
                              float(pixel_settings["learning_rate"]),
                              int(pixel_settings["batch_size"]))  # fmt: skip
    guide = PixelAU.load(pixel_settings["guide"])
    readers = {"mesh": mesh_reads, "learned": learned.reads, "pixels": pixels.reads,
               "guide": guide.reads}  # fmt: skip
    report = {"readers": {}}
    for name, read in readers.items():
        report["readers"][name] = {
            "test": score_known(test, read, n_boot, seed),
            "val": score_known(val, read, n_boot=0),
        }
    report["readers"]["learned"] |= {k: learned_report[k] for k in ("selection", "features")}
    report["readers"]["learned"]["val_table_only"] = learned_report["val"]
    report["readers"]["pixels"] |= {
        "training": pixels.record,
        "selection": {
            "rule": "the fine-tuning step with the max mean pain-AU ICC(2,1) on val "
            "(clean and degraded averaged; step 0: the shipped weights)",
            "curve": curve,
        },  # fmt: skip
        "features": "aligned crop and its difference from the person's neutral crop, 64 px; CNN",
    }
    report["readers"]["guide"] |= {
        "training": guide.record,
        "use": "guidance of a sampler (a later issue); never scores a method",
    }
    backend_per_au = {}
    for au in PAIN_AUS:
        scored = {
            b: report["readers"][b]["val"]["degraded"][au]["icc_a1"] for b in SCORING_BACKENDS
        }
        backend_per_au[au] = max(SCORING_BACKENDS, key=lambda b: -np.inf if scored[b] is None
                                 else scored[b])  # fmt: skip
    chosen = AUReaders(readers, backend_per_au)
    n_train = int(reads.rows.loc[split == "train", "subject"].nunique())
    report |= {
        **score_known(test, chosen, n_boot, seed),
        "backend_per_au": backend_per_au,
        "backend_choice": "per AU, the higher ICC(2,1) on degraded val crops (table frames "
        + ("and exact answers of strong requests" if val_answers is not None else "only")
        + "); PSPI derived",
        "goals": {"icc_a1_degraded": GOAL_ICC, "exact_answer_error": GOAL_EXACT_ERROR},
        "n_train_people": n_train,
        "n_val_people": int(val.rows["subject"].nunique()),
        "n_val_images": int(len(val.rows)),
        "n_test_people": int(test.rows["subject"].nunique()),
        "n_test_images": int(len(test.rows)),
        "intervals": "95 % bootstrap over people (whole people resampled, all their frames)",
        "degradation": "64 px, blur sigma 0-1 px, gain 0.85-1.15, offset +-0.05, grain sd 0-0.04",
    }
    report["unreliable_aus"] = unreliable(report)
    return chosen, report


def _mean_icc(scores: dict) -> float:
    """Mean pain-AU ICC(2,1), clean and degraded averaged (a missing ICC counts -1)."""
    values = [scores[k][au]["icc_a1"] for k in ("clean", "degraded") for au in PAIN_AUS]
    return float(np.mean([-1.0 if v is None else v for v in values]))


def unreliable(report: dict) -> list[str]:
    """Pain AUs whose scoring reader misses a goal: ICC(2,1) on degraded test crops below
    :data:`GOAL_ICC`, or (once known) error on the exact answers above :data:`GOAL_EXACT_ERROR`."""
    out = []
    for au in PAIN_AUS:
        icc = report["degraded"][au]["icc_a1"]
        error = report.get("exact_answer_error", {}).get(au, {}).get("mean")
        if (
            icc is None
            or icc < GOAL_ICC[au]
            or (error is not None and error > GOAL_EXACT_ERROR[au])
        ):
            out.append(au)
    return out


# py-feat: its detector's AU outputs are 0-1 (probabilities or intensities) named AU01 ... AU43.
# Its weights live on the Hugging Face hub (downloaded on first use, which we never allow).
PYFEAT_REPOS = ("py-feat/retinaface_r34", "py-feat/mobilefacenet", "py-feat/xgb_au")


def from_pyfeat(fex: pd.DataFrame) -> pd.DataFrame:
    """py-feat ``Fex`` output (AU columns on a 0-1 scale) -> our FACS table (0-5; AU43 present
    at probability >= 0.5). AUs py-feat does not report stay NaN."""
    values = np.full((len(fex), len(AU_COLUMNS)), np.nan)
    found = False
    for j, au in enumerate(AU_COLUMNS):
        if au in fex:
            found = True
            col = fex[au].to_numpy(float)
            values[:, j] = (
                (col >= 0.5).astype(float) if au in BINARY_AUS else np.clip(col, 0, 1) * 5
            )
    if not found:
        raise ValueError(
            f"no AU columns in this py-feat output (columns: {list(fex.columns)[:8]}…)"
        )
    return _table(values, fex.index)


class PyFeatAU:
    """py-feat's AU detector on image files, if its weights are already on this machine."""

    def __init__(self):
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"  # never download at run time
        import torch
        from feat import Detectorv1

        grad = torch.is_grad_enabled()  # py-feat's constructor can leave autograd switched off
        try:
            self.detector = Detectorv1(face_model="retinaface", landmark_model="mobilefacenet",
                                     au_model="xgb", emotion_model=None, identity_model=None,
                                     gaze_model=None, device="cpu")  # fmt: skip
        except Exception as exc:  # py-feat raises hub/OS errors of several kinds when offline
            raise FileNotFoundError(
                f"py-feat AU backend: its model weights are not on this machine ({exc}). "
                f"Download {', '.join(PYFEAT_REPOS)} from the Hugging Face hub into the hub "
                "cache (e.g. `huggingface-cli download py-feat/xgb_au`) on a machine with "
                "internet, or use the offline 'mesh' backend."
            ) from exc
        finally:
            torch.set_grad_enabled(grad)

    def __call__(self, paths) -> pd.DataFrame:
        return from_pyfeat(self.detector.detect(list(map(str, paths)), data_type="image"))


def backend_agreement(a: pd.DataFrame, b: pd.DataFrame, aus=(*PAIN_AUS, "PSPI"),
                      groups=None) -> dict:  # fmt: skip
    """Two backends on the same images (e.g. ``pyfeat`` and ``learned`` on real data, where
    neither is ground truth): per AU, ICC(2,1) and ICC(3,1) [CI over ``groups``, the people;
    None: images], MAE and presence F1 of ``b`` against ``a`` over the AUs both report."""
    from paincontrol_lib.au_reading.learned import agreement

    if len(a) != len(b):
        raise ValueError(f"backend tables have {len(a)} and {len(b)} rows: same images needed")
    shared = [
        au for au in aus if au in a and au in b and a[au].notna().any() and b[au].notna().any()
    ]
    if not shared:
        raise ValueError("the two backends report no AU in common")
    return agreement(a.reset_index(drop=True), b.reset_index(drop=True), shared, groups)


def estimate(backend: str, **inputs) -> pd.DataFrame:
    """``oracle`` (records=), ``mesh`` (meshes=, neutrals=), ``learned`` (meshes=, neutrals=
    in unit crop coordinates, model= path of a stage-04 estimator) or ``pyfeat`` (paths=)."""
    if backend == "oracle":
        return oracle(inputs["records"])
    if backend == "mesh":
        return mesh_aus(inputs["meshes"], inputs["neutrals"])
    if backend == "learned":
        from paincontrol_lib.au_reading.learned import LearnedAU

        return LearnedAU.load(inputs["model"]).read(inputs["meshes"], inputs["neutrals"])
    if backend == "pyfeat":
        return PyFeatAU()(inputs["paths"])
    raise ValueError(f"AU backend {backend!r}: expected oracle, mesh, learned or pyfeat")
