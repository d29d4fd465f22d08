"""The interactive pruning page (sections.interactive): one precomputed state per model and tau,
and no widget without models."""

import numpy as np
import pytest

from semantic_bottleneck.core import metrics
from semantic_bottleneck.core.analysis import Page
from semantic_bottleneck.sections import interactive

NAMES = ["testbed-flow-long", "testbed-ddpm-long"]


def test_slider_taus_are_log_spaced_from_1e_3_to_10():
    taus = interactive.slider_taus(5)
    assert taus.tolist() == pytest.approx([1e-3, 1e-2, 1e-1, 1.0, 10.0])


def test_the_explorer_holds_a_state_per_model_and_tau_with_its_s_tail():
    page = interactive.interactive_page("testbed", NAMES, n_taus=3, class_index=1)
    assert isinstance(page, Page) and not page.figures  # pages.start closes figures only
    controls, stack = page.widgets["explorer"].children
    dropdown, slider = controls.children
    assert list(dropdown.options) == NAMES
    assert list(slider.options) == [f"{t:.4g}" for t in interactive.slider_taus(3)]
    assert len(stack.children) == 2 and all(len(s.children) == 3 for s in stack.children)
    c = page.found[0].c()
    text = stack.children[0].children[2].children[0].value  # first model, tau = 10
    want = float(np.mean(np.asarray(metrics.sparsity_ratio(c, 10.0, side="tail"))))
    assert f"s_tail = {want:.3f}" in text


def test_without_checkpoints_the_paper_page_names_them_and_has_no_widget(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTIC_BOTTLENECK_WEIGHTS", str(tmp_path))
    page = interactive.interactive_page("paper", ["dit-xl-2"])
    assert [m.name for m in page.missing] == ["dit-xl-2"]
    assert page.widgets == {"explorer": None}
