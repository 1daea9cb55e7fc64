"""Settings dataclasses <-> command-line options, and the settings every training run shares.

A component declares its settings once, as a dataclass whose fields carry a default and a
``help`` in their metadata; ``add_options`` turns the fields into argparse options (``--hidden``
for ``hidden``, ``--seq-len`` for ``seq_len``) with the field's type, so argparse rejects
unknown flags and wrong types; ``from_options`` builds the dataclass back from the parsed
namespace, and ``from_dict`` from a checkpoint's JSON, refusing unknown and missing keys.

`TrainSettings` holds the flags every application's ``train`` shares, with one help text and
one validation (`TrainSettings.check`).  An application subclasses it with its own defaults
(``class LMSettings(with_defaults(TrainSettings, hidden=256, ...))``) and adds its own fields:
the help text stays the one written here.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def field(default: Any, help: str, choices: tuple | None = None, flag: str | None = None) -> Any:
    """A dataclass field with a default, the help of its option and optional choices."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


def flag_name(name: str) -> str:
    """The command-line spelling of a settings field: ``seq_len`` -> ``--seq-len``."""
    return "--" + name.replace("_", "-")


@dataclasses.dataclass
class TrainSettings:
    """What every application's ``train`` shares; the defaults here are overridden per app."""

    cell: str = field("lstm", "recurrent cell", choices=("lstm", "gru", "rnn"))
    hidden: int = field(128, "hidden units per layer (and direction)")
    layers: int = field(1, "recurrent layers")
    dropout: float = field(0.0, "dropout probability between layers and before the output, in [0, 1)")
    batch: int = field(32, "sequences (or windows) per optimizer step")
    lr: float = field(3e-3, "peak learning rate (Adam)")
    min_lr: float = field(3e-4, "learning rate at the end of the cosine decay")
    warmup: int = field(100, "linear warm-up steps")
    steps: int = field(2000, "total optimizer steps (with --max-time alone: fitted to the budget)")
    eval_every: int = field(250, "validate, keep the best parameters and checkpoint every N steps")
    clip: float = field(5.0, "clip gradients to this global norm")
    val_fraction: float = field(0.05, "fraction of the data held out for validation")
    seed: int = field(0, "random seed: same seed, same data order, same model")
    dtype: str = field("float32", "float32 or float64", choices=("float32", "float64"))

    # settings a resumed run may change; every other one must match the checkpoint
    RESUMABLE: typing.ClassVar[tuple[str, ...]] = ("steps", "eval_every")

    def check(self) -> None:
        """Raise ValueError naming the flag of the first setting out of its range."""
        at_least(self, "hidden", "layers", "batch", "steps", "eval_every")
        at_least(self, "warmup", low=0)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("lr", "clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{flag_name(name)} must be > 0, got {getattr(self, name)}")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr):
            raise ValueError(f"--min-lr must be >= 0, got {self.min_lr}")


def at_least(settings: Any, *names: str, low: int = 1) -> None:
    """Each named setting is at least ``low`` (None: worked out later, allowed); else a
    ValueError naming the flag."""
    for name in names:
        value = getattr(settings, name)
        if value is not None and value < low:
            raise ValueError(f"{flag_name(name)} must be >= {low}, got {value}")


def with_defaults(base: type, shown: dict[str, str] | None = None, **defaults: Any) -> type:
    """``base`` with an application's own defaults for some of its fields (same help, flag and
    validation): ``class LMSettings(with_defaults(TrainSettings, hidden=256, ...))``.

    A default of None makes the field optional (worked out from the data); ``shown`` gives how
    such a default reads in --help.
    """
    hints = typing.get_type_hints(base)
    fields = []
    for name, value in defaults.items():
        f = base.__dataclass_fields__[name]  # KeyError: not a field of base
        meta = dict(f.metadata)
        if shown and name in shown:
            meta["shown"] = shown[name]
        kind = hints[name] if value is not None else typing.Optional[hints[name]]
        fields.append((name, kind, dataclasses.field(default=value, metadata=meta)))
    return dataclasses.make_dataclass(f"{base.__name__}Defaults", fields, bases=(base,))


def check_max_time(value: float | None) -> None:
    """--max-time is a number of seconds > 0 (not NaN, not infinite)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"--max-time must be a number of seconds > 0, got {value}")


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or flag_name(f.name)


def add_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one option per field of dataclass ``cls`` (default None: unset keeps the dataclass default)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        kind = hints[f.name]
        helptext = f"{f.metadata['help']} (default: {f.metadata.get('shown', f.default)})"
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


def explicit_options(cls: type, ns: argparse.Namespace) -> set[str]:
    """Names of the fields of ``cls`` given on the command line."""
    return {f.name for f in dataclasses.fields(cls) if getattr(ns, f.name, None) is not None}


def from_options(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from parsed options; options left unset keep the dataclass defaults."""
    values = {name: getattr(ns, name) for name in explicit_options(cls, ns)}
    values.update(overrides)
    return cls(**values)


# settings that older rnnkit versions saved and this one no longer has (max_time: a flag of the
# run since the shared training engine, not a setting of the model)
RETIRED = ("max_time",)


def from_dict(cls: type[T], d: Any, where: str = "", older: bool = False) -> T:
    """Build ``cls`` from a checkpoint's JSON dict, refusing unknown and missing keys.

    A checkpoint written by another version (or edited by hand) is reported naming the keys,
    never turned into a TypeError or silently filled with today's defaults.  ``older``: the
    checkpoint's format says an older rnnkit wrote it (read for inference, not to resume): its
    RETIRED keys are dropped and settings added since take today's defaults.
    """
    what = f"{where}: " if where else ""
    if not isinstance(d, dict):
        raise ValueError(f"{what}{cls.__name__} settings must be a JSON object, got "
                         f"{type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    if older:
        d = {k: v for k, v in d.items() if k not in RETIRED or k in names}
        defaults = cls()
        d.update({name: getattr(defaults, name) for name in names if name not in d})
    unknown, missing = sorted(set(d) - names), sorted(names - set(d))
    if unknown or missing:
        raise ValueError(f"{what}{cls.__name__} settings do not match this version of rnnkit: "
                         + "; ".join(part for part in (
                             f"unknown {unknown}" if unknown else "",
                             f"missing {missing}" if missing else "") if part))
    return cls(**d)


def merge_resumed(saved: T, given: T, explicit: set[str]) -> T:
    """The settings of a resumed run: the checkpoint's, with the explicitly given resumable ones.

    A setting given explicitly that differs from the checkpoint's and may not change on resume
    (a model size, the data split, the seed...) is refused, naming the flag.
    """
    resumable = set(type(saved).RESUMABLE)
    for name in sorted(explicit - resumable):
        if getattr(given, name) != getattr(saved, name):
            raise ValueError(f"--resume: {flag_name(name)} {getattr(given, name)} differs from the "
                             f"checkpoint's {getattr(saved, name)} (only "
                             + ", ".join(flag_name(n) for n in sorted(resumable))
                             + " may change on resume)")
    return dataclasses.replace(saved, **{n: getattr(given, n) for n in explicit & resumable})
