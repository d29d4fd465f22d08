"""Run the section notebooks with papermill and build the Jupyter Book.

`notebooks/<name>.ipynb` runs, with the parameters `book.params.resolve_parameters` gives it, into
`book/generated/<name>.ipynb`, the page `_toc.yml` lists; the book renders these executed pages
as they are (`execute_notebooks: "off"`) and builds with `-W`, so a missing or broken page fails
the build instead of leaving a hole. `semantic-bottleneck book run | build | all` drives it, and
`book pdf` prints the built HTML to one PDF. Pages run two at a time, in kernels forked from one
warm process (`book.kernels`); a notebook whose page reads a sweep another page computes names
that page in its metadata (`semantic_bottleneck.run_after`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from semantic_bottleneck.book.browser import (
    chromium_path,
    dump_dom,
    page_report,
    page_reports,
    print_pdfs,
    screenshot,
    toc_pages,
)
from semantic_bottleneck.book.kernels import FORKS, environment, warm_kernels
from semantic_bottleneck.book.params import (
    GENERATED,
    NOTEBOOKS,
    Layers,
    check_layer,
    find_root,
    load_overrides,
    load_profile,
    load_yaml,
    notebook_names,
    notebook_parameters,
    resolve_parameters,
    resolve_root,
    unused_overrides,
)

__all__ = [
    "BookBuildError",
    "NotebookError",
    "build_html",
    "build_pdf",
    "chromium_path",
    "dump_dom",
    "find_root",
    "notebook_names",
    "page_report",
    "page_reports",
    "print_pdfs",
    "resolve_parameters",
    "run_all",
    "run_notebook",
    "screenshot",
    "toc_pages",
]


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in IPython tracebacks and Sphinx logs
PROBLEM = re.compile(r"WARNING:|ERROR:|CRITICAL:|Sphinx error|\w+Error: ")  # lines worth showing


class NotebookError(RuntimeError):
    """A notebook failed to execute; the message names it and the failing cell's error."""


class BookBuildError(RuntimeError):
    """`jupyter-book build` failed; the message ends with the tail of its log."""


# ----------------------------------------------------------------------------- execution


@contextlib.contextmanager
def _python3_kernel() -> Iterator[None]:
    """Make the `python3` kernel run this interpreter (the venv), whatever kernelspecs exist.

    jupyter_client starts `sys.executable` when a spec's argv[0] is a bare `python`; a spec that
    names another interpreter (say in ~/.local/share/jupyter) is shadowed by a temporary one.
    A MPLBACKEND in the environment (e.g. Agg on a headless machine) is hidden from the kernel:
    it would replace the inline backend and the pages would lose their figures.
    """
    with environment(MPLBACKEND=None):
        yield from _kernel_spec()


def _kernel_spec() -> Iterator[None]:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        exe = KernelSpecManager().get_kernel_spec("python3").argv[0]
    except NoSuchKernel:
        exe = ""
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if exe in bare or os.path.abspath(exe) == os.path.abspath(sys.executable):
        yield
        return
    from ipykernel.kernelspec import write_kernel_spec

    with tempfile.TemporaryDirectory(prefix="semantic-bottleneck-kernel-") as tmp:
        write_kernel_spec(Path(tmp) / "kernels" / "python3")
        paths = os.pathsep.join(p for p in [tmp, os.environ.get("JUPYTER_PATH")] if p)
        with environment(JUPYTER_PATH=paths):
            yield


def _add_tag(cell: Any, tag: str) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def run_key(root: Path, name: str, profile: str, parameters: Mapping[str, Any]) -> str:
    """Hash of everything a page's content depends on: the notebook, its resolved parameters,
    the package's code and data (not the artifact cache: a cached result is the same result).
    """
    import hashlib
    import json

    h = hashlib.sha256()
    h.update((root / NOTEBOOKS / f"{name}.ipynb").read_bytes())
    h.update(json.dumps({"profile": profile, "params": parameters}, sort_keys=True).encode())
    package = Path(__file__).resolve().parents[1]
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.json")]):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    # every data file: paper values, profiles, the shipped models and the recorded runs
    for path in sorted(p for p in (root / "data").rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def built_book(root: str | Path | None = None, profile: str = "testbed") -> Path | None:
    """The HTML folder of the book `make book` built at root, if it is current: every toc page
    executed with the run key the sources give now (default parameters of `profile`), and the
    HTML of each page written after it. None otherwise (nothing built, or something changed)."""
    root = resolve_root(root)
    html = root / "_build" / "html"
    for name in notebook_names(root):
        page, built = root / GENERATED / f"{name}.ipynb", html / GENERATED / f"{name}.html"
        key = run_key(root, name, profile, resolve_parameters(name, profile, root))
        if not built.is_file() or not _up_to_date(page, key):
            return None
        if built.stat().st_mtime < page.stat().st_mtime:
            return None
    return html


def _up_to_date(out: Path, key: str) -> bool:
    """Whether `out` is a page executed with this run key."""
    import json

    try:
        return json.loads(out.read_text())["metadata"]["semantic_bottleneck"]["run_key"] == key
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _finish(path: Path, source: str, output: str, key: str) -> None:
    """Tag the parameter cells for the book and record portable paths in the metadata."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            _add_tag(cell, "hide-input")  # the run's parameters, behind a toggle
        elif "parameters" in tags:
            _add_tag(cell, "remove-cell")  # defaults that the injected cell overrides
    nb.metadata.setdefault("papermill", {}).update(input_path=source, output_path=output)
    nb.metadata["semantic_bottleneck"] = {"run_key": key}
    nbformat.write(nb, path)


def _failure(name: str, err: BaseException, failed: Path) -> NotebookError:
    """NotebookError naming the notebook, the failing cell and the end of its traceback."""
    if all(hasattr(err, a) for a in ("ename", "evalue", "exec_count", "traceback")):
        frames = "\n".join(ANSI.sub("", line) for line in err.traceback[1:-1]).splitlines()
        tail = "\n".join(frames[-25:])
        text = f"cell In[{err.exec_count}] raised {err.ename}: {err.evalue}\n{tail}"
    else:
        text = f"{type(err).__name__}: {err}"
    kept = f"\n(the executed notebook is kept at {failed})" if failed.exists() else ""
    return NotebookError(f"notebook {name!r} failed: {text}{kept}")


def _page_run(name: str, profile: str, root: Path, out_dir, overrides, params):
    """(page path, run key, parameters) of `run_notebook` with these arguments."""
    parameters = resolve_parameters(name, profile, root, overrides, params)
    out_dir = Path(out_dir) if out_dir is not None else root / GENERATED
    return out_dir / f"{name}.ipynb", run_key(root, name, profile, parameters), parameters


def _current(name: str, profile: str, root: Path, out_dir, overrides, params) -> bool:
    """Whether `run_notebook` would keep the page as it is (the same arguments)."""
    out, key, _ = _page_run(name, profile, root, out_dir, overrides, params)
    return _up_to_date(out, key)


def run_notebook(
    name: str,
    profile: str = "testbed",
    root: str | Path | None = None,
    out_dir: str | Path | None = None,
    overrides: Layers = None,
    timeout: int = 1800,
    params: Mapping[str, Any] | None = None,
    force: bool = False,
) -> Path:
    """Execute `notebooks/<name>.ipynb` with papermill into `<out_dir>/<name>.ipynb`.

    A page already executed from the same notebook, parameters, package code and data (its
    `run_key`) is kept as it is unless `force`.

    The page appears atomically (written under a temporary name, then renamed). On failure no page
    is left (a stale one is removed, so the book cannot show an older result), the executed copy is
    kept at `<out_dir>/<name>.failed.ipynb`, and NotebookError names the notebook and the error.

    Args:
        name: notebook name.
        profile: profile name.
        root: project root; the notebook runs with it as working directory.
        out_dir: where pages go (default `<root>/book/generated`).
        overrides: extra parameter layers (see `resolve_parameters`).
        timeout: seconds allowed per cell.
        params: single parameters applied last.
        force: execute even when the page is up to date.

    Returns:
        Path of the executed notebook.
    """
    import papermill

    root = resolve_root(root)
    out, key, parameters = _page_run(name, profile, root, out_dir, overrides, params)
    out_dir = out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = out_dir / f"{name}.failed.ipynb"
    if not force and _up_to_date(out, key):
        return out
    failed.unlink(missing_ok=True)
    tmp = out_dir / f".{name}.{os.getpid()}.tmp.ipynb"  # hidden: the build never picks it up
    try:
        with _python3_kernel():
            papermill.execute_notebook(
                str(root / NOTEBOOKS / f"{name}.ipynb"),
                str(tmp),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(root),
                progress_bar=False,
                execution_timeout=timeout,
            )
        _finish(tmp, f"{NOTEBOOKS}/{name}.ipynb", _relative(out, root), key)
        os.replace(tmp, out)
    except Exception as err:
        out.unlink(missing_ok=True)
        if tmp.exists() and tmp.stat().st_size:
            os.replace(tmp, failed)
        raise _failure(name, err, failed) from err
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path.resolve())


def run_after(path: str | Path) -> list[str]:
    """The pages a notebook runs after: `metadata.semantic_bottleneck.run_after` of its source,
    the pages that compute the cached results it reads (none when absent)."""
    import json

    meta = json.loads(Path(path).read_text()).get("metadata", {}).get("semantic_bottleneck", {})
    after = meta.get("run_after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise ValueError(f"{path}: run_after: expected a list of page names, got {after!r}")
    return after


@contextlib.contextmanager
def _threads_per_kernel(workers: int) -> Iterator[None]:
    """Give each of `workers` concurrent kernels its share of the cores (OMP_NUM_THREADS, which
    torch reads at start-up), unless the environment already sets it."""
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    with environment(OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // workers))):
        yield


def run_all(
    profile: str = "testbed",
    root: str | Path | None = None,
    only: Sequence[str] | None = None,
    overrides: Layers = None,
    out_dir: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    force: bool = False,
    workers: int | None = None,
    fresh_kernels: bool = False,
) -> dict[str, float]:
    """Run every notebook of the toc (or `only` these), with a progress bar; keep going on failure.

    Pages run `workers` at a time in toc order, each kernel with its share of the CPU threads
    (two kernels with all threads each would fight over the same cores). A page that reads
    results another page computes says so in its notebook's metadata (`run_after`), and starts
    only once those pages are done, so that two kernels never compute the same sweep at once.
    When three or more pages are to run, their kernels are forked from one warm process that
    has imported the package already (`book.kernels`; on Linux), unless `fresh_kernels`.

    Args:
        profile: profile name.
        root: project root.
        only: names to run (each must be in the toc); all when None.
        overrides: extra parameter layers.
        out_dir: where pages go (default `<root>/book/generated`).
        params: single parameters applied last, to every notebook declaring them.
        force: re-execute pages that are up to date.
        workers: pages run at once (default: one per CPU core, at most 2).
        fresh_kernels: start every kernel as a new interpreter.

    Returns:
        Seconds per notebook, in order of completion. Raises NotebookError after the last notebook if any
        failed, naming each failure.
    """
    from tqdm.auto import tqdm

    root = resolve_root(root)
    names = notebook_names(root)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"only: expected notebooks listed in _toc.yml {names}, got {unknown}")
        names = [n for n in names if n in only]
    missing = [n for n in names if not (root / NOTEBOOKS / f"{n}.ipynb").is_file()]
    if missing:
        raise ValueError(
            f"_toc.yml: expected {NOTEBOOKS}/<name>.ipynb for every generated page, missing {missing}"
        )
    declared = {n: notebook_parameters(root / NOTEBOOKS / f"{n}.ipynb") for n in names}
    unknown = sorted(set(params or {}) - set().union(*declared.values()))
    if unknown:
        raise ValueError(f"params: expected parameters declared by {names}, got unknown {unknown}")
    layers = [load_profile(profile, root)]
    extra = [overrides] if isinstance(overrides, Mapping) else list(overrides or [])
    layers += [check_layer(layer, f"override layer {i + 1}") for i, layer in enumerate(extra)]
    for line in unused_overrides(notebook_names(root), layers, root):
        warnings.warn(f"parameter entry not used by any notebook: {line}", stacklevel=2)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers: expected at least 1, got {workers}")
    timings: dict[str, float] = {}
    errors: list[str] = []
    bar = tqdm(total=len(names), unit="notebook", desc=f"papermill ({profile})")

    own = {n: {k: v for k, v in (params or {}).items() if k in declared[n]} for n in names}

    def run(name: str) -> None:
        start, status = time.perf_counter(), ""
        try:
            run_notebook(name, profile, root, out_dir, overrides, params=own[name], force=force)
        except NotebookError as err:
            errors.append(str(err))
            status = " FAILED"
        timings[name] = time.perf_counter() - start
        bar.write(f"{name}: {timings[name]:.1f} s{status}")
        bar.update()

    after = {
        n: [a for a in run_after(root / NOTEBOOKS / f"{n}.ipynb") if a in names] for n in names
    }
    pending, running, done = list(names), {}, set()
    stale = [
        n for n in names if force or not _current(n, profile, root, out_dir, overrides, own[n])
    ]
    warm_ok = len(stale) >= 3 and not fresh_kernels and FORKS
    warm = warm_kernels() if warm_ok else contextlib.nullcontext()
    with (
        environment(MPLBACKEND=None),  # once for all pages: threads would restore it mid-run
        _threads_per_kernel(workers if len(names) > 1 else 1),
        warm,
        ThreadPoolExecutor(workers) as pool,
    ):
        while pending or running:
            ready = [n for n in pending if set(after[n]) <= done][: workers - len(running)]
            if not ready and not running:
                raise ValueError(f"run_after: the pages {pending} wait on each other")
            for name in ready:
                pending.remove(name)
                running[pool.submit(run, name)] = name
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done.add(running.pop(future))
                future.result()
    bar.close()
    if errors:
        raise NotebookError(
            f"{len(errors)} of {len(names)} notebooks failed:\n\n" + "\n\n".join(errors)
        )
    return timings


# ----------------------------------------------------------------------------- build


def build_html(
    root: str | Path | None = None, out: str | Path | None = None, full: bool = True
) -> Path:
    """`jupyter-book build <root> -W --keep-going`: any warning (say a missing page) fails.

    A failure raises BookBuildError listing the build's warnings and errors, then its log tail.

    Args:
        root: project root (the book's `_config.yml` and `_toc.yml`).
        out: `--path-output` (the build goes to `<out>/_build/html`); default the root.
        full: rebuild every page (`--all`), so warnings of unchanged pages are reported again.

    Returns:
        The folder of the HTML (`.../_build/html`).
    """
    root = resolve_root(root)
    cmd = [
        sys.executable,
        "-c",
        "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
    ]
    cmd += ["build", str(root), "-W", "--keep-going"] + (["--all"] if full else [])
    if out is not None:
        cmd += ["--path-output", str(Path(out).resolve())]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        lines = ANSI.sub("", done.stdout + done.stderr).splitlines()
        problems = [line for line in lines if PROBLEM.search(line)][:30]
        raise BookBuildError(
            f"jupyter-book build failed (exit {done.returncode}); warnings and errors:\n"
            + "\n".join(problems)
            + "\n--- log tail:\n"
            + "\n".join(lines[-15:])
        )
    return (Path(out).resolve() if out is not None else root) / "_build" / "html"


def build_pdf(
    root: str | Path | None = None,
    html: str | Path | None = None,
    out: str | Path | None = None,
    workers: int = 2,
) -> Path:
    """Print every page of the built HTML book with headless chromium and merge them into one PDF.

    Pages go in `_toc.yml` order, each starting on a new sheet, with a bookmark named after its
    title. Chromium prints each page as the browser shows it for print, after MathJax and the
    images are done; nothing is fetched (the book's scripts are vendored).

    Args:
        root: project root (its `_toc.yml` gives the pages and their order).
        html: the built HTML (default `<root>/_build/html`, what `build_html` makes).
        out: the PDF (default `<root>/_build/pdf/book.pdf`); written atomically.
        workers: browsers printing at once.

    Returns:
        The PDF's path.
    """
    from pypdf import PdfWriter

    root = resolve_root(root)
    html = Path(html).resolve() if html is not None else root / "_build" / "html"
    out = Path(out).resolve() if out is not None else root / "_build" / "pdf" / "book.pdf"
    pages = toc_pages(root)
    missing = [p for p in pages if not (html / f"{p}.html").is_file()]
    if missing:
        raise ValueError(
            f"html: expected a built page for every toc entry under {html} "
            f"(run `semantic-bottleneck book build` first), missing {missing}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="book-pdf-") as tmp:
        parts = [Path(tmp) / f"{i:03d}.pdf" for i in range(len(pages))]
        print_pdfs([html / f"{p}.html" for p in pages], parts, workers)
        writer = PdfWriter()
        for page, part in zip(pages, parts, strict=True):
            start = len(writer.pages)
            writer.append(str(part))
            writer.add_outline_item(
                title=_page_title(html / f"{page}.html") or page, page_number=start
            )
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        with open(partial, "wb") as f:
            writer.write(f)
        os.replace(partial, out)
    return out


def _page_title(page: Path) -> str:
    """A built page's own title, without the book's title that Sphinx appends."""
    import html as html_lib

    found = re.search(r"<title>(.*?)</title>", page.read_text(encoding="utf-8"), re.DOTALL)
    title = html_lib.unescape(found.group(1)).strip() if found else ""
    return title.split(" \u2014 ")[0].strip()


# ----------------------------------------------------------------------------- command line


def _parse_params(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """`-p KEY VALUE` pairs, each VALUE read as YAML (so `5`, `1e-3`, `[1, 2]` are numbers/lists)."""
    return {key: load_yaml(value) for key, value in pairs or []}


def _reported(func):
    """Wrap a command: a known failure prints its message (not a traceback) and exits 1."""

    def command(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (NotebookError, BookBuildError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return command


def _run(args: argparse.Namespace) -> int:
    overrides = [load_overrides(f) for f in args.params_file or []]
    start = time.perf_counter()
    timings = run_all(
        args.profile,
        args.root,
        args.only,
        overrides,
        params=_parse_params(args.p),
        force=args.force,
        workers=args.workers,
        fresh_kernels=args.fresh_kernels,
    )
    wall = time.perf_counter() - start
    print(f"ran {len(timings)} notebooks in {wall:.1f} s", file=sys.stderr)
    return 0


def _build(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    html = build_html(args.root, args.out)
    print(f"built {html} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _all(args: argparse.Namespace) -> int:
    return _run(args) or _build(args)


def _pdf(args: argparse.Namespace) -> int:
    if chromium_path() is None:
        print(
            "error: chromium: expected a headless chromium on PATH (apt-get install chromium)",
            file=sys.stderr,
        )
        return 1
    start = time.perf_counter()
    pdf = build_pdf(args.root, args.html, args.out)
    print(f"printed {pdf} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `book run | build | all | pdf` on the top-level command line."""
    book = subparsers.add_parser("book", help="run the notebooks (papermill) and build the book")
    sub = book.add_subparsers(dest="book_command", required=True)
    for command, func, text in [
        ("run", _run, "execute the notebooks of _toc.yml into book/generated/"),
        ("build", _build, "jupyter-book build -W (fails on any warning, e.g. a missing page)"),
        ("all", _all, "run, then build"),
        ("pdf", _pdf, "print the built HTML book to one PDF (headless chromium)"),
    ]:
        parser = sub.add_parser(command, help=text, description=text)
        parser.add_argument(
            "--root", type=Path, default=None, help="project root (default: found from _toc.yml)"
        )
        if command in ("run", "all"):
            parser.add_argument(
                "--profile",
                default="testbed",
                help="data/profiles/<profile>.yaml (default testbed)",
            )
            parser.add_argument(
                "--only", nargs="+", metavar="NAME", help="run only these notebooks"
            )
            parser.add_argument(
                "--params-file",
                action="append",
                metavar="F",
                help="YAML overrides in the profile format (repeatable)",
            )
            parser.add_argument(
                "--force", action="store_true", help="re-execute pages that are up to date"
            )
            parser.add_argument(
                "--workers",
                type=int,
                default=None,
                help="pages run at once (default: one per core, at most 2)",
            )
            parser.add_argument(
                "--fresh-kernels",
                action="store_true",
                help="start each page's kernel as a new interpreter (not forked from a warm one)",
            )
            parser.add_argument(
                "-p",
                nargs=2,
                action="append",
                metavar=("KEY", "VALUE"),
                help="set a parameter (VALUE is YAML)",
            )
        if command in ("build", "all"):
            parser.add_argument(
                "--out", type=Path, default=None, help="--path-output of jupyter-book"
            )
        if command == "pdf":
            parser.add_argument(
                "--html", type=Path, default=None, help="the built HTML (default _build/html)"
            )
            parser.add_argument(
                "--out", type=Path, default=None, help="the PDF (default _build/pdf/book.pdf)"
            )
        parser.set_defaults(func=_reported(func))
