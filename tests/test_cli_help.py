"""Every command's --help prints (argparse formats help text with %, so a bare % in any help
string crashes that page) and names every option the parser accepts."""
import argparse

import pytest

from rnnkit.cli import build_parser


def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


PARSERS = list(_parsers(build_parser()))


def test_the_tree_reaches_every_app():
    apps = {path[0] for path, _ in PARSERS if path}
    assert {"lm", "forecast", "translate", "asr", "classify", "export", "compare"} <= apps
    assert ("compare", "classify") in {path for path, _ in PARSERS}


@pytest.mark.parametrize("path,parser", PARSERS, ids=[" ".join(p) or "rnnkit" for p, _ in PARSERS])
def test_help_prints_every_option(path, parser):
    text = parser.format_help()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text, f"{flag} missing from rnnkit {' '.join(path)} --help"
