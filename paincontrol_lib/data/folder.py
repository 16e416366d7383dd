"""Any folder of face images, optionally with a CSV of subjects and AUs.

Layout under the dataset root::

    <any sub-folders>/<image files>        (.png .jpg .jpeg .bmp .tif .tiff .webp)
    labels.csv (optional, or labels=...)   an image column, optional subject and AU columns

Without labels, the subject is the image's sub-folder (images directly under the root are each
their own subject) and AUs are NaN (unknown).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paincontrol_lib.data.delaware import read_label_table
from paincontrol_lib.data.records import LayoutError, finish_records, list_images

LAYOUT = __doc__.split("::", 1)[1].split("\n\nWithout")[0]


def records(root: Path, labels: str | Path | None = "labels.csv") -> pd.DataFrame:
    root = Path(root)
    images = list_images(root)
    if not images:
        raise LayoutError("folder", f"{root}/<images> (no image files)", LAYOUT)
    label_path = (
        None
        if labels is None
        else (root / labels if not Path(labels).is_absolute() else Path(labels))
    )
    if label_path is not None and label_path.is_file():
        table = read_label_table(label_path, root, "folder")
    elif label_path is not None and labels != "labels.csv":
        raise LayoutError("folder", label_path, LAYOUT)
    else:
        table = pd.DataFrame({"image": [str(p) for p in images]})
    if "subject" not in table:
        table["subject"] = [
            Path(p).parent.name if Path(p).parent != root else Path(p).stem for p in table["image"]
        ]
    table["sequence"] = table["subject"]
    table["frame"] = table.groupby("subject").cumcount()
    return finish_records(table, "folder")
