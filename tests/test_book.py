"""The book runner: toc discovery, parameter precedence, papermill execution, the -W build, CLI."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import nbformat
import pytest
from conftest import build_demo_project, make_notebook, write_toc

from semantic_bottleneck import cli
from semantic_bottleneck.book import runner
from semantic_bottleneck.book.params import NOT_LITERAL, notebook_parameters

MIME_PREFIX = "application/papermill.record/"


def glued(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """name -> {mime type: data} of every `glue(..., display=False)` output of a notebook."""
    out = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                out[name] = {k.removeprefix(MIME_PREFIX): v for k, v in output["data"].items()}
    return out


def tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The demo project with its notebook run once (n = 7 via -p) for the tests that read it."""
    root = build_demo_project(tmp_path_factory.mktemp("executed") / "project")
    page = runner.run_notebook("demo", root=root, params={"n": 7})
    return root, page


# ----------------------------------------------------------------------------- toc and parameters


def test_notebook_names_lists_generated_pages_in_toc_order(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - caption: A\n    chapters:\n      - file: book/generated/02-b\n      - file: book/method\n"
        "        sections:\n          - file: book/generated/01-a.ipynb\n"
        "  - caption: B\n    chapters:\n      - file: book/generated/02-b\n"
    )
    assert runner.notebook_names(tmp_path) == ["02-b", "01-a"]
    write_toc(tmp_path, ["sub/x"])
    with pytest.raises(ValueError, match="book/generated/<name>"):
        runner.notebook_names(tmp_path)


def test_find_root_walks_up_to_the_toc(tmp_path):
    write_toc(tmp_path, [])
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert runner.find_root(tmp_path / "a" / "b") == tmp_path.resolve()


def test_every_notebook_is_valid_with_cell_ids():
    # a cell without an id makes nbformat warn, and the warning shows on every page that reads
    # that notebook's parameters (the landing page and the ledger read Table 2's)
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert all(cell.get("id") for cell in nb.cells), path.name


def test_notebook_parameters_reads_literals_and_marks_expressions(tmp_path):
    path = make_notebook(
        tmp_path / "nb.ipynb",
        [
            (
                "code",
                'profile = "testbed"\nn: int = 3  # typed\ntaus = np.logspace(-2, 0, 5)\nmodels = ["a", "b"]',
            )
        ],
    )
    params = notebook_parameters(path)
    assert params == {"profile": "testbed", "n": 3, "taus": NOT_LITERAL, "models": ["a", "b"]}


def test_resolve_parameters_precedence(demo_project):
    root = demo_project()
    make_notebook(
        root / "notebooks" / "demo.ipynb",
        [("code", 'profile = "x"\na = 0\nb = 0\nc = 0\nd = 0\ne = 0\ntaus = list(range(3))')],
    )
    (root / "data" / "profiles" / "testbed.yaml").write_text(
        "profile: testbed\n"
        "defaults: {b: 1, c: 1, d: 1, e: 1, device: cpu}\n"  # device: declared by no demo cell, skipped
        "notebooks: {demo: {c: 2, d: 2, e: 2}, other: {zz: 1}}\n"  # other: not this notebook
    )
    layer = {"defaults": {"d": 3}, "notebooks": {"demo": {"e": 3}}}
    resolved = runner.resolve_parameters("demo", "testbed", root, overrides=layer, params={"e": 4})
    # own a=0 < profile defaults b=1 < profile per-notebook c=2 < override layer d=3 < params e=4
    assert resolved == {"profile": "testbed", "a": 0, "b": 1, "c": 2, "d": 3, "e": 4}
    assert (
        list(resolved)[0] == "profile"
    )  # always injected, first; `taus` (an expression) is left out
    # Override layers apply in order; per-notebook beats defaults inside one layer.
    later = [{"notebooks": {"demo": {"d": 5}}}, {"defaults": {"d": 6}}]
    assert runner.resolve_parameters("demo", "testbed", root, overrides=later)["d"] == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "nope"}, "profile: expected one of \\['testbed'\\]"),
        ({"name": "missing"}, "notebook: expected one of \\['demo'\\]"),
        ({"params": {"sead": 1}}, "unknown \\['sead'\\]"),
        ({"overrides": {"notebooks": {"demo": {"nn": 1}}}}, "notebooks.demo.*unknown \\['nn'\\]"),
        (
            {"overrides": {"defaults": {"profile": "paper"}}},
            "'profile' is set by the profile choice",
        ),
        (
            {"overrides": {"default": {"n": 1}}},
            "expected a mapping with keys profile/defaults/notebooks",
        ),
    ],
)
def test_resolve_parameters_rejects_bad_input(demo_project, kwargs, message):
    root = demo_project()
    args = {"name": "demo", "profile": "testbed"} | kwargs
    with pytest.raises(ValueError, match=message):
        runner.resolve_parameters(args.pop("name"), args.pop("profile"), root, **args)


def test_python3_kernel_shadows_a_kernelspec_for_another_interpreter(tmp_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    foreign = tmp_path / "kernels" / "python3"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(
        '{"argv": ["/opt/other/bin/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],'
        ' "display_name": "other", "language": "python"}'
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == "/opt/other/bin/python3"
    with runner._python3_kernel():
        assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    assert os.environ["JUPYTER_PATH"] == str(tmp_path)  # restored


# ----------------------------------------------------------------------------- execution


def test_run_notebook_writes_glued_outputs_and_tags(executed):
    root, page = executed
    assert page == root / "book" / "generated" / "demo.ipynb"
    nb = nbformat.read(page, as_version=4)
    values = glued(nb)
    assert values["n"]["text/plain"] == "7"  # -p beats the notebook's n = 50
    assert "<table" in values["table"]["text/html"]
    assert "image/png" in values["hist"]
    # The kernel ran this interpreter (the venv's), not whatever `python` a kernelspec names.
    assert values["executable"]["text/plain"].strip("'") == sys.executable
    (injected,) = tagged(nb, "injected-parameters")
    assert "hide-input" in injected.metadata.tags
    assert 'profile = "testbed"' in injected.source and "n = 7" in injected.source
    (defaults,) = tagged(nb, "parameters")
    assert "remove-cell" in defaults.metadata.tags
    assert nb.metadata.papermill["input_path"] == "notebooks/demo.ipynb"
    assert nb.metadata.papermill["output_path"] == "book/generated/demo.ipynb"
    assert sorted(p.name for p in page.parent.iterdir()) == ["demo.ipynb"]  # no temporary left


def test_run_notebook_failure_leaves_no_page_and_names_the_cell(demo_project):
    root = demo_project()
    generated = root / "book" / "generated"
    generated.mkdir(parents=True)
    (generated / "demo.ipynb").write_text("{}")  # a stale page from an earlier run
    with pytest.raises(runner.NotebookError) as info:
        runner.run_notebook("demo", root=root, overrides={"notebooks": {"demo": {"fail": True}}})
    message = str(info.value)
    assert "'demo'" in message and "RuntimeError: demo failure requested" in message
    assert "raise RuntimeError" in message  # the failing cell's source
    assert sorted(p.name for p in generated.iterdir()) == ["demo.failed.ipynb"]
    failed = nbformat.read(generated / "demo.failed.ipynb", as_version=4)
    assert failed.metadata.papermill["exception"] is True


def test_run_all_runs_the_toc_and_rejects_unknown_names(demo_project, monkeypatch):
    root = demo_project(names=("a", "b"))
    calls = []
    monkeypatch.setattr(
        runner, "run_notebook", lambda name, *args, **kw: calls.append((name, kw["params"]))
    )
    timings = runner.run_all("testbed", root, params={"n": 3})
    assert list(timings) == ["a", "b"] and calls == [("a", {"n": 3}), ("b", {"n": 3})]
    with pytest.raises(ValueError, match="workers: expected at least 1"):
        runner.run_all("testbed", root, workers=0)
    assert list(runner.run_all("testbed", root, only=["b"])) == ["b"]
    with pytest.raises(ValueError, match="only: expected notebooks listed in _toc.yml"):
        runner.run_all("testbed", root, only=["c"])
    with pytest.raises(ValueError, match="params: expected parameters declared"):
        runner.run_all("testbed", root, params={"zz": 1})
    with pytest.warns(UserWarning, match="notebooks.c \\(not in _toc.yml\\)"):
        runner.run_all("testbed", root, overrides={"notebooks": {"c": {"n": 1}}})


def set_run_after(root, name: str, after) -> None:
    path = root / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["semantic_bottleneck"] = {"run_after": after}
    nbformat.write(nb, path)


def test_run_all_runs_pages_at_once_and_each_after_the_pages_it_reads(demo_project, monkeypatch):
    import os
    import threading

    root = demo_project(names=("a", "b", "c"))
    set_run_after(root, "c", ["a"])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    both = threading.Barrier(2, timeout=20)  # broken unless a and b run at the same time
    seen = {}

    def fake(name, *args, **kw):
        seen[name] = (os.environ.get("OMP_NUM_THREADS"), set(seen))
        if name != "c":
            both.wait()

    monkeypatch.setattr(runner, "run_notebook", fake)
    timings = runner.run_all("testbed", root, workers=2)
    assert set(timings) == {"a", "b", "c"} and list(timings)[-1] == "c"
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert {v[0] for v in seen.values()} == {share}  # each kernel with its share of the cores
    assert seen["c"][1] == {"a", "b"}  # c started after a (and b, here) had started and ended
    assert "OMP_NUM_THREADS" not in os.environ  # restored
    monkeypatch.setattr(runner, "run_notebook", lambda *args, **kw: None)
    set_run_after(root, "a", ["c"])
    with pytest.raises(ValueError, match="wait on each other"):
        runner.run_all("testbed", root, workers=2)
    set_run_after(root, "a", "c")
    with pytest.raises(ValueError, match="expected a list of page names"):
        runner.run_all("testbed", root, workers=2)


def test_cli_book_run_passes_profile_files_and_yaml_values(demo_project, monkeypatch, tmp_path):
    root = demo_project()
    params_file = tmp_path / "tiny.yaml"
    params_file.write_text("notebooks: {demo: {n: 4}}\n")
    seen = {}

    def fake_run_all(profile, root, only, overrides, params, force, workers, fresh_kernels):
        seen.update(profile=profile, root=root, only=only, overrides=overrides, params=params)
        seen.update(force=force, workers=workers, fresh_kernels=fresh_kernels)
        return {"demo": 0.0}

    monkeypatch.setattr(runner, "run_all", fake_run_all)
    argv = ["book", "run", "--root", str(root), "--only", "demo", "--params-file", str(params_file)]
    argv += ["-p", "seed", "3", "-p", "taus", "[0.1, 1e-2]", "-p", "title", "run A"]
    argv += ["--workers", "3"]
    assert cli.main(argv) == 0
    assert seen["profile"] == "testbed" and seen["only"] == ["demo"] and seen["root"] == root
    assert seen["overrides"] == [{"defaults": {}, "notebooks": {"demo": {"n": 4}}}]
    assert seen["params"] == {"seed": 3, "taus": [0.1, 0.01], "title": "run A"}
    assert seen["force"] is False and seen["workers"] == 3 and seen["fresh_kernels"] is False
    assert cli.main([*argv, "--fresh-kernels"]) == 0 and seen["fresh_kernels"] is True


# ----------------------------------------------------------------------------- build


@pytest.mark.book
def test_build_html_passes_with_warnings_as_errors_and_fails_on_a_missing_page(executed):
    root, _ = executed
    html = runner.build_html(root)
    page = (html / "book" / "generated" / "demo.html").read_text()
    assert "<table" in page and "Histogram of the draws" in page
    assert "cdn.jsdelivr.net" not in page and "cdnjs.cloudflare.com" not in page  # vendored JS
    write_toc(root, ["demo", "never-run"])
    try:
        with pytest.raises(runner.BookBuildError, match="nonexisting document"):
            runner.build_html(root)
    finally:
        write_toc(root, ["demo"])


def test_build_html_reports_the_cause(tmp_path):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/missing\n")
    (tmp_path / "_config.yml").write_text("title: x\n")
    with pytest.raises(runner.BookBuildError, match="unable to load the master document") as info:
        runner.build_html(tmp_path, out=tmp_path / "out")
    assert "--- log tail:" in str(info.value)


def test_up_to_date_page_is_kept_and_a_change_re_executes(demo_project):
    root = demo_project()
    page = runner.run_notebook("demo", root=root)
    stamp = page.stat().st_mtime_ns
    assert runner.run_notebook("demo", root=root) == page and page.stat().st_mtime_ns == stamp
    runner.run_notebook("demo", root=root, force=True)
    assert page.stat().st_mtime_ns != stamp
    stamp = page.stat().st_mtime_ns
    runner.run_notebook("demo", root=root, params={"n": 7})
    assert page.stat().st_mtime_ns != stamp


def test_figures_render_even_with_an_agg_backend_in_the_environment(demo_project, monkeypatch):
    import nbformat

    monkeypatch.setenv("MPLBACKEND", "Agg")
    page = runner.run_notebook("demo", root=demo_project())
    outputs = [o for c in nbformat.read(page, 4).cells for o in c.get("outputs", [])]
    keys = [k for o in outputs for k in o.get("data", {})]
    assert any(k.endswith("image/png") for k in keys), keys  # the glued figure was drawn inline
    assert runner.os.environ["MPLBACKEND"] == "Agg"  # restored for the caller


@pytest.mark.book
def test_built_book_is_reused_only_while_every_page_is_current(demo_project):
    root = demo_project()
    assert runner.built_book(root) is None  # nothing built
    runner.run_notebook("demo", root=root)
    assert runner.built_book(root) is None  # pages but no HTML
    html = runner.build_html(root)
    assert runner.built_book(root) == html
    (root / "data" / "profiles" / "extra.txt").write_text("a data file changed")
    assert runner.built_book(root) is None  # the page's run key moved
    runner.run_notebook("demo", root=root)
    assert runner.built_book(root) is None  # the page is newer than the HTML
    assert runner.build_html(root) == runner.built_book(root) == html
