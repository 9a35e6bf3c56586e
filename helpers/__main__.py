"""Command line of the helpers package: ``python -m helpers SUBCOMMAND ...``.

A thin dispatcher: each subcommand lives in its module, which provides a function
adding its arguments to an :mod:`argparse` parser and a function running it
(returning the exit status).  To add a subcommand, add one line to
:data:`COMMANDS`.

Examples
--------
``python -m helpers preprocess SOURCE_ROOT OUT --spacing 1 1 1 --shape 128 256 256 --workers 2``
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, add-arguments function, run function, one-line help)
COMMANDS = {
    "preprocess": (
        "helpers.cohort",
        "add_preprocess_arguments",
        "preprocess_main",
        "preprocess every case of a folder into a Zarr store + QC table (Dask, resumable)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-parser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for name, (module, add_args, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        getattr(importlib.import_module(module), add_args)(p)
        p.set_defaults(_run=(module, run))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit status."""
    args = build_parser().parse_args(argv)
    module, run = args._run
    return int(getattr(importlib.import_module(module), run)(args) or 0)


if __name__ == "__main__":  # guarded: Dask's worker processes re-import this module
    sys.exit(main())
