"""The repository is self-contained: it cites no document that lives outside it.

Every fact the code, tests, notebooks and data rely on (definitions, time conventions, the
official defaults and where they come from, the evaluation protocol) is written where it is used
or on the Method page, `book/method.md`. Pointers to that page name a section by its MyST label,
as `book/method.md#<label>` in docstrings and comments or `{ref}` in book pages; these tests check
that no tracked file cites an outside note and that every label pointed to exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "book" / "method.md"
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Citations of documents kept outside the repository: the specification notes, the reference
# notes beside them, and any path into the shared folder they live in.
OUTSIDE = re.compile(
    r"\b(?:PAPER|DESIGN|STYLE)\.md\b"  # the specification, design and style notes
    r"|\breference/[\w.-]+\.(?:md|txt)\b"  # a reference note, e.g. official_checkpoints
    r"|\.\./shared\b|/work/shared\b"  # a path out of the repository into shared/
    r"|\bshared/(?:reference|manifests|hooks)\b"
    r"|(?i:\breference (?:doc|note)s?\b)"  # "the reference doc, section 9"
)
# a pointer to a section of the Method page, e.g. book/method.md#method-time-conventions
POINTER = re.compile(r"book/method\.md#([A-Za-z0-9_-]+)")
# a MyST cross-reference to a Method-page label, e.g. {ref}`method-time-conventions`
MYST_REF = re.compile(r"\{ref\}`(?:[^`<]*<)?(method-[A-Za-z0-9_-]+)>?`")
# a MyST target, e.g. (method-time-conventions)=
TARGET = re.compile(r"^\((method[A-Za-z0-9_-]*)\)=\s*$", re.MULTILINE)


def tracked_files() -> list[str]:
    """Paths of the repository's tracked files (read-only `git ls-files`), this file excluded."""
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [p for p in out.split("\0") if p and p != THIS]


def text_of(path: str) -> str | None:
    """The file's text, or None for a binary file, a missing one, or a non-UTF-8 one."""
    try:
        data = (ROOT / path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None  # deleted in the working tree, or a submodule
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def files_with_text() -> dict[str, str]:
    """{path: text} of the tracked text files, plus the Method page if not yet tracked."""
    texts = {p: t for p in tracked_files() if (t := text_of(p)) is not None}
    if METHOD.is_file():
        texts.setdefault(METHOD.relative_to(ROOT).as_posix(), METHOD.read_text())
    return texts


def method_labels() -> list[str]:
    """The MyST targets `(label)=` that the Method page defines, in page order."""
    return TARGET.findall(METHOD.read_text())


def toc_files(node) -> list[str]:
    """Every `file:` of a jb-book toc (root first), in order."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("root"), str):
            found.append(node["root"])
        if isinstance(node.get("file"), str):
            found.append(node["file"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key) or []:
                found.extend(toc_files(child))
    return found


def test_no_tracked_file_cites_an_outside_document():
    hits = []
    for path, text in sorted(files_with_text().items()):
        for number, line in enumerate(text.splitlines(), start=1):
            if m := OUTSIDE.search(line):
                hits.append(f"{path}:{number}: cites {m.group(0)!r}: {line.strip()[:120]}")
    assert not hits, f"{len(hits)} citation(s) of documents outside the repository:\n" + "\n".join(
        hits
    )


def test_method_page_exists_with_a_title_and_unique_labels():
    assert METHOD.is_file(), "book/method.md is missing"
    text = METHOD.read_text()
    assert re.search(r"^# Method: definitions, conventions and sources\s*$", text, re.MULTILINE)
    labels = method_labels()
    assert labels, "book/method.md defines no (method-...)= section labels"
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    assert not duplicates, f"labels defined twice in book/method.md: {duplicates}"


def test_method_page_is_in_the_toc_right_after_the_root():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [f.removesuffix(".md") for f in toc_files(toc)]
    assert "book/method" in files, "_toc.yml does not list book/method"
    assert files.index("book/method") == 1, f"book/method must follow the root page: {files[:3]}"


def test_every_pointer_names_a_section_the_method_page_defines():
    if not METHOD.is_file():
        pytest.fail("book/method.md is missing")
    defined = set(method_labels())
    dangling = []
    for path, text in sorted(files_with_text().items()):
        for number, line in enumerate(text.splitlines(), start=1):
            for label in POINTER.findall(line) + MYST_REF.findall(line):
                if label not in defined:
                    dangling.append(f"{path}:{number}: {label}")
    assert not dangling, (
        "pointers to sections book/method.md does not define "
        f"(defined: {sorted(defined)}):\n" + "\n".join(dangling)
    )
