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


# A table in a notebook shows at most this many rows; the whole table is a CSV under reports/plots.
SHOWN_ROWS = 20


def quiet_tables() -> None:
    """pandas shows at most :data:`SHOWN_ROWS` rows, one line per row, four decimals: no wrapped
    or 12k-character reprs in the executed notebooks."""
    import pandas as pd

    pd.set_option("display.max_rows", SHOWN_ROWS)
    pd.set_option("display.min_rows", SHOWN_ROWS)
    pd.set_option("display.max_columns", 12)
    pd.set_option("display.expand_frame_repr", False)
    pd.set_option("display.precision", 4)


def table(frame, name: str, reports_dir, rows=None):
    """``frame`` as a notebook shows it: written whole to ``reports/plots/<name>.csv`` and shown
    as the ``rows`` (a boolean mask or labels; default the first :data:`SHOWN_ROWS`), with one
    line saying how many rows are shown and where the rest are."""
    from paincontrol_lib.io import atomic_write_bytes

    path = Path(reports_dir) / "plots" / f"{name}.csv"
    atomic_write_bytes(path, frame.to_csv().encode())
    shown = frame.head(SHOWN_ROWS) if rows is None else frame.loc[rows]
    if len(shown) > SHOWN_ROWS:
        raise ValueError(f"{name}: {len(shown)} rows chosen to show, at most {SHOWN_ROWS}")
    print(f"{len(shown)} of {len(frame)} rows; the whole table: {path.as_posix()}")
    return shown


def scalars(metrics: dict, keys):
    """The named entries of a metrics dict (``key`` or ``("nested", "key")``) as a two-column
    table, what a cell shows instead of the raw dict; the dict is in ``reports/metrics``."""
    import pandas as pd

    rows = []
    for key in keys:
        path = key if isinstance(key, tuple) else (key,)
        value = metrics
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, float):
            value = round(value, 4)
        rows.append({"metric": ".".join(path), "value": value})
    return pd.DataFrame(rows).set_index("metric")


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
    quiet_tables()
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
