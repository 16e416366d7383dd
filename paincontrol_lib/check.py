"""``paincontrol check``: are the external weights a configuration needs on this machine?

Nothing is downloaded at run time, so the GPU path (``profiles/sd15.yaml``) needs folders the
user fetched beforehand: Stable Diffusion 1.5 in diffusers layout, optionally a ControlNet to
start from, ArcFace for identity, py-feat for its AU backend. Each check names every file it
looked for and where, so a missing piece is found before an hour of GPU time, not during it.
"""

from __future__ import annotations

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

    @property
    def ok(self) -> bool:
        return not self.missing

    def lines(self) -> list[str]:
        if self.ok:
            return [f"ok       {self.name}: {self.looked_in}"]
        out = [f"MISSING  {self.name}: looked in {self.looked_in}"]
        out += [f"           - {m}" for m in self.missing]
        return out + ([f"           get it: {self.how_to_get}"] if self.how_to_get else [])


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
    from paincontrol_lib.au import PyFeatAU

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
