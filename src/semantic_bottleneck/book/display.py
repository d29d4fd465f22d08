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
    # c = T + Y (the mechanism page)
    "t_norm": "‖T‖",
    "y_spread": "spread of Y",
    "shared_norm": "‖T + mean Y‖",
    "ratio_t": "‖T‖ / spread",
    "ratio_shared": "‖T + mean Y‖ / spread",
    "npr_t": "nPR(T) (%)",
    "t_share_top_k": "T's share of the top-10 dims",
    "cosine_predicted": "predicted cosine",
    # the sampler grid (the timestep page)
    "step": "step",
    "t": "t",
    "steps": "steps",
    "cosine_first": "cosine, first step",
    "cosine_last": "cosine, last step",
    "cosine_lowest": "lowest cosine",
    "npr_first": "nPR, first step (%)",
    "npr_last": "nPR, last step (%)",
    "npr_lowest": "lowest nPR (%)",
    # the scale study
    "run": "run",
    "tier": "tier",
    "width": "width",
    "lr": "learning rate",
    "classes": "classes",
    "wall_minutes": "wall time (min)",
    "npr_per_decade": "nPR change per 10x steps (points)",
    "steps_to_dit_npr": "steps to DiT-XL's nPR",
    "dit_npr_reached": "reached (else extrapolated)",
    "steps_to_repa_npr": "steps to REPA-XL's nPR",
    "repa_npr_reached": "reached (else extrapolated)",
    "npr_10_classes": "nPR, 10 classes (%)",
    "npr_80_classes": "nPR, 80 classes (%)",
    "cosine_10_classes": "cosine, 10 classes",
    "cosine_80_classes": "cosine, 80 classes",
    # continuous conditions (Fig 4, Table 7)
    "conditions": "conditions",
    "s_head": "s_head(tau)",
    "s_tail": "s_tail(tau)",
    "psnr": "PSNR (dB)",
    "psnr_ci": "PSNR ± 95%",
    "psnr_change": "PSNR change (dB)",
    "psnr_change_ci": "PSNR change ± 95%",
    "ssim": "SSIM",
    "ssim_ci": "SSIM ± 95%",
    "ssim_change": "SSIM change",
    "ssim_change_ci": "SSIM change ± 95%",
    "lpips": "LPIPS",
    "printed_label": "row (as printed)",
}
# keys held as fractions and shown in percent
PERCENT_KEYS = frozenset(
    {
        "npr",
        "npr_of_mean",
        "npr_yt",
        "npr_y",
        "npr_t",
        "npr_first",
        "npr_last",
        "npr_lowest",
        "npr_per_decade",
        "npr_10_classes",
        "npr_80_classes",
    }
)
# key -> number format of its column (one per quantity); others: FLOAT_FORMAT
FORMATS = {
    "d": "{:.0f}",
    "s_head": "{:.3f}",
    "s_tail": "{:.3f}",
    "psnr": "{:.3f}",
    "psnr_ci": "{:.3f}",
    "psnr_change": "{:+.3f}",
    "psnr_change_ci": "{:.3f}",
    "ssim": "{:.4f}",
    "ssim_ci": "{:.4f}",
    "ssim_change": "{:+.4f}",
    "ssim_change_ci": "{:.4f}",
    "lpips": "{:.4f}",
    "pr": "{:.2f}",
    "pr_of_mean": "{:.2f}",
    "npr": "{:.2f}",
    "npr_of_mean": "{:.2f}",
    "npr_yt": "{:.2f}",
    "npr_y": "{:.2f}",
    "cosine": "{:.4f}",
    "cosine_min": "{:.4f}",
    "cosine_yt": "{:.4f}",
    "cosine_y": "{:.4f}",
    "fid": "{:.2f}",
    "is_10_splits": "{:.2f}",
    "is_adm": "{:.2f}",
    "clip": "{:.3f}",
    "precision": "{:.4f}",
    "recall": "{:.4f}",
    "removed": "{:.1f}",
    "tau": "{:.4g}",
    "max_abs_c": "{:.3f}",
    "s_tail_0_01": "{:.3f}",
    "mean_variance": "{:.2e}",
    "top_share": "{:.3f}",
    "t_norm": "{:.3f}",
    "y_spread": "{:.3f}",
    "shared_norm": "{:.3f}",
    "ratio_t": "{:.2f}",
    "ratio_shared": "{:.2f}",
    "npr_t": "{:.2f}",
    "t_share_top_k": "{:.3f}",
    "cosine_predicted": "{:.4f}",
    "t": "{:.4g}",
    "cosine_first": "{:.4f}",
    "cosine_last": "{:.4f}",
    "cosine_lowest": "{:.4f}",
    "npr_first": "{:.2f}",
    "npr_last": "{:.2f}",
    "npr_lowest": "{:.2f}",
    "lr": "{:.0e}",
    "wall_minutes": "{:.1f}",
    "npr_per_decade": "{:.1f}",
    "steps_to_dit_npr": "{:,.0f}",
    "steps_to_repa_npr": "{:,.0f}",
    "npr_10_classes": "{:.2f}",
    "npr_80_classes": "{:.2f}",
    "cosine_10_classes": "{:.4f}",
    "cosine_80_classes": "{:.4f}",
}
FLOAT_FORMAT = "{:.4g}"
# the column groups of a table beside the paper ("vs baseline": a row's change from its own
# baseline with its interval)
SOURCES = ("paper", "this run", "diff", "vs baseline")


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


def _split(col) -> tuple[str, str]:
    """("fid", "paper") for "fid (paper)"; (key, "") for a plain key."""
    base, sep, rest = str(col).partition(" (")
    return (
        (base, rest.removesuffix(")"))
        if sep and rest.removesuffix(")") in SOURCES
        else (str(col), "")
    )


def table(frame: pd.DataFrame | None):
    """A table as a page shows it (None stays None: a page whose inputs are absent shows its
    notice instead): no index column (a named index becomes the first column),
    headers from `COLUMN_LABELS`, nPR in percent, one number format per quantity, and columns
    "key (paper)", "key (this run)", "key (diff)" grouped under one header.

    Returns:
        a pandas Styler (rendered as an HTML table), or None.
    """
    if frame is None:
        return None
    out = frame.copy()
    if any(name is not None for name in out.index.names):
        out = out.reset_index()
    for col in out.columns:
        if _split(col)[0] in PERCENT_KEYS:
            out[col] = out[col] * 100
    keys = [_split(c) for c in out.columns]
    formats = {
        key: FORMATS.get(key[0], FLOAT_FORMAT)
        for key, col in zip(keys, out.columns, strict=True)
        if pd.api.types.is_float_dtype(out[col])
    }
    if not any(source for _, source in keys):  # one header row
        out.columns = [k for k, _ in keys]
        styler = out.style.format({k[0]: f for k, f in formats.items()}, na_rep="-")
        return styler.hide(axis="index").relabel_index([label(k) for k, _ in keys], axis="columns")
    out.columns = pd.MultiIndex.from_tuples(keys)  # quantity over paper | this run | diff
    styler = out.style.format(formats, na_rep="-").hide(axis="index")
    top = [COLUMN_LABELS.get(k, k) for k, _ in keys]  # one per column; equal ones are merged
    return styler.relabel_index(top, axis="columns", level=0)
