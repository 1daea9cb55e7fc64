"""``rnnkit <app> <verb>``: a thin dispatcher.  Errors reach the user as one line, exit status 1.

Each application module has ``register(subparsers)`` adding its verbs, each verb's parser
carrying ``run=function(args) -> exit status``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

APPS = ("rnnkit.apps.lm.commands", "rnnkit.apps.forecast.commands", "rnnkit.apps.seq2seq.commands",
        "rnnkit.apps.asr.commands", "rnnkit.interop.commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent networks in NumPy.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="app", required=True)
    for name in APPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # an application still being written
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as exc:
        print(f"rnnkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
