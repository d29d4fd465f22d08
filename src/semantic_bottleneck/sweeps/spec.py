"""The rows of the paper's pruning tables (Sec. 5: Tables 2, 3, 6) as prune specs, and their results.

Each row of the paper's pruning tables becomes a `SweepRow`: which side of c is removed (tail
|c_i| < tau or head |c_i| > tau), when (the schedules t_i, t_0, t_{n-k,n}), and how much. In the
paper profile a row prunes with the paper's own tau. In the testbed profile d is far smaller than
1152, so each row's tau is chosen so that the removed fraction matches the paper's row (tail) or
the removed count matches it (head: "a handful of head dimensions"), and both tau and the count
are reported. Baseline and pruned runs share labels and noise seeds (paired comparison).

Beside the paper's rows stand the controls (`control_rows`), each a PruneSpec option applied to
one of the paper's rows: "random" (the same count removed at random, one row per draw), "mean"
(the removed coordinates set to their class mean instead of 0), "variance" (a head row's
coordinates ranked by variance across classes instead of magnitude) and "all" (the whole of c
zeroed under a row's schedule, once per schedule); and the windows (`window_rows`): a row's
pruning confined to one window of the sampler's steps.

Nothing here samples or scores: the producers (`sweeps.testbed`, `generation.rows`,
`evaluation.scores`) and the tables (`sweeps.run`) build on these definitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from semantic_bottleneck.core import metrics
from semantic_bottleneck.sampling import PruneSpec
from semantic_bottleneck.verdicts import paper


@dataclass(frozen=True)
class SweepRow:
    """One row of a pruning table.

    Attributes:
        label: row name, e.g. "tail 0.01 t_i".
        side: "tail", "head" or None (the baseline).
        schedule: "every" (t_i), "initial" (t_0) or "last_k" (t_{n-k,n}).
        paper_tau: the paper's tau for this row (None for the baseline).
        paper_removed: dimensions the paper removes, of paper_d.
        paper_d: dimension of the paper's c (1152).
        control: None (the paper's operator) or one of `CONTROLS`.
        draw: the random draw of control "random" (0 otherwise).
        window: (start, stop) steps of schedule "window"; None otherwise.
    """

    label: str
    side: str | None
    schedule: str = "every"
    paper_tau: float | None = None
    paper_removed: int = 0
    paper_d: int = 1152
    control: str | None = None
    draw: int = 0
    window: tuple[int, int] | None = None


SCHEDULE_NAMES = {"every": "t_i", "initial": "t_0", "last_k": "t_{n-k,n}"}
CONTROLS = ("random", "mean", "variance", "all")
# the PruneSpec options of each control
CONTROL_OPTIONS = {
    "random": {"select": "random"},
    "mean": {"replace": "mean"},
    "variance": {"select": "variance"},
    "all": {"select": "all"},
}


def paper_rows(table_id: str, model: str | None = None) -> list[SweepRow]:
    """The rows of one of the paper's pruning tables (table2, table3, table6), in printed order.

    Args:
        table_id: "table2" (REPA), "table3" (MG, LightningDiT) or "table6".
        model: keep only this model's rows (the paper's model name); all when None.
    """
    if table_id not in ("table2", "table3", "table6"):
        raise ValueError(f"table_id must be table2, table3 or table6, got {table_id!r}")
    frame = paper.paper_table(table_id)
    if model is not None:
        frame = frame[frame["model"] == model]
        if frame.empty:
            raise ValueError(f"{table_id} has no rows of model {model!r}")
    rows = []
    for r in frame.to_dict("records"):
        side = r.get("side") if isinstance(r.get("side"), str) else None
        schedule = r.get("schedule") if isinstance(r.get("schedule"), str) else "every"
        tau = r.get("tau")
        tau = None if tau is None or (isinstance(tau, float) and np.isnan(tau)) else float(tau)
        removed = r.get("removed")
        removed = 0 if removed is None or np.isnan(removed) else int(removed)
        d = r.get("d")
        d = 1152 if d is None or np.isnan(d) else int(d)
        label = "baseline" if side is None else f"{side} {tau:g} {SCHEDULE_NAMES[schedule]}"
        rows.append(SweepRow(label, side, schedule, tau, removed, d))
    return rows


def control_label(row: SweepRow, control: str, draw: int = 0) -> str:
    """How a control row is named: after its paper row, or "all of c <schedule>"."""
    if control == "all":
        return f"all of c {SCHEDULE_NAMES.get(row.schedule, row.schedule)}"
    suffix = {"random": f"random {draw + 1}", "mean": "mean", "variance": "by variance"}[control]
    return f"{row.label} | {suffix}"


def applies(row: SweepRow, control: str) -> bool:
    """Whether a control stands beside a row: every pruned row has random, mean and all-of-c
    controls; only a head row has the variance ranking (the claim is about the head)."""
    return (
        row.side is not None
        and row.control is None
        and (control != "variance" or row.side == "head")
    )


def control_rows(
    rows: list[SweepRow], controls: str | dict[str, list[str]], draws: int
) -> list[SweepRow]:
    """The control rows beside the given rows.

    Args:
        rows: the paper's rows.
        controls: "all" (every control that applies beside every pruned row) or
            {row label: [control, ...]}.
        draws: random draws per "random" control.

    Returns:
        The control rows, each after its row, one "all of c" row per schedule.
    """
    if isinstance(controls, str):
        if controls != "all":
            raise ValueError(
                f"controls: expected 'all' or a dict of row -> controls, got {controls!r}"
            )
        controls = {r.label: [c for c in CONTROLS if applies(r, c)] for r in rows}
    by_label = {r.label: r for r in rows}
    unknown = sorted(set(controls) - set(by_label))
    if unknown:
        raise ValueError(f"controls: expected rows among {sorted(by_label)}, got {unknown}")
    out, labels = [], set()
    for label, names in controls.items():
        row = by_label[label]
        for control in names:
            if control not in CONTROLS or not applies(row, control):
                raise ValueError(f"controls: {control!r} does not apply to row {label!r}")
            for draw in range(draws if control == "random" else 1):
                new = SweepRow(
                    control_label(row, control, draw), row.side, row.schedule, row.paper_tau,
                    row.paper_removed, row.paper_d, control, draw,
                )  # fmt: skip
                if new.label not in labels:
                    labels.add(new.label)
                    out.append(new)
    return out


def window_rows(row: SweepRow, steps: int, width: int) -> list[SweepRow]:
    """`row`'s pruning confined to consecutive windows of `width` of the `steps` sampler steps
    (step 0 the noisiest), one row per window, labelled "<row> in [start, stop)"."""
    if not 1 <= width <= steps:
        raise ValueError(f"width: expected 1 <= width <= steps = {steps}, got {width}")
    return [
        SweepRow(
            f"{row.label.removesuffix(' t_i')} in [{a}, {min(a + width, steps)})",
            row.side,
            "window",
            row.paper_tau,
            row.paper_removed,
            row.paper_d,
            row.control,
            row.draw,
            (a, min(a + width, steps)),
        )  # fmt: skip
        for a in range(0, steps, width)
    ]


WINDOW_ROWS = ("tail 0.02 t_i", "head 1 t_i")  # the paper's 66% tail row and 8 head dims


def table2_rows(labels: tuple[str, ...]) -> dict[str, SweepRow]:
    """Table 2's baseline and the rows of `labels`, by label (ValueError naming Table 2's rows
    for a label that is none of them)."""
    paper = {r.label: r for r in paper_rows("table2")}
    unknown = [r for r in labels if r not in paper]
    if unknown:
        raise ValueError(f"rows: expected rows of Table 2 among {sorted(paper)}, got {unknown}")
    return {"baseline": paper["baseline"], **{r: paper[r] for r in labels}}


def window_groups(
    steps: int, width: int, rows: tuple[str, ...] = WINDOW_ROWS
) -> dict[str, list[SweepRow]]:
    """Each of `rows` (Table 2 rows) -> its `window_rows`."""
    chosen = table2_rows(rows)
    return {r: window_rows(chosen[r], steps, width) for r in rows}


def window_sweep_rows(
    steps: int, width: int, rows: tuple[str, ...] = WINDOW_ROWS
) -> list[SweepRow]:
    """The windows page's sweep: the baseline, then each of `rows` (Table 2 rows) at every
    step followed by its `window_rows`."""
    chosen = table2_rows(rows)
    groups = window_groups(steps, width, rows)
    return [chosen["baseline"]] + [x for r in rows for x in [chosen[r], *groups[r]]]


def window_settings(
    per_class: int, base_seed: int, num_steps: int, width: int, cfg_scale: float | None = None
) -> SweepSettings:
    """The windows page's sampling settings: its last-k schedule is one window wide."""
    return SweepSettings(per_class=per_class, base_seed=base_seed, num_steps=num_steps,
                         last_k=width, cfg_scale=cfg_scale)  # fmt: skip


def matched_count(row: SweepRow, d: int) -> int:
    """Dimensions to remove at dimension d: the paper's fraction for the tail, its count for the
    head (both kept within 1..d-1 so something is removed and something kept)."""
    if row.side is None:
        return 0
    if row.side == "tail":
        return int(min(max(round(row.paper_removed / row.paper_d * d), 1), d - 1))
    return int(min(max(row.paper_removed, 1), d - 1))


def matched_tau(c: Tensor, row: SweepRow) -> tuple[float | None, int]:
    """The tau that removes `matched_count(row, d)` coordinates of the class-mean |c|, to 6
    significant digits.

    Args:
        c: c of every class at the initial t.
        row: the paper's row.

    Returns:
        (tau, count); (None, 0) for the baseline.

    Shapes: c (n, d).
    """
    count = matched_count(row, c.shape[1])
    if row.side is None:
        return None, 0
    mean_abs = c.abs().mean(0).double().numpy()
    # c's last bits depend on the thread count of the reductions that built it: rounded, tau
    # (a key of every cached row) is the same in a kernel of one thread or of several
    return float(f"{metrics.tau_for_count(mean_abs, count, row.side):.6g}"), count


def prune_spec(
    row: SweepRow, tau: float | None, last_k: int, classes: int | None = None
) -> PruneSpec | None:
    """The pruning operator of a row (None for the baseline).

    Args:
        row: the row.
        tau: its threshold (unused by control "all").
        last_k: k of schedule "last_k".
        classes: the number of classes, for the "mean" and "variance" controls.
    """
    if row.side is None:
        return None
    k = last_k if row.schedule == "last_k" else None
    options = dict(CONTROL_OPTIONS.get(row.control, {}))
    if row.control in ("mean", "variance"):
        if classes is None:
            raise ValueError(f"row {row.label!r}: the {row.control} control needs the class count")
        options["classes"] = classes
    if row.control == "random":
        options["draw"] = row.draw
    tau = None if row.control == "all" else tau
    return PruneSpec(
        side=row.side, tau=tau, schedule=row.schedule, k=k, window=row.window, **options
    )


def spec_table(
    rows: list[SweepRow], c: Tensor | None, last_k: int, classes: int | None = None
) -> list[dict]:
    """Each row with its tau (matched to the testbed's d when c is given, else the paper's),
    its target count, and its PruneSpec.

    Args:
        rows: the rows.
        c: c of every class at the initial t (testbed), or None (the paper's tau).
        last_k: k of schedule "last_k".
        classes: number of classes for the controls (default: the rows of c).
    """
    classes = classes if classes is not None or c is None else c.shape[0]
    out = []
    for row in rows:
        if c is None:
            tau, count = row.paper_tau, None
        else:
            tau, count = matched_tau(c, row)
        out.append(
            {
                "row": row.label,
                "side": row.side,
                "schedule": row.schedule,
                "tau": tau,
                "target count": count,
                "paper tau": row.paper_tau,
                "paper removed": f"{row.paper_removed}/{row.paper_d}",
                "control": row.control,
                "spec": prune_spec(row, tau, last_k, classes),
            }
        )
    return out


SCORE_KEYS = ("fid", "is_adm", "is_10_splits", "precision", "recall")


def result_row(spec_row: dict, info: dict, scores: dict, d: int) -> dict:
    """One measured row of a sweep: its tau, control and removed count, FID, IS under both
    protocols (`is_adm`, `is_10_splits`), precision and recall."""
    row = {k: spec_row[k] for k in ("row", "tau", "target count", "control")}
    row.update(removed=removed_summary(info), d=d)
    row.update({k: scores[k] for k in SCORE_KEYS}, n=scores["n_samples"])
    return row


def removed_summary(info: dict) -> float:
    """Mean number of coordinates of c removed per sample (conditional rows)."""
    removed = info.get("removed")
    if removed is None:
        return 0.0
    return float(torch.as_tensor(removed, dtype=torch.float64).mean())


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep samples: every parameter that changes its numbers (hashed into the cache).

    Attributes:
        per_class: samples per class (the paper: 5 per ImageNet class).
        base_seed: seed of sample i is derived from (base_seed, i); shared by every row.
        num_steps: sampler steps (None: the model's own count, 250 for every checkpoint).
        last_k: k of the t_{n-k,n} schedule (the paper does not state it).
        cfg_scale: guidance scale (None: the model's own scale).
        grid_per_class: samples per class kept for the figure grids.
        bf16: run the model under bf16 autocast on CUDA. Off by default: every official
            sampler runs the model in float32 (with TF32 matmuls), and bf16 rounds the large
            coordinates of c (|c_i| of 4 to 8) by more than tau = 0.01.
        n_boot: resamples of the paired bootstrap of each row's difference from the baseline.
    """

    per_class: int = 20
    base_seed: int = 0
    num_steps: int | None = 50
    last_k: int = 10
    cfg_scale: float | None = None
    grid_per_class: int = 2
    bf16: bool = False
    n_boot: int = 500


# the classes DiT's sample.py draws; the paper-profile figure grids show them
GRID_CLASSES = (207, 360, 387, 974, 88, 979, 417, 279)


def class_grid(images, per_class: int, grid_per_class: int) -> np.ndarray:
    """The figure grid of a class-major sample set: the first `grid_per_class` samples of each
    class, or of `GRID_CLASSES` for an ImageNet-size set.

    Shapes: images (classes * per_class, H, W, 3) -> (classes shown, grid_per_class, H, W, 3).
    """
    images = np.asarray(images)
    num_classes = len(images) // per_class
    classes = list(GRID_CLASSES) if num_classes >= 1000 else slice(None)
    per = images.reshape(num_classes, per_class, *images.shape[1:])
    return np.ascontiguousarray(per[classes, :grid_per_class])
