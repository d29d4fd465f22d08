"""Command line: `semantic-bottleneck COMMAND ...`.

Each command lives in the module that owns its logic; this file only wires argparse subcommands
(kebab-case flags map 1:1 to dataclass fields of that module).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> module with `add_parser(subparsers)` that sets `func` on its parser
COMMANDS = {
    "fetch": "semantic_bottleneck.zoo.fetch",
    "inputs": "semantic_bottleneck.zoo.fetch",
    "train": "semantic_bottleneck.training.cli",
    "book": "semantic_bottleneck.book.runner",
    "generate": "semantic_bottleneck.generation.cli",
    "sweep": "semantic_bottleneck.sweeps.run",
    "xmdpt-sweep": "semantic_bottleneck.sweeps.xmdpt",
    "conditions": "semantic_bottleneck.core.appendix",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semantic-bottleneck", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    seen = set()
    for module_name in COMMANDS.values():
        if module_name in seen:
            continue
        seen.add(module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("semantic_bottleneck"):
                continue  # command not built yet in this checkout
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
