"""Artifact cache: results keyed by their parameters and by the code that produces them.

An artifact is a folder `<root>/<kind>/<key>/` holding `params.json` (what made it) and whatever
files the producer writes (safetensors, JSONL, ...). The folder appears atomically: it is built
under a temporary name and renamed, so an interrupted run leaves nothing that looks complete.

The key hashes the parameters together with the code of the artifact's kind (`code_hash`): the
producing modules named in `PRODUCERS` and every module of the package they import, followed
statically (imports inside functions included). A change to that code gives new keys, so a
cached result never outlives the code that made it, while an edit elsewhere (a plotting module,
a page, the ledger) keeps every key: a paper-profile sweep row that took a GPU half an hour is
not thrown away by a change to how a figure is drawn. Docstrings, comments and formatting are
not part of the hash, because they do not change what the code computes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from functools import cache
from pathlib import Path

from semantic_bottleneck.generation.ranks import barrier, rank_and_world

ENV_VAR = "SEMANTIC_BOTTLENECK_CACHE"
PACKAGE = "semantic_bottleneck"
PACKAGE_DIR = Path(__file__).resolve().parents[1]

# artifact kind -> the modules whose functions produce it (their imports are followed)
PRODUCERS: dict[str, tuple[str, ...]] = {
    "testbed-model": ("semantic_bottleneck.training.trainer",),
    "digits-classifier": ("semantic_bottleneck.evaluation.classifier",),
    "pruning-sweep": ("semantic_bottleneck.sweeps.testbed",),
    "continuous-sweep": ("semantic_bottleneck.sweeps.continuous",),
    "paper-samples": ("semantic_bottleneck.generation.rows",),
    "paper-scores": ("semantic_bottleneck.evaluation.scores",),
    "paper-paired": ("semantic_bottleneck.evaluation.scores",),
    "system-c": ("semantic_bottleneck.core.appendix",),
    "xmdpt-samples": ("semantic_bottleneck.sweeps.xmdpt",),
    "xmdpt-scores": ("semantic_bottleneck.sweeps.xmdpt",),
    "xmdpt-reference": ("semantic_bottleneck.sweeps.xmdpt",),
}


def cache_root() -> Path:
    """`$SEMANTIC_BOTTLENECK_CACHE/artifacts`, else `.cache/artifacts` under the project root."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]) / "artifacts"
    return PACKAGE_DIR.parents[1] / ".cache" / "artifacts"


def _module_file(name: str, package_dir: Path) -> Path | None:
    """The source file of a package module name, or None for a name outside the package."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    for file in (base.with_suffix(".py"), base / "__init__.py"):
        if file.is_file():
            return file
    return None


def _module_name(file: Path, package_dir: Path) -> str:
    parts = file.relative_to(package_dir).with_suffix("").parts
    return ".".join((PACKAGE, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement of `tree` may load (absolute, unresolved)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return names


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def producer_files(kind: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The package files whose code produces artifacts of `kind`: the import closure of its
    producing modules, with the packages (`__init__.py`) that importing them runs."""
    if kind not in PRODUCERS:
        raise ValueError(f"unknown artifact kind {kind!r}; expected one of {sorted(PRODUCERS)}")
    todo, seen = list(PRODUCERS[kind]), {}
    while todo:
        name = todo.pop()
        file = _module_file(name, package_dir)
        if file is None or file in seen.values():
            continue
        seen[name] = file
        module = _module_name(file, package_dir)
        todo += _parents(module)
        todo += _imports_of(file.read_text(), module, file.name == "__init__.py")
    return sorted(set(seen.values()))


# Both are pure functions of a file's text, kept by text: the hashes of several kinds (and of
# copies of the package) share their files, so each distinct text is parsed once.
@cache
def _imports_of(text: str, module: str, is_package: bool) -> tuple[str, ...]:
    return tuple(sorted(_imported_names(ast.parse(text), module, is_package)))


@cache
def _code_dump(text: str) -> str:
    return ast.dump(_without_docstrings(ast.parse(text)))


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def code_hash(kind: str, package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of the code that produces `kind` (see the module docstring): 16 hex digits."""
    digest = hashlib.sha256()
    for file in producer_files(kind, package_dir):
        digest.update(f"{file.relative_to(package_dir).as_posix()}\n".encode())
        digest.update(_code_dump(file.read_text()).encode())
    return digest.hexdigest()[:16]


def _plain(params) -> dict:
    return asdict(params) if is_dataclass(params) else dict(params)


def params_key(kind: str, params, package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of the parameters (a dict or dataclass) and of the kind's code: 16 hex digits."""
    code = code_hash(kind, package_dir)
    blob = json.dumps({"params": _plain(params), "code": code}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lookup(kind: str, params, root: Path | None = None) -> Path | None:
    """The artifact folder for (kind, params) when it is complete, else None (nothing is made)."""
    folder = (Path(root) if root is not None else cache_root()) / kind / params_key(kind, params)
    return folder if (folder / "params.json").exists() else None


def _publish(tmp: Path, final: Path, kind: str, params) -> None:
    """Mark a filled folder complete (params.json) and move it into place in one rename."""
    (tmp / "params.json").write_text(
        json.dumps({"kind": kind, "code": code_hash(kind), "params": _plain(params)}, indent=1)
    )
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / "params.json").exists():
            raise
        shutil.rmtree(tmp)  # a concurrent producer published first: keep theirs


def cached(
    kind: str, params, produce: Callable[[Path], None], root: Path | None = None
) -> tuple[Path, bool]:
    """Return the artifact folder for (kind, params), producing it first when absent.

    Args:
        kind: artifact kind, a key of PRODUCERS, e.g. "testbed-model".
        params: dict or dataclass of every parameter that changes the result (JSON-able).
        produce: called with an empty temporary folder to fill.
        root: cache root (default `cache_root()`).

    Returns:
        (folder, hit) where hit tells whether the artifact was already there.
    """
    root = Path(root) if root is not None else cache_root()
    final = root / kind / params_key(kind, params)
    if (final / "params.json").exists():
        return final, True
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        produce(tmp)
        _publish(tmp, final, kind, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, False


def cached_on_ranks(kind: str, params, produce: Callable[[Path], None], root: Path | None = None):
    """`cached` for a producer that every rank of torch.distributed runs, each writing its part
    into one folder (e.g. a sample file's shards, merged by rank 0). Every rank must call it;
    without torch.distributed it is `cached`.

    Rank 0 empties the staging folder `<kind>/.<key>.staging`, every rank runs `produce` on it,
    and rank 0 publishes it atomically once all have finished. The cache root must be one folder
    seen by every rank (one machine, or a shared file system).

    Returns:
        the artifact folder, on every rank.
    """
    rank, world = rank_and_world()
    if world == 1:
        return cached(kind, params, produce, root)[0]
    final = (Path(root) if root is not None else cache_root()) / kind / params_key(kind, params)
    if (final / "params.json").exists():  # published only between barriers: every rank agrees
        return final
    staging = final.parent / f".{final.name}.staging"
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    produce(staging)
    barrier()
    if rank == 0:
        _publish(staging, final, kind, params)
    barrier()
    return final
