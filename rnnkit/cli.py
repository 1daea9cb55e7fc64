"""``rnnkit <app> <verb>``: a thin dispatcher.  Errors reach the user as one line, exit status 1."""
from __future__ import annotations

import argparse
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    from .apps.lm import commands as lm

    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent networks in NumPy.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="app", required=True, metavar="{lm}")
    lm.register(sub)
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
