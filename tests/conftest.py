"""Shared fixtures and marker handling.

Markers (declared in pyproject.toml) skip themselves when their resource is missing:
`gpu` without a CUDA device, `browser` without a headless chromium.

`demo_project` builds a tiny but complete book project (config, toc, vendored JS, a profile and
one source notebook) in a temporary folder, for the runner, build and browser tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_session():
    """Module fixtures (a sweep sampled once for a file's tests) run before the function-scoped
    `one_thread`: on one thread too, so that two workers on two cores do not oversubscribe them
    (an eigendecomposition on 2 threads per worker then runs several times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def one_thread():
    """Tests run tiny models, fastest (and most reproducibly) on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu = browser = None
    for item in items:
        if "gpu" in item.keywords:
            if gpu is None:
                import torch

                gpu = torch.cuda.is_available()
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "browser" in item.keywords:
            if browser is None:
                browser = shutil.which("chromium") is not None
            if not browser:
                item.add_marker(
                    pytest.mark.skip(reason="needs headless chromium (apt-get install chromium)")
                )


# ----------------------------------------------------------------------------- demo book

DEMO_PARAMETERS = 'profile = "testbed"  # data/profiles/<profile>.yaml\nn = 50  # samples\nseed = 0\nfail = False  # raise in the compute cell\n'

DEMO_CELLS = [
    (
        "markdown",
        "# Demo section\n\nA demo page: the mean of {glue:text}`n` draws is {glue:text}`mean:.3f`; $s_{tail}(\\tau)$ below.",
    ),
    ("code", DEMO_PARAMETERS),
    (
        "code",
        "import sys\n\nimport matplotlib.pyplot as plt\nimport numpy as np\nimport pandas as pd\n"
        "from myst_nb import glue\n\n"
        "x = np.random.default_rng(seed).standard_normal(n)\n"
        "if fail:\n    raise RuntimeError('demo failure requested')\n"
        "glue('n', n, display=False)\n"
        "glue('mean', float(x.mean()), display=False)\n"
        "glue('executable', sys.executable, display=False)\n"
        "glue('table', pd.DataFrame({'quantity': ['mean', 'std'], 'ours': [x.mean(), x.std()]}), display=False)\n"
        "fig, ax = plt.subplots(figsize=(4, 2.5))\nax.hist(x, bins=10)\n"
        "glue('hist', fig, display=False)\nplt.close(fig)  # glued only: no second copy inline",
    ),
    (
        "markdown",
        "```{glue} table\n```\n\n```{glue:figure} hist\n:name: fig-hist\n\nHistogram of the draws.\n```",
    ),
]

WIDGET_CELLS = [
    ("markdown", "## Threshold explorer"),
    (
        "code",
        "from semantic_bottleneck.book.widgets import threshold_explorer\n\n"
        "c = np.random.default_rng(1).standard_normal(64) * np.where(np.arange(64) % 16 == 0, 20.0, 1.0)\n"
        "explorer = threshold_explorer(c, np.logspace(-2, 1, 6))\n"
        "# Only the browser-side link can carry this to the panels (the kernel is gone by then).\n"
        "explorer.children[0].index = 2\n"
        "explorer",
    ),
]


def make_notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """Write a notebook from (kind, source) pairs; the cell starting `profile =` gets the tag."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for kind, source in cells:
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cell = nbformat.v4.new_code_cell(source)
            if source.startswith("profile ="):
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_toc(root: Path, names: list[str]) -> None:
    chapters = "".join(f"  - file: book/generated/{n}\n" for n in names)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{chapters}")


def build_demo_project(
    root: Path, widget: bool = False, names: tuple[str, ...] = ("demo",)
) -> Path:
    """Write a tiny book project at `root` and return it.

    It holds the repository's real `_config.yml` and `book/_vendor/`, a toc listing
    `book/generated/<name>` for each name, `notebooks/<name>.ipynb` (the demo cells, plus the
    threshold explorer when widget=True) and `data/profiles/testbed.yaml` with no overrides.
    """
    (root / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")
    shutil.copytree(ROOT / "book" / "_vendor", root / "book" / "_vendor")
    (root / "book" / "intro.md").write_text("# Demo book\n\nAn introduction.\n")
    write_toc(root, list(names))
    profiles = root / "data" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "testbed.yaml").write_text("profile: testbed\ndefaults: {}\nnotebooks: {}\n")
    cells = DEMO_CELLS + (WIDGET_CELLS if widget else [])
    for name in names:
        make_notebook(root / "notebooks" / f"{name}.ipynb", cells)
    return root


@pytest.fixture
def demo_project(tmp_path: Path):
    """A factory: `demo_project(widget=False, names=("demo",))` builds one in tmp_path/project."""
    return lambda widget=False, names=("demo",): build_demo_project(
        tmp_path / "project", widget, names
    )
