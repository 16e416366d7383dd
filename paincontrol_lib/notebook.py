"""What every stage notebook does right after its ``parameters`` cell, so the same notebook runs
under the pipeline and, opened by hand, in JupyterLab.

Under ``dvc repro`` the runner (papermill) injects each ``params.yaml`` section the notebook
declares plus ``pipeline = True``. Opened by hand nothing is injected: :func:`setup` then fills
every declared section from ``params.yaml`` (``config.load_params``) and points the stage's
output folders at ``scratch/<notebook>/``, so an interactive run never overwrites the committed
metrics, figures or data. Either way the working directory becomes the repository root, so the
relative paths of ``params.yaml`` mean the same thing wherever Jupyter was started, and the
figures use the one theme of :mod:`paincontrol_lib.figures`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from paincontrol_lib.config import REPO_ROOT, load_params
from paincontrol_lib.figures import theme

# tqdm.auto, imported by diffusers and transformers, warns in every kernel without ipywidgets
# that it falls back to text bars; the bars work (and stages show none), the warning is noise.
warnings.filterwarnings("ignore", message="IProgress not found")

SCRATCH = "scratch"
# Per notebook, the parameters that name what the stage writes (an interactive run writes them
# under scratch/<notebook>/ instead), as (section or None, key) paths into the notebook's names.
OUTPUTS = {
    "00_synthpain": [("data_dir",), ("reports_dir",)],
    "01_landmarks": [("out_dir",), ("reports_dir",)],
    "02_train_controlnet": [("models_dir",), ("reports_dir",)],
    "03_transfer": [("out_dir",), ("reports_dir",)],
    "04_au_identity": [("reports_dir",), ("evaluate", "au_estimator", "path")],
    "05_augmentation": [("reports_dir",)],
    "06_realism_study": [("study_dir",), ("reports_dir",)],
}


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding
    ``dvc.yaml`` and ``params.yaml``; the installed library's checkout when none does."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "params.yaml").is_file():
            return folder
    return REPO_ROOT


def setup(notebook: str, names: dict) -> Path:
    """Prepare the notebook's namespace ``names`` (its ``globals()``) as described above;
    returns the repository root. Prints one line when the run is interactive."""
    if notebook not in OUTPUTS:
        raise KeyError(f"unknown stage notebook {notebook!r}; known: {sorted(OUTPUTS)}")
    root = repo_root()
    os.chdir(root)
    theme()
    if names.get("pipeline"):
        return root
    params = load_params(root / "params.yaml")
    for section in params:
        if section in names:
            names[section] = params[section]
    scratch = Path(SCRATCH) / notebook
    for path in OUTPUTS[notebook]:
        holder = names
        for key in path[:-1]:
            holder = holder[key]
        holder[path[-1]] = str(scratch / Path(holder[path[-1]]).name)
    print(f"interactive run: parameters from {root / 'params.yaml'}; outputs under {scratch}/")
    return root
