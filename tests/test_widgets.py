"""The threshold explorer: one precomputed state per tau, linked client-side, right s_tail text."""

from __future__ import annotations

import struct

import ipywidgets
import numpy as np
import pytest
import torch

from semantic_bottleneck.book.widgets import (
    MAX_STATES,
    PANEL_DPI,
    PANEL_SIZE,
    tail_panels_png,
    tail_text,
    threshold_explorer,
    threshold_explorer_by_model,
)

# |c| = 3, 0.5, 0.05, 2, 0, 1: below 0.1 are {0.05, 0}; below 1 also 0.5; below 2.5 all but 3.
C = np.array([-3.0, 0.5, -0.05, 2.0, 0.0, 1.0])
TAUS = [0.1, 1.0, 2.5]
EXPECTED = [
    "s_tail(tau = 0.1) = 0.333: 2 of 6 dimensions have |c_i| &lt; tau",
    "s_tail(tau = 1) = 0.500: 3 of 6 dimensions have |c_i| &lt; tau",
    "s_tail(tau = 2.5) = 0.833: 5 of 6 dimensions have |c_i| &lt; tau",
]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def links(source: ipywidgets.Widget, target: ipywidgets.Widget) -> list[tuple[str, str]]:
    """(source trait, target trait) of every jslink from `source` to `target`."""
    found = []
    for state in ipywidgets.Widget.get_manager_state(drop_defaults=False)["state"].values():
        s = state["state"]
        if state["model_name"] == "LinkModel":
            (src, src_trait), (dst, dst_trait) = s["source"], s["target"]
            if src == f"IPY_MODEL_{source.model_id}" and dst == f"IPY_MODEL_{target.model_id}":
                found.append((src_trait, dst_trait))
    return found


def test_threshold_explorer_has_one_state_per_tau_with_the_right_text():
    box = threshold_explorer(C, TAUS)
    slider, stack = box.children
    assert isinstance(slider, ipywidgets.SelectionSlider) and isinstance(stack, ipywidgets.Stack)
    assert len(slider.options) == len(stack.children) == len(TAUS)
    assert slider.options == ("0.1", "1", "2.5")  # the readout is tau
    for panel, text in zip(stack.children, EXPECTED, strict=True):
        html, image = panel.children
        assert html.value == f"<code>{text}</code>"
        assert png_size(image.value) == (PANEL_SIZE[0] * PANEL_DPI, PANEL_SIZE[1] * PANEL_DPI)
    assert len({panel.children[1].value for panel in stack.children}) == len(TAUS)  # panels differ


def test_threshold_explorer_links_slider_to_panels_in_the_browser():
    box = threshold_explorer(C, TAUS)
    slider, stack = box.children
    assert links(slider, stack) == [("index", "selected_index")]
    assert slider.index == stack.selected_index == 0


def test_tail_text_counts_strictly_below_tau_for_torch_and_numpy():
    # |c_i| == tau counts on neither side (Eq. (2) uses a strict inequality).
    assert tail_text(C, 0.5) == "s_tail(tau = 0.5) = 0.333: 2 of 6 dimensions have |c_i| < tau"
    assert tail_text(torch.tensor(C, dtype=torch.float32), 2.5) == EXPECTED[2].replace("&lt;", "<")


def test_close_taus_keep_distinct_labels():
    slider = threshold_explorer(C, [1.000001, 1.000002]).children[0]
    assert len(set(slider.options)) == 2


def test_dims_shown_limits_the_plot_not_the_ratio():
    full, first = tail_panels_png(C, TAUS), tail_panels_png(C, TAUS, dims_shown=3)
    assert len(first) == len(TAUS) and first != full
    assert threshold_explorer(C, TAUS, dims_shown=3).children[1].children[0].children[0].value == (
        f"<code>{EXPECTED[0]}</code>"
    )


@pytest.mark.parametrize(
    ("c", "taus", "kwargs", "message"),
    [
        (np.ones((2, 3)), TAUS, {}, "c: expected one conditional vector of shape \\(d,\\)"),
        ([1.0, np.nan], TAUS, {}, "c: expected finite values"),
        (C, [1.0, 0.5], {}, "taus: expected strictly increasing"),
        (C, [-0.1, 0.5], {}, "taus: expected finite thresholds >= 0"),
        (C, [], {}, "taus: expected a 1-d grid of 1 to"),
        (C, np.linspace(0, 1, MAX_STATES + 1), {}, f"1 to {MAX_STATES} thresholds"),
        (C, TAUS, {"dims_shown": 7}, "dims_shown: expected an integer in \\[1, d = 6\\]"),
        (C, TAUS, {"dims_shown": 0}, "dims_shown"),
    ],
)
def test_threshold_explorer_rejects_bad_input(c, taus, kwargs, message):
    with pytest.raises(ValueError, match=message):
        threshold_explorer(c, taus, **kwargs)


def test_threshold_explorer_by_model_has_a_linked_dropdown():
    models = {"DiT": C, "SiT": np.linspace(-1, 1, 8)}
    box = threshold_explorer_by_model(models, TAUS)
    dropdown, stack = box.children
    assert dropdown.options == ("DiT", "SiT") and len(stack.children) == 2
    assert links(dropdown, stack) == [("index", "selected_index")]
    assert [len(e.children[1].children) for e in stack.children] == [3, 3]
    sit_text = stack.children[1].children[1].children[0].children[0].value
    assert "of 8 dimensions" in sit_text
    with pytest.raises(ValueError, match="models: expected a non-empty mapping"):
        threshold_explorer_by_model({}, TAUS)


def test_pruning_explorer_has_one_state_per_model_and_tau_linked_to_its_controls():
    import torch

    from semantic_bottleneck.book.widgets import pruned_panels_png, pruning_explorer

    torch.manual_seed(0)
    c = torch.randn(6, 32)
    view = pruning_explorer({"a": c, "b": 3 * c}, [0.1, 1.0, 10.0])
    dropdown, slider = view.children[0].children
    outer = view.children[1]
    assert list(dropdown.options) == ["a", "b"] and len(slider.options) == 3
    assert [len(inner.children) for inner in outer.children] == [3, 3]
    _, texts = pruned_panels_png(c, [0.1, 10.0])
    # tau = 10 prunes every coordinate of a standard normal c (|c_i| < 10 always)
    assert "s_tail = 1.000" in texts[1] and "pruned c is zero" in texts[1]
    assert texts[0].startswith("tau = 0.1: s_tail = ")
    with pytest.raises(ValueError, match="expected \\(n >= 2, d\\)"):
        pruned_panels_png(c[0], [0.1])
