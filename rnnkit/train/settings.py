"""Settings dataclasses <-> command-line options.

A component declares its settings once, as a dataclass whose fields carry a default and a
``help`` in their metadata; ``add_options`` turns the fields into argparse options (``--hidden``
for ``hidden``, ``--seq-len`` for ``seq_len``) with the field's type, so argparse rejects
unknown flags and wrong types; ``from_options`` builds the dataclass back from the parsed
namespace, and ``from_dict`` from a checkpoint's JSON, rejecting unknown keys.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def field(default: Any, help: str, choices: tuple | None = None, flag: str | None = None) -> Any:
    """A dataclass field with a default, the help of its option and optional choices."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one option per field of dataclass ``cls`` (default None: unset keeps the dataclass default)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        kind = hints[f.name]
        default = f.default
        helptext = f"{f.metadata['help']} (default: {default})"
        if kind is bool:
            parser.add_argument(_flag(f), dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=helptext)
            continue
        parser.add_argument(_flag(f), dest=f.name, type=_base_type(kind), default=None,
                            choices=f.metadata.get("choices"), help=helptext,
                            metavar=None if f.metadata.get("choices") else f.name.upper())


def _base_type(kind: Any) -> type:
    """``int`` for ``int``, ``float`` for ``float | None``: the type an option string converts to."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def from_options(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from parsed options; options left unset keep the dataclass defaults."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)
              if getattr(ns, f.name, None) is not None}
    values.update(overrides)
    return cls(**values)


def from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Build ``cls`` from a JSON dict, refusing unknown keys (a checkpoint from another version)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {unknown}")
    return cls(**d)
