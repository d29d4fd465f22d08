"""Display names and number formats of the value keys: the only place they appear.

Values travel through the package under snake_case keys with one unit each (nPR is a fraction of
d); a table or figure gets its headers and formats from here when it is rendered, so renaming a
header never changes a value's key.
"""

from __future__ import annotations

import pandas as pd

# value key -> header
COLUMN_LABELS = {
    "model": "model",
    "d": "d",
    "pr": "PR",
    "npr": "nPR (%)",
    "pr_of_mean": "PR of mean c",
    "npr_of_mean": "nPR of mean c (%)",
    "cosine": "mean cosine",
    "cosine_min": "min cosine",
    "initial_t": "initial t",
    "cosine_yt": "cosine (y + t)",
    "npr_yt": "nPR (y + t) (%)",
    "cosine_y": "cosine (y)",
    "npr_y": "nPR (y) (%)",
    "max_abs_c": "max |c|",
    "dims_above_0_01": "dims |c| > 0.01",
    "dims_above_0_1": "dims |c| > 0.1",
    "dims_above_1": "dims |c| > 1",
    "s_tail_0_01": "s_tail(0.01)",
    "mean_variance": "mean variance",
    "top_k": "k",
    "top_share": "share of the top-k dims",
    "dims_for_90_percent": "dims for 90% of variance",
    "fid": "FID",
    "is_10_splits": "IS (10 splits)",
    "is_adm": "IS (ADM, 5,000 per split)",
    "clip": "CLIP score",
    "precision": "precision",
    "recall": "recall",
    "removed": "dims removed",
    "tau": "tau",
}
# keys held as fractions and shown in percent
PERCENT_KEYS = frozenset({"npr", "npr_of_mean", "npr_yt", "npr_y"})


def label(key: str) -> str:
    """The header of a value key; a key with a suffix such as "npr (paper)" keeps the suffix."""
    base, sep, rest = key.partition(" (")
    return COLUMN_LABELS.get(base, base) + (f" ({rest}" if sep else "")


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a page shows it: percent keys times 100, headers from `COLUMN_LABELS`."""
    out = frame.copy()
    for col in out.columns:
        if isinstance(col, str) and col.partition(" (")[0] in PERCENT_KEYS:
            out[col] = out[col] * 100
    return out.rename(columns={c: label(c) for c in out.columns if isinstance(c, str)})
