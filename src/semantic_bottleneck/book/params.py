"""Where the book's notebooks are and which parameters each one runs with.

`_toc.yml` is the single source of truth: every page `book/generated/<name>` in it is the executed
copy of `notebooks/<name>.ipynb`. Parameters come in layers, later ones winning:

1. the notebook's own cell tagged `parameters`;
2. the profile `data/profiles/<profile>.yaml` (overrides only): `defaults`, applied to every
   notebook that declares the parameter, then `notebooks: {name: {param: value}}`;
3. extra layers in the same format (`--params-file`; tests use one for tiny sizes);
4. single parameters (`-p KEY VALUE` on the command line, VALUE read as YAML).

`profile` itself is always set to the chosen profile. A per-notebook entry or a single parameter
that the notebook does not declare is an error, so a typo cannot silently run the defaults.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

GENERATED = "book/generated"
NOTEBOOKS = "notebooks"
PROFILES_DIR = "data/profiles"
Layers = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads `1e-3` as a float (YAML 1.1 needs `1.0e-3`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse YAML safely (no object construction); exponent floats like `5e-4` become floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


class _NotLiteral:
    def __repr__(self) -> str:
        return "NOT_LITERAL"


NOT_LITERAL = _NotLiteral()  # a default computed by an expression; the notebook keeps it

# ----------------------------------------------------------------------------- project layout


def find_root(start: str | Path | None = None) -> Path:
    """The project root: the folder holding `_toc.yml`.

    Args:
        start: a folder to search from upwards; by default the source checkout this package was
            imported from, else the current directory and its parents.

    Returns:
        The absolute root path. Raises ValueError when no `_toc.yml` is found.
    """
    checkout = Path(__file__).resolve().parents[3]
    if start is None and (checkout / "_toc.yml").is_file():
        return checkout
    base = Path.cwd() if start is None else Path(start)
    for folder in [base.resolve(), *base.resolve().parents]:
        if (folder / "_toc.yml").is_file():
            return folder
    raise ValueError(f"expected a project root holding _toc.yml at or above {base}, found none")


def resolve_root(root: str | Path | None) -> Path:
    """`root` as an absolute path, or `find_root()` when None."""
    return find_root() if root is None else Path(root).resolve()


def _toc_files(entry: Any) -> Iterator[str]:
    """Every `file:` (and the `root:`) in a jb-book toc, in reading order."""
    if isinstance(entry, Mapping):
        for key in ("root", "file"):
            if isinstance(entry.get(key), str):
                yield entry[key]
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key) or []:
                yield from _toc_files(child)


def notebook_names(root: str | Path | None = None) -> list[str]:
    """Names of the notebooks the book needs: toc pages `book/generated/<name>`, in toc order.

    Args:
        root: project root (default: `find_root()`).

    Returns:
        The `<name>` of each generated page; `notebooks/<name>.ipynb` is its source.
    """
    toc_path = resolve_root(root) / "_toc.yml"
    toc = load_yaml(toc_path.read_text()) or {}
    names: list[str] = []
    for file in _toc_files(toc):
        if not file.startswith(GENERATED + "/"):
            continue
        name = file[len(GENERATED) + 1 :].removesuffix(".ipynb")
        if not name or "/" in name:
            raise ValueError(f"{toc_path}: expected '{GENERATED}/<name>' entries, got {file!r}")
        if name not in names:
            names.append(name)
    return names


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its cell tagged `parameters`.

    Values that are Python literals are returned as values; a parameter computed by an expression
    (e.g. `taus = np.logspace(-3, 1, 20)`) maps to `NOT_LITERAL` and is left to the notebook.

    Args:
        path: the source notebook.

    Returns:
        name -> default value, in declaration order.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: expected exactly one cell tagged 'parameters', got {len(cells)}")
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as err:
        raise ValueError(f"{path}: the parameters cell is not plain Python: {err}") from err
    params: dict[str, Any] = {}
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        value = getattr(stmt, "value", None)
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                try:
                    params[target.id] = ast.literal_eval(value)
                except (ValueError, TypeError, SyntaxError, RecursionError):
                    params[target.id] = NOT_LITERAL
    return params


def load_overrides(path: str | Path) -> dict[str, Any]:
    """Read and validate a parameter file (a profile or `--params-file`).

    Args:
        path: YAML with optional `defaults: {param: value}` and `notebooks: {name: {param: value}}`
            (a profile also names itself in `profile:`).

    Returns:
        {"defaults": dict, "notebooks": dict} (plus "profile" when present).
    """
    data = load_yaml(Path(path).read_text()) or {}
    return check_layer(data, str(path))


def check_layer(layer: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate one parameter layer and return it as {"defaults": ..., "notebooks": ...}.

    Args:
        layer: a mapping in the profile format (see `load_overrides`).
        where: how to name the layer in an error message.

    Returns:
        The normalized layer (plain dicts; "profile" kept when present).
    """
    if not isinstance(layer, Mapping) or set(layer) - {"profile", "defaults", "notebooks"}:
        keys = sorted(layer) if isinstance(layer, Mapping) else type(layer).__name__
        raise ValueError(
            f"{where}: expected a mapping with keys profile/defaults/notebooks, got {keys}"
        )
    defaults = layer.get("defaults") or {}
    notebooks = layer.get("notebooks") or {}
    if not isinstance(defaults, Mapping):
        raise ValueError(
            f"{where}: expected 'defaults' to map parameter -> value, got {defaults!r}"
        )
    if not isinstance(notebooks, Mapping) or not all(
        isinstance(v, Mapping) for v in notebooks.values()
    ):
        raise ValueError(
            f"{where}: expected 'notebooks' to map name -> {{parameter: value}}, got {notebooks!r}"
        )
    for section in [defaults, *notebooks.values()]:
        if "profile" in section:
            raise ValueError(f"{where}: 'profile' is set by the profile choice, not as a parameter")
    out = {"defaults": dict(defaults), "notebooks": {k: dict(v) for k, v in notebooks.items()}}
    if "profile" in layer:
        out["profile"] = layer["profile"]
    return out


def load_profile(profile: str, root: str | Path | None = None) -> dict[str, Any]:
    """`data/profiles/<profile>.yaml`, validated (see `load_overrides`)."""
    folder = resolve_root(root) / PROFILES_DIR
    path = folder / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ValueError(f"profile: expected one of {known} (files in {folder}), got {profile!r}")
    layer = load_overrides(path)
    if layer.get("profile", profile) != profile:
        raise ValueError(f"{path}: expected 'profile: {profile}', got {layer['profile']!r}")
    return layer


def resolve_parameters(
    name: str,
    profile: str = "testbed",
    root: str | Path | None = None,
    overrides: Layers = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters a notebook runs with, merged in precedence order (module docstring).

    Args:
        name: notebook name (`notebooks/<name>.ipynb`).
        profile: profile name (`data/profiles/<profile>.yaml`).
        root: project root.
        overrides: one or more extra layers in the profile format, applied in order after the profile.
        params: single parameters applied last (`-p KEY VALUE`).

    Returns:
        `profile` first, then every literal parameter of the notebook, with its resolved value.
        A `defaults` entry applies only to notebooks declaring that parameter; a per-notebook
        entry or a `params` entry the notebook does not declare is an error.
    """
    root = resolve_root(root)
    source = root / NOTEBOOKS / f"{name}.ipynb"
    if not source.is_file():
        known = sorted(p.stem for p in (root / NOTEBOOKS).glob("*.ipynb"))
        raise ValueError(f"notebook: expected one of {known}, got {name!r} ({source} is missing)")
    declared = notebook_parameters(source)
    if "profile" not in declared:
        raise ValueError(
            f"{source}: expected a 'profile' parameter in the parameters cell, got {list(declared)}"
        )
    layers = [load_profile(profile, root)]
    if isinstance(overrides, Mapping):
        overrides = [overrides]
    layers += [check_layer(layer, "overrides") for layer in overrides or []]
    resolved = dict(declared)
    for i, layer in enumerate(layers):
        where = f"profile {profile!r}" if i == 0 else f"override layer {i}"
        resolved.update({k: v for k, v in layer["defaults"].items() if k in declared})
        resolved.update(
            _declared(layer["notebooks"].get(name, {}), declared, f"{where}, notebooks.{name}")
        )
    resolved.update(_declared(params or {}, declared, "params"))
    resolved["profile"] = profile
    ordered = {"profile": profile} | {k: v for k, v in resolved.items() if k != "profile"}
    return {k: v for k, v in ordered.items() if v is not NOT_LITERAL}


def _declared(values: Mapping[str, Any], declared: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ValueError(
            f"{where}: expected parameters the notebook declares {list(declared)}, got unknown {unknown}"
        )
    return dict(values)


def unused_overrides(
    names: Sequence[str], layers: Sequence[Mapping[str, Any]], root: Path
) -> list[str]:
    """Entries of parameter layers that no notebook of `names` would use (likely typos).

    Args:
        names: the notebooks being run.
        layers: validated layers (`load_profile` / `load_overrides` results).
        root: project root.

    Returns:
        One line per unused entry, e.g. "defaults.sead (no notebook declares it)".
    """
    declared = {n: notebook_parameters(root / NOTEBOOKS / f"{n}.ipynb") for n in names}
    everything = set().union(*declared.values())
    lines = [
        f"defaults.{k} (no notebook declares it)"
        for layer in layers
        for k in layer["defaults"]
        if k not in everything
    ]
    lines += [
        f"notebooks.{n} (not in _toc.yml)"
        for layer in layers
        for n in layer["notebooks"]
        if n not in names
    ]
    return lines
