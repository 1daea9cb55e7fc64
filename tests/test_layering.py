"""The house's layers: imports point downwards only, and no module grows past 600 lines.

    nn  <-  data  <-  train  <-  apps  <-  tools  <-  cli
                      interop (beside train: it may use nn and data, never an app)

An application imports nn, data, train and interop, never another application; only tools and
the command line import applications (``rnnkit.load`` imports tools lazily).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rnnkit"
ALLOWED = {  # layer -> the layers it may import
    "nn": {"nn"},
    "data": {"nn", "data"},
    "train": {"nn", "data", "train"},
    "interop": {"nn", "data", "interop"},
    "apps": {"nn", "data", "train", "interop", "apps"},
    "tools": {"nn", "data", "train", "interop", "apps", "tools"},
}


def layer_of(path: Path) -> tuple[str, str | None]:
    parts = path.relative_to(ROOT).parts
    return parts[0], (parts[1] if parts[0] == "apps" and len(parts) > 2 else None)


def imported(path: Path, text: str | None = None) -> list[tuple[str, str | None, int]]:
    """(layer, app, line) of every rnnkit module ``path`` imports, relative imports resolved."""
    tree = ast.parse(path.read_text() if text is None else text)
    package = list(path.relative_to(ROOT.parent).parts[:-1])
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            names = [module + [a.name] for a in node.names] if not node.module else [module]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        for name in names:
            if name[:1] == ["rnnkit"] and len(name) > 1 and name[1] in ALLOWED:
                out.append((name[1], name[2] if name[1] == "apps" and len(name) > 2 else None,
                            node.lineno))
    return out


SOURCES = sorted(p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] in ALLOWED)


def check(path: Path, text: str | None = None) -> None:
    layer, app = layer_of(path)
    for target, target_app, line in imported(path, text):
        assert target in ALLOWED[layer], f"{path.relative_to(ROOT)}:{line} imports rnnkit.{target}"
        if layer == "apps" and target == "apps" and app is not None:
            assert target_app == app, (f"{path.relative_to(ROOT)}:{line}: the {app} app imports "
                                       f"the {target_app} app")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_downwards(path):
    check(path)


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_600_lines(path):
    assert len(path.read_text().splitlines()) <= 600, path


def test_the_checker_sees_upward_and_sideways_imports():
    """The checker itself can fail: interop importing an app, an app importing another."""
    with pytest.raises(AssertionError, match="imports rnnkit.apps"):
        check(ROOT / "interop" / "probe.py", "from ..apps.lm import model\n")
    with pytest.raises(AssertionError, match="the lm app imports the asr app"):
        check(ROOT / "apps" / "lm" / "probe.py", "from rnnkit.apps.asr.model import Alphabet\n")
    check(ROOT / "apps" / "lm" / "probe.py", "from ...train import engine\nfrom . import model\n")
