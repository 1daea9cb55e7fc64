"""``rnnkit <app> <verb>``: a thin dispatcher.  Errors reach the user as one line, exit status 1
(2 for a command line argparse cannot parse), 130 when interrupted; under MPI once for the whole
job, never leaving the other ranks waiting (`rnnkit.train.mpi.report`).

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
from .train.mpi import crashed, report

APPS = ("rnnkit.apps.lm.commands", "rnnkit.apps.forecast.commands", "rnnkit.apps.seq2seq.commands",
        "rnnkit.apps.asr.commands", "rnnkit.apps.classify.commands", "rnnkit.tools.export",
        "rnnkit.tools.compare", "rnnkit.tools.diagnose")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``rnnkit lm train: error: ... (see --help)``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rnnkit", description="Recurrent networks in NumPy.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    parser.add_argument("--threads", type=int, default=None,
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


def threads(option: int | None) -> int:
    """--threads, else $RNNKIT_THREADS, else 1; a whole number >= 1."""
    if option is not None:
        value, where = option, "--threads"
    else:
        raw, where = os.environ.get("RNNKIT_THREADS", "1"), "RNNKIT_THREADS"
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"RNNKIT_THREADS must be a whole number >= 1, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{where} must be >= 1, got {value}")
    return value


def blas_threads(n: int):
    """Limit the BLAS thread pools to n threads (needs threadpoolctl, the `cli` extra)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with blas_threads(threads(args.threads)):
            return args.run(args)
    except (ValueError, OSError) as exc:
        return report(f"rnnkit: error: {exc}", exc, 1)
    except KeyboardInterrupt as exc:
        return report("rnnkit: interrupted", exc, 130)
    except Exception as exc:
        crashed(exc)
        raise


if __name__ == "__main__":
    sys.exit(main())
