"""rnnkit.interop and its command import NumPy only; the heavy packages load when used."""
import subprocess
import sys

HEAVY = ("torch", "onnx", "onnxruntime", "h5py", "keras")


def test_importing_interop_loads_no_heavy_package():
    code = ("import sys, rnnkit.interop, rnnkit.tools.export, rnnkit.cli; "
            "rnnkit.cli.build_parser(); "
            f"print(sorted(set({HEAVY!r}) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_export_command_is_registered():
    from rnnkit.cli import build_parser

    args = build_parser().parse_args(["export", "onnx", "--model", "m", "--out", "f.onnx",
                                      "--opset", "18"])
    assert (args.model, args.out, args.opset, args.latest) == ("m", "f.onnx", 18, False)
    assert args.run.__name__ == "cmd_export_onnx"
