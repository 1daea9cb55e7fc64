"""``rnnkit export onnx --model DIR --out FILE [--opset N]``: a trained model as an ONNX file."""
from __future__ import annotations

import argparse
import sys

from ..interop.onnx import DEFAULT_OPSET, MIN_OPSET
from ..data.files import check_file_output
from .load import load


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export a trained model for other runtimes")
    formats = export.add_subparsers(dest="format", required=True, metavar="{onnx}")
    p = formats.add_parser(
        "onnx", help="write a trained model as an ONNX file (onnxruntime and others run it)",
        description="Write a run folder's model as one ONNX graph with a dynamic batch N. "
                    "A language model (rnnkit lm train) takes ids (N, T) int64, h0 (layers, N, "
                    "hidden) [and c0 for an LSTM] and returns logits (N, T, vocab), h_n [and "
                    "c_n]. A forecaster (rnnkit forecast train) takes float64 window inputs in "
                    "original units: context (N, C) (the last C values of each series), scale "
                    "(N,) [, calendar (N, C+H, 2c)] [, covariates (N, C, k)] "
                    "(Forecaster.onnx_inputs makes them) and returns mean, sd, lower_80, "
                    "upper_80, lower_95, upper_95 (N, H), the ensemble's forecast. A classifier "
                    "(rnnkit classify train) takes x and lengths and returns probabilities.")
    p.add_argument("--model", required=True, help="run folder (rnnkit <app> train --out)")
    p.add_argument("--out", required=True, help="the .onnx file to write (replaced atomically)")
    p.add_argument("--opset", type=int, default=None,
                   help=f"ONNX operator set, at least {MIN_OPSET} (default: {DEFAULT_OPSET})")
    p.add_argument("--latest", action="store_true",
                   help="export the last parameters, not the best (a forecaster's run folder "
                        "has one set)")
    p.set_defaults(run=cmd_export_onnx)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from ..interop.onnx import export

    out = check_file_output(args.out, "--out")
    model = load(args.model, "latest" if args.latest else "best")
    try:
        export(model, out, args.opset)
    except ImportError as exc:
        raise ValueError(f"{exc}") from None
    print(f"rnnkit export onnx: wrote {out} ({type(model).__name__}, opset "
          f"{args.opset or DEFAULT_OPSET}, {out.stat().st_size:,} bytes)", file=sys.stderr)
    return 0
