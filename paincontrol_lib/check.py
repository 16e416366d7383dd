"""``paincontrol check``: are the external weights a configuration needs on this machine, and
will the pipeline accept a dataset folder?

Nothing is downloaded at run time, so the GPU path (``profiles/sd15.yaml``) needs folders the
user fetched beforehand: Stable Diffusion 1.5 in diffusers layout, optionally a ControlNet to
start from, ArcFace for identity, py-feat for its AU backend. Each check names every file it
looked for and where, so a missing piece is found before an hour of GPU time, not during it.

``check_data`` loads a dataset folder with the adapter stage 01 uses and splits its people as
stage 01 does: a layout the pipeline would reject (an adapter error, a split without train, val
or test people, no readable image) fails here, before any compute; unlabelled frames, unreadable
images and set-aside AAM files are listed as warnings.
"""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.safetensors")  # fmt: skip
TEXT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.fp16.safetensors")
# Stable Diffusion 1.5 in diffusers layout: subfolder -> (files all needed, one of these needed)
SD15_LAYOUT = {
    "unet": (("config.json",), WEIGHT_FILES),
    "vae": (("config.json",), WEIGHT_FILES),
    "text_encoder": (("config.json",), TEXT_WEIGHT_FILES),
    # CLIP's vocab.json + merges.txt, or the single tokenizer.json newer transformers write
    "tokenizer": (("tokenizer_config.json",), ("vocab.json", "tokenizer.json")),
    "scheduler": (("scheduler_config.json",), ()),
}
SD15_SOURCE = (
    "Stable Diffusion 1.5 in diffusers layout (e.g. `huggingface-cli download "
    "stable-diffusion-v1-5/stable-diffusion-v1-5 --local-dir DIR` on a machine with internet; "
    "CreativeML OpenRAIL-M licence)"
)
CONTROLNET_SOURCE = "a diffusers ControlNet folder (config.json and weights), or leave it empty"


@dataclass
class Check:
    """One component: what it is for, where it was looked for, what is missing."""

    name: str
    looked_in: str
    missing: list[str] = field(default_factory=list)
    how_to_get: str = ""
    notes: list[str] = field(default_factory=list)  # what was found, e.g. counts
    warnings: list[str] = field(default_factory=list)  # worth a look; blocks nothing

    @property
    def ok(self) -> bool:
        return not self.missing

    def lines(self) -> list[str]:
        if self.ok:
            out = [f"{'WARN' if self.warnings else 'ok':<9}{self.name}: {self.looked_in}"]
        else:
            out = [f"MISSING  {self.name}: looked in {self.looked_in}"]
            out += [f"           - {m}" for m in self.missing]
        out += [f"           {n}" for n in self.notes]
        out += [f"           - {w}" for w in self.warnings]
        how = [f"           get it: {self.how_to_get}"] if self.how_to_get and not self.ok else []
        return out + how


def _folder_missing(folder: Path, needed: tuple, one_of: tuple) -> list[str]:
    if not folder.is_dir():
        return [f"{folder}/ (no such folder)"]
    missing = [str(folder / name) for name in needed if not (folder / name).is_file()]
    if one_of and not any((folder / name).is_file() for name in one_of):
        missing.append(f"{folder}/ one of {', '.join(one_of)}")
    return missing


def check_sd15(folder) -> Check:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        missing = [f"{folder}/ (no such folder)"]
    else:
        missing = [m for sub, (needed, one_of) in SD15_LAYOUT.items()
                   for m in _folder_missing(folder / sub, needed, one_of)]  # fmt: skip
    return Check("Stable Diffusion 1.5 (train.pretrained)", str(folder), missing, SD15_SOURCE)


def check_controlnet(folder) -> Check:
    folder = Path(folder).expanduser()
    missing = _folder_missing(folder, ("config.json",), WEIGHT_FILES)
    return Check("ControlNet to start from (train.controlnet_init)", str(folder), missing,
                 CONTROLNET_SOURCE)  # fmt: skip


def check_arcface(model_dir=None) -> Check:
    """The weight file only: no ONNX session is built just to see that it is there."""
    from paincontrol_lib.identity import ARCFACE_FILE, ARCFACE_PACK, arcface_search_dirs

    dirs = arcface_search_dirs(model_dir)
    found = any((d / ARCFACE_FILE).is_file() for d in dirs)
    return Check(
        "ArcFace identity (identity_backend: arcface)",
        ", ".join(map(str, dirs)),
        [] if found else [str(d / ARCFACE_FILE) for d in dirs],
        f"insightface's '{ARCFACE_PACK}' model pack (non-commercial research use): unzip "
        f"{ARCFACE_PACK}.zip into ~/.insightface/models/{ARCFACE_PACK}/ (never downloaded here)",
    )


def check_pyfeat() -> Check:
    from paincontrol_lib.au_reading.backends import PyFeatAU

    try:
        PyFeatAU()
    except (FileNotFoundError, ImportError) as exc:
        return Check("py-feat AU models (evaluate.au_estimator.compare_pyfeat)",
                     "the Hugging Face hub cache", [str(exc)])  # fmt: skip
    return Check("py-feat AU models (evaluate.au_estimator.compare_pyfeat)", "hub cache")


def checks_for(params: dict) -> list[Check]:
    """Every external weight a parameter set needs (none for the default)."""
    train = params["train"]
    found = []
    if train["preset"] == "sd15":
        if not train["pretrained"] and not train.get("init_from"):
            found.append(Check("Stable Diffusion 1.5 (train.pretrained)", "params: empty",
                               ["train.pretrained is empty"], SD15_SOURCE))  # fmt: skip
        elif train["pretrained"]:
            found.append(check_sd15(train["pretrained"]))
        if train["controlnet_init"]:
            found.append(check_controlnet(train["controlnet_init"]))
    if train["identity_backend"] == "arcface":
        found.append(check_arcface())
    if params["evaluate"]["au_estimator"].get("compare_pyfeat"):
        found.append(check_pyfeat())
    return found


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, width=88, subsequent_indent="  ", break_on_hyphens=False)


def image_problem(path: Path) -> str:
    """Why an image file would not load, "" when its header reads (no pixels are decoded)."""
    from PIL import Image

    try:
        if path.stat().st_size == 0:
            return f"{path}: empty file (0 bytes)"
        with Image.open(path):
            pass  # opening parses the header
    except OSError as exc:  # PIL's UnidentifiedImageError included
        return f"{path}: unreadable image ({exc})"
    return ""


def check_data(source: str, root, data: dict, seed: int) -> list[Check]:
    """``root`` as the pipeline would see it with ``data.source: source``: its records (people,
    frames, labels), the subject split stage 01 makes with ``data``'s fractions and ``seed``,
    and the files that would not load."""
    from paincontrol_lib.data.sources import load_records

    name, where = f"data ({source} adapter)", str(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # set-aside AAM files are listed below instead
            records = load_records(source, root)
    except (OSError, ValueError) as exc:
        return [Check(name, where, [str(exc)])]
    per_person = records.groupby("subject").size()
    labelled, pain = int(records["PSPI"].notna().sum()), int((records["PSPI"] > 0).sum())
    counts = (
        f"{_people(len(per_person))}, {len(records)} frames, {labelled} with labels (PSPI "
        f"known), {pain} with pain (PSPI > 0)"
    )
    spread = ", ".join(f"{person} {n}" for person, n in per_person.items())
    checks = [
        Check(name, where, notes=[counts, *_wrapped(f"frames per person: {spread}")]),
        split_check(records, data, seed, where),
    ]
    unlabelled = list(records.loc[records["PSPI"].isna(), "image"])
    no_labels = [
        f"{len(unlabelled)} of {len(records)} frames have no label (pain AUs unknown), e.g. "
        + ", ".join(unlabelled[:3])
    ]
    checks.append(Check("labels (PSPI)", where, warnings=no_labels if unlabelled else []))
    problems = [p for p in map(image_problem, map(Path, records["image"])) if p]
    none_readable = ["no image file can be read"] if len(problems) == len(records) else []
    checks.append(Check("image files (headers)", where, none_readable, warnings=problems))
    if "aam_problem" in records:
        set_aside = [p for p in records["aam_problem"] if p]
        kept = [f"{len(set_aside)} set aside, their frames kept without AAM points:"]
        checks.append(Check("AAM landmark files", where, notes=kept if set_aside else [],
                            warnings=set_aside))  # fmt: skip
    return checks


def split_check(records, data: dict, seed: int, where: str) -> Check:
    """The train/val/test people stage 01 would make: stages 02-05 need some of each."""
    from paincontrol_lib.data.records import with_subject_split

    test_fraction, val_fraction = data["test_fraction"], data.get("val_fraction", 0.0)
    name = "people for the train/val/test split"
    settings = (
        "the dataset's own split"
        if (records["split"] != "").any()
        else f"data.test_fraction {test_fraction}, data.val_fraction {val_fraction}, seed {seed}"
    )
    try:
        split = with_subject_split(records, test_fraction, seed, val_fraction)["split"]
    except ValueError as exc:
        return Check(name, where, [f"{exc} (found {_people(records['subject'].nunique())})"])
    people = records.assign(split=split).groupby("split")["subject"].nunique()
    counts = {part: int(people.get(part, 0)) for part in ("train", "val", "test")}
    found = ", ".join(f"{n} {part}" for part, n in counts.items())
    empty = [part for part, n in counts.items() if not n]
    if empty:
        problem = (
            f"no {' or '.join(empty)} people ({found}; {settings}): stages 02-05 need train, "
            "val and test people; add people or change the fractions"
        )
        return Check(name, where, [problem])
    return Check(name, where, notes=[f"{found} people ({settings})"])


def _people(n: int) -> str:
    return f"{n} {'person' if n == 1 else 'people'}"
