"""The UCR/UEA time-series archive's ``.ts`` format (sktime, aeon and the archive itself).

A file is a header of ``@key value`` lines, then ``@data`` and one case per line::

    # comments start with '#' (or '%')
    @problemName BasicMotions
    @timeStamps false
    @missing false
    @univariate false
    @dimensions 6                      (aeon writes @dimension)
    @equalLength true
    @seriesLength 100
    @classLabel true Standing Running Walking Badminton
    @data
    0.07,0.07,-0.90,...:1.1,0.3,...:...:Standing      channels separated by ':', the label last

Values are comma-separated numbers; ``?`` or ``NaN`` is a missing value, refused unless a
``fill`` ("ffill" or "interpolate") is given.  Series may differ in length from case to case
(``@equalLength false``), never between the channels of one case.  Every problem names the file,
the line and the field.  Time-stamped files (``@timeStamps true``) and regression targets
(``@targetLabel true``) are refused with a line saying so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...data.series import FILL_METHODS, fill_missing

BOOLEAN_KEYS = ("timestamps", "missing", "univariate", "equallength")
KNOWN_KEYS = {"problemname", "timestamps", "missing", "univariate", "dimension", "dimensions",
              "equallength", "serieslength", "classlabel", "targetlabel", "data"}
MISSING_VALUES = {"?", "nan"}


@dataclass
class TsFile:
    """What a ``.ts`` file holds: series (T, channels) float64, labels (or None), header."""

    series: list[np.ndarray]
    labels: list[str] | None
    lines: list[int]                          # the line of each case in the file
    problem: str = ""
    class_labels: list[str] = field(default_factory=list)  # as the header lists them
    filled: int = 0                           # missing values filled


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _header(path: Path, lines: list[str]) -> tuple[dict, int]:
    """-> (header dict, index of the first data line)."""
    head: dict = {}
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line[0] in "#%":
            continue
        where = f"{path}, line {i + 1}"
        if not line.startswith("@"):
            raise ValueError(f"{where}: data before the @data line (the header ends with @data)")
        tokens = line.split()
        key = tokens[0][1:].lower()
        if key not in KNOWN_KEYS:
            raise ValueError(f"{where}: unknown header {tokens[0]!r} (known: @problemName, "
                             "@timeStamps, @missing, @univariate, @dimensions, @equalLength, "
                             "@seriesLength, @classLabel, @data)")
        if key == "data":
            if len(tokens) != 1:
                raise ValueError(f"{where}: @data takes no value, got {line!r}")
            return head, i + 1
        if key in BOOLEAN_KEYS or key == "targetlabel":
            if len(tokens) != 2 or tokens[1].lower() not in ("true", "false"):
                raise ValueError(f"{where}: {tokens[0]} needs one value, true or false; got "
                                 f"{line!r}")
            head[key] = tokens[1].lower() == "true"
        elif key in ("dimension", "dimensions", "serieslength"):
            if len(tokens) != 2 or not tokens[1].isdigit() or int(tokens[1]) < 1:
                raise ValueError(f"{where}: {tokens[0]} needs one whole number >= 1; got {line!r}")
            head["dimensions" if key.startswith("dim") else key] = int(tokens[1])
        elif key == "classlabel":
            if len(tokens) < 2 or tokens[1].lower() not in ("true", "false"):
                raise ValueError(f"{where}: @classLabel needs true (followed by the labels) or "
                                 f"false; got {line!r}")
            head["classlabel"] = tokens[1].lower() == "true"
            if head["classlabel"] and len(tokens) == 2:
                raise ValueError(f"{where}: @classLabel true must list the class labels")
            head["class_labels"] = tokens[2:]
        else:
            head[key] = " ".join(tokens[1:])
    raise ValueError(f"{path}: no @data line (a .ts file is a header ending with @data, then "
                     "one case per line)")


def read_ts(path: str | Path, fill: str | None = None, labelled: bool | None = None) -> TsFile:
    """Read a ``.ts`` file; see the module docstring.

    fill: None refuses missing values; "ffill" or "interpolate" fills them per channel.
    labelled: None takes the header's word; False drops the labels (predict on a labelled file).
    """
    path = Path(path)
    if fill is not None and fill not in FILL_METHODS:
        raise ValueError(f"--fill must be one of {FILL_METHODS}, got {fill!r}")
    lines = _read_lines(path)
    head, first = _header(path, lines)
    if head.get("timestamps"):
        raise ValueError(f"{path}: @timeStamps true is not supported; write the series as long "
                         "CSV with --time-col instead")
    if head.get("targetlabel"):
        raise ValueError(f"{path}: @targetLabel true is a regression problem; rnnkit classify "
                         "needs class labels")
    has_label = head.get("classlabel", False)
    class_labels = head.get("class_labels", [])
    dims = head.get("dimensions")
    if head.get("univariate") is True:
        if dims not in (None, 1):
            raise ValueError(f"{path}: the header says @univariate true but @dimensions {dims}")
        dims = 1
    length = head.get("serieslength") if head.get("equallength") else None
    out = TsFile([], [] if has_label else None, [], head.get("problemname", ""), class_labels)
    for i in range(first, len(lines)):
        line = lines[i].strip()
        if not line or line[0] in "#%":
            continue
        where = f"{path}, line {i + 1}"
        fields = [f.strip() for f in line.split(":")]
        if has_label:
            label, fields = fields[-1], fields[:-1]
            if not label:
                raise ValueError(f"{where}: the class label (the last ':' field) is empty")
            if class_labels and label not in class_labels:
                raise ValueError(f"{where}: class label {label!r} is not among the header's "
                                 f"@classLabel {' '.join(class_labels)}")
            out.labels.append(label)
        if not fields:
            raise ValueError(f"{where}: no series values")
        if dims is None:
            dims = len(fields)
        if len(fields) != dims:
            raise ValueError(f"{where}: {len(fields)} channels (':'-separated fields"
                             f"{' before the label' if has_label else ''}), expected {dims}")
        chans = [_values(f, where, c) for c, f in enumerate(fields)]
        T = len(chans[0])
        for c, ch in enumerate(chans):
            if len(ch) != T:
                raise ValueError(f"{where}: channel {c + 1} has {len(ch)} values but channel 1 "
                                 f"has {T}: the channels of one case must have the same length")
        if length is not None and T != length:
            raise ValueError(f"{where}: {T} values per channel, but the header says "
                             f"@equalLength true and @seriesLength {length}")
        x = np.stack(chans, axis=1)  # (T, channels)
        missing = np.isnan(x)
        if missing.any():
            if fill is None:
                t, c = np.argwhere(missing)[0]
                raise ValueError(f"{where}: missing value at position {t + 1} of channel {c + 1} "
                                 "(pass --fill ffill or --fill interpolate to fill them)")
            if missing.all(axis=0).any():
                c = int(np.argmax(missing.all(axis=0)))
                raise ValueError(f"{where}: channel {c + 1} has no values at all: nothing to "
                                 "fill from")
            x = fill_missing(x, fill)
            out.filled += int(missing.sum())
        out.series.append(x)
        out.lines.append(i + 1)
    if not out.series:
        raise ValueError(f"{path}: no cases after @data")
    if labelled is False:
        out.labels = None
    elif labelled and out.labels is None:
        raise ValueError(f"{path}: the header says @classLabel false: the file has no labels")
    return out


def _values(text: str, where: str, channel: int) -> np.ndarray:
    if not text:
        raise ValueError(f"{where}: channel {channel + 1} is empty")
    parts = text.split(",")
    out = np.empty(len(parts), np.float64)
    for k, p in enumerate(parts):
        s = p.strip()
        if s.lower() in MISSING_VALUES:
            out[k] = math.nan
            continue
        try:
            out[k] = float(s)
        except ValueError:
            if s.startswith("("):
                raise ValueError(f"{where}: channel {channel + 1} holds time-stamped values "
                                 f"{s!r}... but the header does not say @timeStamps true") from None
            raise ValueError(f"{where}: value {k + 1} of channel {channel + 1} is {p!r}, not a "
                             "number") from None
        if not math.isfinite(out[k]):
            raise ValueError(f"{where}: value {k + 1} of channel {channel + 1} is {p!r}; values "
                             "must be finite numbers (? or NaN marks a missing one)")
    return out


def format_ts(series: list[np.ndarray], labels: list[str] | None, problem: str,
              comments: tuple[str, ...] = (), decimals: int = 4) -> str:
    """The text of a ``.ts`` file holding ``series`` (each (T, channels)) and ``labels``."""
    dims = {s.shape[1] for s in series}
    if len(dims) != 1:
        raise ValueError(f"every series needs the same number of channels, got {sorted(dims)}")
    lengths = {len(s) for s in series}
    classes = sorted(set(labels), key=label_key) if labels is not None else []
    head = [f"# {c}" for c in comments] + [
        f"@problemName {problem}", "@timeStamps false", "@missing false",
        f"@univariate {'true' if dims == {1} else 'false'}", f"@dimensions {dims.pop()}",
        f"@equalLength {'true' if len(lengths) == 1 else 'false'}"]
    if len(lengths) == 1:
        head.append(f"@seriesLength {lengths.pop()}")
    head.append("@classLabel " + ("true " + " ".join(classes) if labels is not None else "false"))
    head.append("@data")
    body = []
    for k, s in enumerate(series):
        chans = [",".join(f"{v:.{decimals}f}" for v in s[:, c]) for c in range(s.shape[1])]
        body.append(":".join(chans + ([labels[k]] if labels is not None else [])))
    return "\n".join(head + body) + "\n"


def label_key(label: str):
    """Sort labels as numbers where they all are ('2' before '10'), else as text."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
