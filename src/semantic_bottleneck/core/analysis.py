"""The models a page analyses, in either profile, as their conditioning: five tensors and a clock.

`load_models(profile, names)` returns one `ModelC` per model whose inputs are present and one
`Missing` per model whose checkpoint is absent (paper profile), so pages render what they can and
name the command that provides the rest. Statistics follow the paper's definitions
(book/method.md#method-definitions): c for every class at the model's initial (pure-noise) t;
cosine is the mean over class pairs y != y' (min reported too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from torch import Tensor

from semantic_bottleneck.core import conditioning, metrics
from semantic_bottleneck.core.conventions import TimeConvention, check_profile
from semantic_bottleneck.training.testbed import is_continuous, load_trained, testbed_config
from semantic_bottleneck.verdicts.paper import PAPER_MODEL_NAMES
from semantic_bottleneck.zoo import fetch, registry


@dataclass(frozen=True)
class ModelC:
    """One model's conditioning path: the five embedder tensors and its time convention.

    Attributes:
        name: registry or testbed name.
        label: display name (the paper's name where it has one).
        family: zoo family of the model class.
        time: time convention (gives initial_t).
        emb: the five embedder tensors (conditioning.EMBEDDER_KEYS).
        source: where the tensors came from (file path or artifact folder).
        continuous: whether the condition is a continuous vector (its "classes" are a set of
            held-out conditions, the table rows their embeddings) rather than a class label.
    """

    name: str
    label: str
    family: str
    time: TimeConvention
    emb: dict[str, Tensor] = field(repr=False)
    source: str
    continuous: bool = False

    @property
    def d(self) -> int:
        return self.emb["t_embedder.mlp.2.bias"].shape[0]

    @property
    def num_classes(self) -> int:
        return self.emb["y_embedder.embedding_table.weight"].shape[0] - 1

    @property
    def initial_t(self) -> float:
        return self.time.initial_t

    def c(self, t: float | None = None) -> Tensor:
        """c = t_embedder(t) + y_embedder(y) for every class; t defaults to the initial t.

        Shapes: -> (num_classes, d).
        """
        t = self.time.initial_t if t is None else t
        return conditioning.class_conditions(self.emb, t)

    def label_only(self) -> Tensor:
        """y_embedder(y) for every class (Table 4, "y alone"). Shapes: -> (num_classes, d)."""
        return conditioning.label_only(self.emb)

    def time_only(self, t: float | None = None) -> Tensor:
        """t_embedder(t) at the initial t by default. Shapes: -> (1, d)."""
        return conditioning.time_only(self.emb, self.time.initial_t if t is None else t)


@dataclass(frozen=True)
class Missing:
    """A model whose input is absent, and the command that provides it."""

    name: str
    label: str
    command: str


@dataclass
class Page:
    """What a page function returns: its tables (value keys, shown by `display.table`), Markdown
    blocks, figures, widgets (ipywidgets, None where inputs are absent), the values its text
    quotes (name -> (value, format); None reads "n/a"), the models it used, the ones whose
    inputs are absent, and notes on what it could not read."""

    tables: dict = field(default_factory=dict)
    markdown: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    widgets: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    found: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def testbed_model(name: str, **train_overrides) -> ModelC:
    """A trained testbed model (trained now, or read from the artifact cache)."""
    config = testbed_config(name, **train_overrides)
    model, _, folder = load_trained(config)
    emb = conditioning.embedders_from_model(model)
    time = config.time_convention
    return ModelC(name, name, config.family, time, emb, str(folder), is_continuous(config))


def paper_model(name: str, cache_dir: str | None = None) -> ModelC | Missing:
    """An official checkpoint's conditioning: from its full file if that is in the weights
    cache, else from its c-only extract (`fetch NAME --c-only`), else Missing with the c-only
    fetch command (the pages that load models this way need c alone)."""
    entry = registry.get_checkpoint(name)
    label = PAPER_MODEL_NAMES.get(name, name)
    path = fetch.locate(entry, cache_dir)
    if path is not None:
        emb = conditioning.read_embedders(path, weights_key=entry.weights_key)
        return ModelC(name, label, entry.family, entry.time, emb, str(path))
    path = fetch.locate_c_only(entry, cache_dir)
    if path is None:
        return Missing(name, label, fetch.fetch_command(name, c_only=True))
    emb = conditioning.read_c_only(path)
    return ModelC(name, label, entry.family, entry.time, emb, str(path))


def load_models(
    profile: str, names: list[str], cache_dir: str | None = None, **train_overrides
) -> tuple[list[ModelC], list[Missing]]:
    """The models of a page: (present, missing). Testbed models are always present."""
    check_profile(profile)
    if not names:
        raise ValueError("names must list at least one model")
    found, missing = [], []
    for name in names:
        if profile == "testbed":
            found.append(testbed_model(name, **train_overrides))
        else:
            model = paper_model(name, cache_dir)
            (missing if isinstance(model, Missing) else found).append(model)
    return found, missing


def missing_notice(missing: list[Missing]) -> str:
    """Markdown notice naming each absent input and the command that fetches it ('' if none)."""
    if not missing:
        return ""
    # a c-only command downloads ~10 MB where the full file is 2.7 GB: say so
    c_only = any(m.command.endswith("--c-only") for m in missing)
    how = " (`--c-only`: only the ~10 MB of each that c needs)" if c_only else ""
    lines = [
        "```{note}",
        "Not shown: these official checkpoints are not in the local weights cache.",
        f"Fetch them{how}, then rebuild with `make book PROFILE=paper`:",
        "",
    ]
    lines += [f"- {m.label} (`{m.name}`): `{m.command}`" for m in missing]
    return "\n".join(lines + ["```"])


def statistics_row(model: ModelC, c: Tensor | None = None) -> dict:
    """Table 1 quantities of one model: d, PR, nPR (a fraction of d) and the cosine summary at
    the initial t.

    pr/npr are per-class values averaged over classes; pr_of_mean/npr_of_mean are those of the
    class-mean c (the paper does not say which it reports, so both are shown).
    """
    c = model.c() if c is None else c
    npr = metrics.normalized_participation_ratio(c)
    pr = metrics.participation_ratio(c)
    cos = metrics.cosine_summary(c)
    mean_c = c.mean(0)
    return {
        "model": model.label,
        "d": model.d,
        "pr": float(pr.mean()),
        "npr": float(npr.mean()),
        "cosine": cos["mean"],
        "cosine_min": cos["min"],
        "pr_of_mean": float(metrics.participation_ratio(mean_c)),
        "npr_of_mean": float(metrics.normalized_participation_ratio(mean_c)),
        "initial_t": model.initial_t,
    }


STATISTICS_COLUMNS = [
    "model",
    "d",
    "pr",
    "npr",
    "cosine",
    "cosine_min",
    "pr_of_mean",
    "npr_of_mean",
    "initial_t",
]
LABEL_VS_SUM_COLUMNS = ["model", "cosine_yt", "npr_yt", "cosine_y", "npr_y"]


def statistics_table(models: list[ModelC]) -> pd.DataFrame:
    """Table 1 analogue: one row per model (see `statistics_row`); no rows when none is present."""
    return pd.DataFrame([statistics_row(m) for m in models], columns=STATISTICS_COLUMNS)


def label_vs_sum_table(models: list[ModelC]) -> pd.DataFrame:
    """Table 4 analogue: one row per model (see `label_vs_sum_row`)."""
    return pd.DataFrame([label_vs_sum_row(m) for m in models], columns=LABEL_VS_SUM_COLUMNS)


def label_vs_sum_row(model: ModelC) -> dict:
    """Table 4 quantities: cosine and nPR (a fraction of d) of y + t (c) and of y alone."""
    c, y = model.c(), model.label_only()
    return {
        "model": model.label,
        "cosine_yt": metrics.cosine_summary(c)["mean"],
        "npr_yt": float(metrics.normalized_participation_ratio(c).mean()),
        "cosine_y": metrics.cosine_summary(y)["mean"],
        "npr_y": float(metrics.normalized_participation_ratio(y).mean()),
    }


MAGNITUDE_THRESHOLDS = {"0_01": 0.01, "0_1": 0.1, "1": 1.0}  # key suffix -> tau


def magnitude_summary(model: ModelC) -> dict:
    """Counts behind the text claims, per class then averaged over classes: dimensions with
    |c_i| above 0.01, 0.1 and 1 (`dims_above_0_01`, ...), s_tail(0.01) and the largest |c_i|
    of any class (`max_abs_c`)."""
    c = model.c()
    row = {"model": model.label, "d": model.d, "max_abs_c": float(c.abs().max())}
    for suffix, tau in MAGNITUDE_THRESHOLDS.items():
        above = float(metrics.sparsity_ratio(c, tau, "head").mean()) * model.d
        row[f"dims_above_{suffix}"] = above
    row["s_tail_0_01"] = float(metrics.sparsity_ratio(c, 0.01, "tail").mean())
    return row


def variance_row(model: ModelC, k: int = 20) -> dict:
    """Fig. 9 quantities: mean variance across classes, the share of the total variance that
    the k highest-variance dimensions carry (`top_share`; the paper: 15-20 head dims carry most
    of it), and how many dimensions carry 90% of it."""
    var = metrics.class_variance(model.c()).numpy()
    top = np.sort(var)[::-1]
    return {
        "model": model.label,
        "mean_variance": float(var.mean()),
        "top_k": k,
        "top_share": float(top[:k].sum() / var.sum()),
        "dims_for_90_percent": int(np.searchsorted(np.cumsum(top) / var.sum(), 0.9) + 1),
    }
