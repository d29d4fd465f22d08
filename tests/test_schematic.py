"""Fig. 2 schematic: the layout read from layer shapes, and the drawing's labels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from semantic_bottleneck.core import schematic
from semantic_bottleneck.zoo import build_model, registry


def test_layout_of_the_official_xl_manifests():
    dit = schematic.layout_from_shapes(registry.get_checkpoint("dit-xl-2").shapes)
    assert dit == schematic.Layout(
        d=1152, depth=28, block_chunks=6, final_chunks=2, num_classes=1000
    )
    mdt = schematic.layout_from_shapes(registry.get_checkpoint("mdtv2-xl-2").shapes)
    assert mdt.depth == 29  # 12 + 12 encoder blocks, 4 decoder blocks and the side block


def test_layout_of_a_built_model():
    model = build_model(
        "dit", input_size=8, patch_size=2, in_channels=1, hidden_size=24, depth=3,
        num_heads=2, num_classes=7,
    )  # fmt: skip
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert schematic.layout_from_shapes(shapes) == schematic.Layout(24, 3, 6, 2, 7)


def test_layout_rejects_shapes_without_modulation_layers():
    with pytest.raises(ValueError, match="0 block"):
        schematic.layout_from_shapes({"final_layer.adaLN_modulation.1.weight": (32, 16)})
    with pytest.raises(ValueError, match="chunks"):
        schematic.layout_from_shapes({"blocks.0.adaLN_modulation.1.weight": (30, 16)})
    with pytest.raises(ValueError, match="disagree"):
        schematic.layout_from_shapes(
            {
                "blocks.0.adaLN_modulation.1.weight": (96, 16),
                "blocks.1.adaLN_modulation.1.weight": (192, 32),
                "final_layer.adaLN_modulation.1.weight": (32, 16),
            }
        )


def _texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts) + fig.get_suptitle()


def test_drawing_labels_every_part_of_the_path():
    fig = schematic.draw_schematic(schematic.Layout(1152, 28, 6, 2, 1000))
    text = _texts(fig)
    for label in [
        "class label y", "timestep t", "y_embedder", "t_embedder", "c = t_embedder(t)",
        "P(c): pruning operator", "shift, scale, gate (attention)", "shift, scale, gate (MLP)",
        "Linear(1152, 6912)", "Linear(1152, 2304)", "block 28", "final layer", "(1000 + 1 null)",
    ]:  # fmt: skip
        assert label in text, label
    plt.close(fig)


def test_drawing_without_pruning_and_bad_layout():
    fig = schematic.draw_schematic(schematic.Layout(64, 4), show_pruning=False)
    text = _texts(fig)
    assert "P(c)" not in text and "the same c drives all 4 blocks" in text
    plt.close(fig)
    with pytest.raises(ValueError, match="positive d"):
        schematic.draw_schematic(schematic.Layout(0, 4))
