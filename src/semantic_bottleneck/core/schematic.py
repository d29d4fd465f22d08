"""Fig. 2: how the condition reaches every block, drawn from a model's own layer shapes.

The paper's Fig. 2 is a schematic: the class label y and the timestep t are embedded, summed into
the conditional vector c = t_embedder(t) + y_embedder(y), and c drives the AdaLN modulation
(shift, scale, gate) of every transformer block and the (shift, scale) of the final layer. The
pruning operator P(c) of Sec. 5 sits between c and the modulations. The sizes printed in the
drawing (d, depth, the output width of each modulation) are read from a state dict or a manifest
of key shapes (`layout_from_shapes`), so the picture states the architecture it is drawn from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from semantic_bottleneck.training.testbed import testbed_config
from semantic_bottleneck.zoo import build_model, registry

# `<prefix>.<index>.adaLN_modulation.1.weight` in blocks, `final_layer.adaLN_modulation.1.weight`
_MODULATION_KEY = re.compile(r"^(?P<owner>.+)\.adaLN_modulation\.\d+\.weight$")

COLORS = {
    "input": "#e8eef7",
    "embedder": "#d5e8d4",
    "c": "#fff2cc",
    "prune": "#f8cecc",
    "block": "#eeeeee",
    "adaln": "#dae8fc",
}


@dataclass(frozen=True)
class Layout:
    """The conditioning layout of one model.

    Attributes:
        d: width of c (and of the transformer).
        depth: number of transformer blocks whose AdaLN reads c.
        block_chunks: modulation outputs per block (6: shift, scale, gate for attention and MLP).
        final_chunks: modulation outputs of the final layer (2: shift, scale).
        num_classes: label classes (the embedding table has one more row, the null class).
    """

    d: int
    depth: int
    block_chunks: int = 6
    final_chunks: int = 2
    num_classes: int | None = None


def layout_from_shapes(shapes: Mapping[str, Sequence[int]]) -> Layout:
    """Read the layout from key -> shape (a state dict's shapes or a checkpoint manifest).

    Every `*.adaLN_modulation.<i>.weight` is one modulation Linear of shape (chunks * d, d); the
    one owned by `final_layer` is the final layer's, all others are blocks (MDT's encoder,
    decoder and side blocks count as blocks).

    Args:
        shapes: parameter name -> shape.

    Returns:
        The Layout. Raises ValueError when no modulation layer or no final layer is found, or
        when their shapes do not fit (chunks * d, d).

    Shapes: shapes[k] is a tuple of ints.
    """
    blocks, final = [], None
    for key, shape in shapes.items():
        match = _MODULATION_KEY.match(key)
        if not match:
            continue
        if len(shape) != 2 or shape[0] % shape[1]:
            raise ValueError(f"{key}: expected a (chunks * d, d) weight, got shape {tuple(shape)}")
        chunks = (shape[0] // shape[1], shape[1])
        if match["owner"] == "final_layer":
            final = chunks
        else:
            blocks.append(chunks)
    if not blocks or final is None:
        raise ValueError(
            "shapes: expected block and final_layer '*.adaLN_modulation.1.weight' keys, got "
            f"{len(blocks)} block(s) and {'a' if final else 'no'} final layer"
        )
    if len(set(blocks)) != 1 or final[1] != blocks[0][1]:
        raise ValueError(
            f"shapes: modulation layers disagree on d or chunks: {set(blocks)}, {final}"
        )
    table = shapes.get("y_embedder.embedding_table.weight")
    classes = int(table[0]) - 1 if table is not None else None
    return Layout(blocks[0][1], len(blocks), blocks[0][0], final[0], classes)


def parameter_shares(shapes: Mapping[str, Sequence[int]]) -> dict[str, int | float]:
    """How many parameters the AdaLN modulation Linears hold, of all parameters in `shapes`.

    Returns:
        {"modulation": count (weights and biases), "total": count, "share": modulation / total}.
    """

    def size(shape: Sequence[int]) -> int:
        n = 1
        for s in shape:
            n *= int(s)
        return n

    total = sum(size(s) for s in shapes.values())
    modulation = sum(
        size(s)
        for k, s in shapes.items()
        if ".adaLN_modulation." in k and k.endswith(("weight", "bias"))
    )
    if total == 0:
        raise ValueError("shapes: expected at least one parameter, got none")
    return {"modulation": modulation, "total": total, "share": modulation / total}


def model_shapes(profile: str, name: str) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of a page's model without any weights.

    testbed: the zoo model its training config builds (untrained; shapes do not depend on
    training). paper: the official checkpoint's manifest shipped with the package.
    """
    if profile == "testbed":
        config = testbed_config(name)
        model = build_model(config.family, **config.model_config())
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if profile == "paper":
        return dict(registry.get_checkpoint(name).shapes)
    raise ValueError(f"profile: expected 'testbed' or 'paper', got {profile!r}")


def _box(ax, x, y, w, h, text, color, *, dashed=False, size=9):
    patch = FancyBboxPatch(
        (x, y),
        w,
        h,
        boxstyle="round,pad=0.02,rounding_size=0.15",
        fc=color,
        ec="#333333",
        lw=1.0,
        ls="--" if dashed else "-",
    )
    ax.add_patch(patch)
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, wrap=True)
    return patch


def _arrow(ax, start, end, *, color="#333333", style="-|>", ls="-"):
    ax.add_patch(
        FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=11, color=color, lw=1.1, ls=ls)
    )


def _block(ax, x, layout: Layout, title: str, final: bool) -> float:
    """One transformer block (or the final layer) with its AdaLN box; returns the AdaLN centre x."""
    w = 3.6
    _box(ax, x, 5.2, w, 4.6, "", COLORS["block"])
    ax.text(x + w / 2, 9.45, title, ha="center", va="center", fontsize=10, weight="bold")
    if final:
        body = "LayerNorm, modulate\n(shift, scale)\n-> Linear to patches"
        names = "shift, scale"
    else:
        body = "LayerNorm, modulate -> attention\n* gate (residual)\nLayerNorm, modulate -> MLP\n* gate (residual)"
        names = "shift, scale, gate (attention)\nshift, scale, gate (MLP)"
    ax.text(x + w / 2, 8.25, body, ha="center", va="center", fontsize=7.5)
    chunks = layout.final_chunks if final else layout.block_chunks
    adaln = f"AdaLN: SiLU -> Linear({layout.d}, {chunks * layout.d})\n-> {names}"
    _box(ax, x + 0.15, 5.4, w - 0.3, 1.6, adaln, COLORS["adaln"], size=7)
    return x + w / 2


def draw_schematic(layout: Layout, show_pruning: bool = True, title: str | None = None):
    """Fig. 2: condition (y, t) -> embedders -> c -> P(c) -> AdaLN of every block and the final layer.

    Args:
        layout: sizes to print (see `layout_from_shapes`).
        show_pruning: draw the pruning operator P(c) between c and the modulations.
        title: figure title (default: the layout's d and depth).

    Returns:
        A matplotlib Figure.

    Shapes: drawing only.
    """
    if layout.d < 1 or layout.depth < 1 or layout.block_chunks < 1 or layout.final_chunks < 1:
        raise ValueError(f"layout: expected positive d, depth and chunks, got {layout}")
    fig, ax = plt.subplots(figsize=(14, 6.2))
    ax.set(xlim=(0, 24), ylim=(0, 10.2))
    ax.axis("off")

    # image path: noisy latent -> patches -> blocks -> final layer -> prediction
    _box(ax, 0.2, 7.0, 2.6, 1.5, "noisy latent x_t", COLORS["input"])
    _box(ax, 3.3, 7.0, 2.4, 1.5, "patchify\n+ positions", COLORS["input"])
    _arrow(ax, (2.8, 7.75), (3.3, 7.75))
    centres = [_block(ax, 6.2, layout, "block 1", final=False)]
    ax.text(10.45, 7.5, "...", ha="center", va="center", fontsize=18)
    centres.append(_block(ax, 11.2, layout, f"block {layout.depth}", final=False))
    centres.append(_block(ax, 15.5, layout, "final layer", final=True))
    _arrow(ax, (5.7, 7.75), (6.2, 7.75))
    _arrow(ax, (9.8, 7.75), (10.0, 7.75))
    _arrow(ax, (10.9, 7.75), (11.2, 7.75))
    _arrow(ax, (14.8, 7.75), (15.5, 7.75))
    _box(ax, 19.7, 7.0, 4.0, 1.5, "prediction\n(noise / velocity)", COLORS["input"])
    _arrow(ax, (19.1, 7.75), (19.7, 7.75))

    # condition path: y, t -> embedders -> c = t + y -> P(c)
    _box(ax, 0.2, 2.9, 2.6, 1.2, "class label y", COLORS["input"])
    _box(ax, 0.2, 0.4, 2.6, 1.2, "timestep t", COLORS["input"])
    classes = f"({layout.num_classes} + 1 null) x {layout.d}" if layout.num_classes else "rows x d"
    _box(
        ax,
        3.3,
        2.75,
        3.7,
        1.5,
        f"y_embedder\nembedding table\n{classes}",
        COLORS["embedder"],
        size=8,
    )
    _box(
        ax, 3.3, 0.25, 3.7, 1.5,
        f"t_embedder\nsinusoid(256) -> Linear(256, {layout.d})\n-> SiLU -> Linear({layout.d}, {layout.d})",
        COLORS["embedder"], size=7.5,
    )  # fmt: skip
    _arrow(ax, (2.8, 3.5), (3.3, 3.5))
    _arrow(ax, (2.8, 1.0), (3.3, 1.0))
    ax.add_patch(plt.Circle((7.85, 2.25), 0.35, fc="white", ec="#333333"))
    ax.text(7.85, 2.25, "+", ha="center", va="center", fontsize=14)
    _arrow(ax, (7.0, 3.4), (7.65, 2.5))
    _arrow(ax, (7.0, 1.1), (7.65, 2.0))
    _box(
        ax,
        8.7,
        1.45,
        3.6,
        1.6,
        f"c = t_embedder(t)\n+ y_embedder(y)\nc in R^{layout.d}",
        COLORS["c"],
    )
    _arrow(ax, (8.2, 2.25), (8.7, 2.25))
    source = (12.3, 2.25)
    if show_pruning:
        _box(
            ax, 13.0, 1.3, 4.3, 1.9,
            "P(c): pruning operator\nzero |c_i| < tau (tail)\nor |c_i| > tau (head)",
            COLORS["prune"], dashed=True, size=8,
        )  # fmt: skip
        _arrow(ax, source, (13.0, 2.25))
        source = (17.3, 2.25)

    # one c for every modulation: a bus under the blocks, an arrow up into each AdaLN box
    bus_y = 4.3
    ax.plot([source[0], source[0] + 0.5, source[0] + 0.5], [2.25, 2.25, bus_y], color="#b85450")
    ax.plot([centres[0], source[0] + 0.5], [bus_y, bus_y], color="#b85450")
    for x in centres:
        _arrow(ax, (x, bus_y), (x, 5.4), color="#b85450")
    used = "P(c)" if show_pruning else "c"
    ax.text(
        (centres[0] + centres[1]) / 2, bus_y - 0.35,
        f"the same {used} drives all {layout.depth} blocks and the final layer",
        ha="center", va="top", fontsize=8.5, color="#b85450",
    )  # fmt: skip
    fig.suptitle(title or f"Conditioning path (d = {layout.d}, {layout.depth} blocks)", fontsize=12)
    fig.tight_layout()
    return fig
