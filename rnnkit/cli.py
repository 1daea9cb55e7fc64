"""``rnnkit <app> <verb>``: a thin dispatcher.  Errors reach the user as one line, exit status 1.

Each application module has ``register(subparsers)`` adding its verbs, each verb's parser
carrying ``run=function(args) -> exit status``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from . import __version__

APPS = ("rnnkit.apps.lm.commands", "rnnkit.apps.forecast.commands", "rnnkit.apps.seq2seq.commands",
        "rnnkit.apps.asr.commands", "rnnkit.interop.commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent networks in NumPy.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("RNNKIT_THREADS", 1)),
                        help="BLAS threads (default 1, or $RNNKIT_THREADS): the per-step matrices "
                             "are small, and threads that share cores with other work spin and "
                             "slow everything down; raise it on an idle machine for large models")
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


def blas_threads(n: int):
    """Limit the BLAS thread pools to n threads (needs threadpoolctl, the `cli` extra)."""
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with blas_threads(args.threads):
            return args.run(args)
    except (ValueError, OSError) as exc:
        print(f"rnnkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
