"""Warm kernels (`book.kernels`): a page runs in a kernel forked from a warm server exactly as in
a fresh one, with the launcher's environment, directory and figures; a launcher without a server
starts an ordinary kernel; a killed launcher takes its kernel along; the server goes with the
block."""

from __future__ import annotations

import os
import signal
import time

import nbformat
import papermill
import pytest
from jupyter_client import KernelManager

from semantic_bottleneck.book import kernels

pytestmark = pytest.mark.book

PROBE = "SEMANTIC_BOTTLENECK_TEST_PROBE"
CELLS = [
    "import os, sys\n"
    f"print(os.environ.get({PROBE!r}), os.getcwd(), "
    "'semantic_bottleneck.sections.pruning' in sys.modules)",
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2, 3])",
    "1 / 0",
]


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def _run(tmp_path, name: str) -> list[list[dict]]:
    """The outputs of each cell of the probe notebook, run in tmp_path."""
    out = tmp_path / f"{name}.ipynb"
    with pytest.raises(papermill.PapermillExecutionError, match="ZeroDivisionError"):
        papermill.execute_notebook(
            str(_notebook(tmp_path / "probe.ipynb")), str(out), kernel_name="python3",
            cwd=str(tmp_path), progress_bar=False,
        )  # fmt: skip
    cells = nbformat.read(out, as_version=4).cells  # with papermill's error banners
    return [cell.outputs for cell in cells if cell.cell_type == "code"]


@pytest.fixture(scope="module")
def warm():
    with kernels.warm_kernels():
        yield


def _check(outputs, tmp_path, preloaded: bool) -> None:
    text = "".join(o.get("text", "") for o in outputs[0])
    assert text.split() == ["probe", str(tmp_path), str(preloaded)]
    assert any("image/png" in o.get("data", {}) for o in outputs[1])  # the inline backend drew
    assert [o.get("ename") for o in outputs[2]] == ["ZeroDivisionError"]


def test_a_forked_kernel_runs_a_page_as_a_fresh_one(warm, tmp_path, monkeypatch):
    monkeypatch.setenv(PROBE, "probe")  # set after the server started: the launcher's own
    _check(_run(tmp_path, "warm"), tmp_path, preloaded=True)


def test_without_its_server_the_launcher_starts_an_ordinary_kernel(warm, tmp_path, monkeypatch):
    monkeypatch.setenv(PROBE, "probe")
    monkeypatch.setenv(kernels.SERVER_ENV, str(tmp_path / "no-server.sock"))
    _check(_run(tmp_path, "fallback"), tmp_path, preloaded=False)


def _gone(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_killed_launcher_takes_its_kernel_along(warm):
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        seen = []
        kc.execute_interactive(
            "import os; print(os.getpid(), os.getppid())",
            output_hook=lambda m: seen.append(m["content"].get("text", "")),
            timeout=60,
        )
        kc.stop_channels()
        kernel, parent = map(int, "".join(seen).split())
        launcher = km.provisioner.process.pid
        assert kernel != launcher and parent != launcher  # forked by the server, not launched
        os.kill(launcher, signal.SIGKILL)
        assert _gone(kernel), "the kernel outlived its launcher"
    finally:
        km.cleanup_resources()


def test_the_server_and_its_kernels_end_with_the_block(tmp_path):
    before = os.environ.get(kernels.SERVER_ENV)  # another block's server, or none
    with kernels.warm_kernels():
        km = KernelManager(kernel_name="python3")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)  # forked and running
        kc.stop_channels()
        launcher = km.provisioner.process
    # its server killed it on the way out, and the launcher died of the same signal
    assert launcher.wait(timeout=20) == -signal.SIGKILL
    km.cleanup_resources()
    assert os.environ.get(kernels.SERVER_ENV) == before


def test_environment_sets_and_unsets_for_the_block_then_restores(monkeypatch):
    monkeypatch.setenv("SB_TEST_KEPT", "old")
    monkeypatch.delenv("SB_TEST_NEW", raising=False)
    with kernels.environment(SB_TEST_KEPT=None, SB_TEST_NEW="new"):
        assert "SB_TEST_KEPT" not in os.environ and os.environ["SB_TEST_NEW"] == "new"
    assert os.environ["SB_TEST_KEPT"] == "old" and "SB_TEST_NEW" not in os.environ
