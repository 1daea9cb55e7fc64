"""``rnnkit export onnx --model DIR --out FILE [--opset N]``: a trained model (a language model
or a forecaster) as an ONNX file."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# checkpoint "app" (config.json) -> "module:function(directory, which) -> model or (model, ...)";
# a new application whose model ``rnnkit.interop.onnx.EXPORTERS`` knows adds one entry here
LOADERS = {
    "lm": "rnnkit.apps.lm.train:load_model",
    "forecast": "rnnkit.apps.forecast.models:load_model",
}


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export a trained model for other runtimes")
    formats = export.add_subparsers(dest="format", required=True, metavar="{onnx}")
    from .onnx import DEFAULT_OPSET, MIN_OPSET  # numpy only; onnx itself is imported on use

    p = formats.add_parser(
        "onnx", help="write a trained model as an ONNX file (onnxruntime and others run it)",
        description="Write a checkpoint's model as one ONNX graph with a dynamic batch N. "
                    "A language model (rnnkit lm train) takes ids (N, T) int64, h0 (layers, N, "
                    "hidden) [and c0 for an LSTM] and returns logits (N, T, vocab), h_n [and "
                    "c_n]. A forecaster (rnnkit forecast train) takes float64 window inputs in "
                    "original units: context (N, C) (the last C values of each series), scale "
                    "(N,) [, calendar (N, C+H, 2c)] [, covariates (N, C, k)] "
                    "(Forecaster.onnx_inputs makes them) and returns mean, sd, lower_80, "
                    "upper_80, lower_95, upper_95 (N, H), the ensemble's forecast.")
    p.add_argument("--model", required=True,
                   help="checkpoint directory (rnnkit lm train --out, rnnkit forecast train --out)")
    p.add_argument("--out", required=True, help="the .onnx file to write (replaced atomically)")
    p.add_argument("--opset", type=int, default=None,
                   help=f"ONNX operator set, at least {MIN_OPSET} (default: {DEFAULT_OPSET})")
    p.add_argument("--latest", action="store_true",
                   help="language models: export the last parameters, not the best (a "
                        "forecaster's checkpoint has one set)")
    p.set_defaults(run=cmd_export_onnx)


def load_app_model(directory: str | Path, which: str = "best"):
    """The model of an application's checkpoint directory, by the app its config names."""
    from ..train.checkpoint import load_checkpoint

    config, _, _ = load_checkpoint(directory)
    app = config.get("app")
    if app not in LOADERS:
        raise ValueError(f"{directory}: cannot export a model of app {app!r} yet; exportable: "
                         + ", ".join(sorted(LOADERS)))
    module, _, func = LOADERS[app].partition(":")
    loaded = getattr(importlib.import_module(module), func)(directory, which)
    return loaded[0] if isinstance(loaded, tuple) else loaded


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from .onnx import DEFAULT_OPSET, export

    out = Path(args.out)
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as model.onnx")
    model = load_app_model(args.model, "latest" if args.latest else "best")
    try:
        export(model, out, args.opset)
    except ImportError as exc:
        raise ValueError(f"{exc}") from None
    print(f"rnnkit export onnx: wrote {out} ({type(model).__name__}, opset "
          f"{args.opset or DEFAULT_OPSET}, {out.stat().st_size:,} bytes)", file=sys.stderr)
    return 0
