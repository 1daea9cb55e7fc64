"""Labelled sequences from the files people have, chosen by extension:

    .ts          the UCR/UEA archive's format (`tsfile.read_ts`)
    .csv         long format: one row per time step, ``--id-col`` names the sequence,
                 ``--time-col`` (optional) orders its rows, ``--label-col`` its class; every
                 other column (or those of ``--features``) is a numeric feature
    .jsonl       JSON lines: {"text": ..., "label": ...} (characters or words) or
                 {"audio": "x.wav", "label": ...} (log-mel features, paths relative to the file)

Every problem names the file, the line and the field.  `Dataset` is what each reader gives;
`stratified_split` holds out a validation part that keeps every class in training;
`Scaler` is the per-channel scaling fitted on the training sequences only.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.audio import FeatureConfig, wav_features
from ...data.series import FILL_METHODS, fill_missing, parse_number
from .tsfile import label_key, read_ts

EXTENSIONS = (".ts", ".csv", ".jsonl")


@dataclass
class Dataset:
    """Sequences with their labels and names (what ``predict`` prints for each)."""

    kind: str                       # "series" (.ts, .csv), "text" or "audio"
    items: list                     # (T, F) float64 arrays, or str for text
    labels: list[str] | None
    names: list[str]
    source: str
    filled: int = 0                 # missing values filled (--fill)

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, idx) -> "Dataset":
        return Dataset(self.kind, [self.items[i] for i in idx],
                       None if self.labels is None else [self.labels[i] for i in idx],
                       [self.names[i] for i in idx], self.source, self.filled)


@dataclass
class ReadOptions:
    """How files are read; saved with a trained model so eval and predict read alike."""

    id_col: str | None = None
    time_col: str | None = None
    label_col: str | None = None
    features: str | None = None          # comma-separated feature columns (CSV)
    fill: str | None = None
    audio: dict | None = None            # FeatureConfig as JSON (audio)


def read_data(path: str | Path, opts: ReadOptions, labelled: bool | None = True) -> Dataset:
    """Read ``path`` by its extension.  labelled: True needs labels, False ignores them, None
    takes them where the file has them."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if opts.fill is not None and opts.fill not in FILL_METHODS:
        raise ValueError(f"--fill must be one of {FILL_METHODS}, got {opts.fill!r}")
    ext = path.suffix.lower()
    if ext == ".ts":
        ts = read_ts(path, opts.fill, labelled=labelled)
        return Dataset("series", ts.series, ts.labels, [f"line {n}" for n in ts.lines],
                       str(path), ts.filled)
    if ext == ".csv":
        return read_long_csv(path, opts, labelled)
    if ext in (".jsonl", ".json"):
        return read_jsonl(path, opts, labelled)
    raise ValueError(f"{path}: unknown extension {path.suffix!r}; give a .ts (UCR/UEA), .csv "
                     "(long format) or .jsonl (text or audio) file")


# ------------------------------------------------------------------------------ long CSV
def _time_value(text: str, where: str, col: str):
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(s).timestamp()
    except ValueError:
        raise ValueError(f"{where}: column {col!r} holds {text!r}, neither a number nor an ISO "
                         "date") from None


def read_long_csv(path: Path, opts: ReadOptions, labelled: bool | None = True) -> Dataset:
    """One row per time step; see the module docstring."""
    if not opts.id_col:
        raise ValueError(f"{path}: a CSV file needs --id-col (the column naming each sequence)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows:
        raise ValueError(f"{path}: empty file")
    header = [h.strip() for h in rows[0]]
    col = {h: k for k, h in enumerate(header)}
    if len(col) != len(header):
        raise ValueError(f"{path}, line 1: repeated column names in {header}")
    use_label = labelled is not False and opts.label_col is not None
    if labelled and not opts.label_col:
        raise ValueError(f"{path}: give --label-col (the column holding each sequence's class)")
    named = [(opts.id_col, "--id-col"), (opts.time_col, "--time-col")]
    if use_label:
        named.append((opts.label_col, "--label-col"))
    for name, flag in named:
        if name is not None and name not in col:
            if flag == "--label-col" and labelled is None:
                use_label = False
                continue
            raise ValueError(f"{path}, line 1: no column {name!r} for {flag} (columns: "
                             f"{', '.join(header)})")
    special = {opts.id_col, opts.time_col, opts.label_col}
    if opts.features:
        feats = [c.strip() for c in opts.features.split(",") if c.strip()]
        for c in feats:
            if c not in col:
                raise ValueError(f"{path}, line 1: no feature column {c!r} (columns: "
                                 f"{', '.join(header)})")
    else:
        feats = [h for h in header if h not in special]
    if not feats:
        raise ValueError(f"{path}: no feature columns besides the id, time and label columns")
    fcols = [col[c] for c in feats]
    groups: dict[str, dict] = {}
    for line, row in enumerate(rows[1:], 2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}, line {line}"
        if len(row) != len(header):
            raise ValueError(f"{where}: {len(row)} fields, the header has {len(header)}")
        sid = row[col[opts.id_col]].strip()
        if not sid:
            raise ValueError(f"{where}: empty id in column {opts.id_col!r}")
        g = groups.setdefault(sid, {"rows": [], "times": [], "lines": [], "label": None})
        if use_label:
            label = row[col[opts.label_col]].strip()
            if not label:
                raise ValueError(f"{where}: empty label in column {opts.label_col!r}")
            if g["label"] is None:
                g["label"], g["label_line"] = label, line
            elif g["label"] != label:
                raise ValueError(f"{where}: sequence {sid!r} has label {label!r} here but "
                                 f"{g['label']!r} on line {g['label_line']}: one label per "
                                 "sequence")
        if opts.time_col is not None:
            g["times"].append(_time_value(row[col[opts.time_col]], where, opts.time_col))
        g["rows"].append([_cell(row[k], where, header[k], opts.fill) for k in fcols])
        g["lines"].append(line)
    if not groups:
        raise ValueError(f"{path}: no data rows")
    items, labels, filled = [], [] if use_label else None, 0
    for sid, g in groups.items():
        x = np.array(g["rows"], np.float64)  # (T, F)
        if opts.time_col is not None:
            t = np.array(g["times"])
            order = np.argsort(t, kind="stable")
            dup = np.nonzero(np.diff(t[order]) == 0)[0]
            if len(dup):
                a, b = g["lines"][order[dup[0]]], g["lines"][order[dup[0] + 1]]
                raise ValueError(f"{path}, line {b}: sequence {sid!r} has the same "
                                 f"{opts.time_col!r} as on line {a}")
            x = x[order]
        missing = np.isnan(x)
        if missing.any():
            bad = missing.all(axis=0)
            if bad.any():
                raise ValueError(f"{path}: sequence {sid!r} has no values at all in column "
                                 f"{feats[int(np.argmax(bad))]!r}: nothing to fill from")
            x = fill_missing(x, opts.fill)
            filled += int(missing.sum())
        items.append(x)
        if use_label:
            labels.append(g["label"])
    return Dataset("series", items, labels, list(groups), str(path), filled)


def _cell(text: str, where: str, column: str, fill: str | None) -> float:
    x = parse_number(text, column, where)
    if math.isnan(x) and fill is None:
        raise ValueError(f"{where}: column {column!r} is missing a value (pass --fill "
                         "ffill or --fill interpolate to fill gaps)")
    return x


# ------------------------------------------------------------------------------ JSON lines
def read_jsonl(path: Path, opts: ReadOptions, labelled: bool | None = True) -> Dataset:
    """{"text": ..., "label": ...} or {"audio": wav, "label": ...} per line (an "id" is kept)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    kind, items, labels, names, audio_lines = None, [], [], [], []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, line {no}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        this = "text" if "text" in rec else "audio" if "audio" in rec else None
        if this is None:
            raise ValueError(f"{where}: expected a key 'text' or 'audio'")
        if kind is None:
            kind = this
        elif this != kind:
            raise ValueError(f"{where}: a {this!r} record in a file of {kind!r} records")
        value = rec[this]
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: {this!r} must be a non-empty string")
        if labelled is not False and "label" in rec:
            label = rec["label"]
            if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
                raise ValueError(f"{where}: 'label' must be a non-empty string or an integer, "
                                 f"got {label!r}")
            labels.append(str(label))
        elif labelled:
            raise ValueError(f"{where}: no 'label'")
        elif labelled is None and labels:
            raise ValueError(f"{where}: no 'label' (earlier lines have one)")
        if this == "audio":
            wav = Path(value)
            wav = wav if wav.is_absolute() else path.parent / wav
            if not wav.is_file():
                raise ValueError(f"{where}: audio file {wav} not found")
            value = wav
            audio_lines.append(no)
        items.append(value)
        names.append(str(rec.get("id", f"line {no}")))
    if not items:
        raise ValueError(f"{path}: no records")
    if labels and len(labels) != len(items):
        raise ValueError(f"{path}: some records have a 'label' and some do not")
    labels = labels or None
    if kind == "audio":
        cfg = FeatureConfig(**(opts.audio or {}))
        feats = []
        for wav, no in zip(items, audio_lines):
            try:
                feats.append(wav_features(wav, cfg).astype(np.float64))
            except ValueError as exc:
                raise ValueError(f"{path}, line {no}: {exc}") from None
        items = feats
    return Dataset(kind, items, labels, names, str(path))


# ------------------------------------------------------------------------------ splits, classes
def class_list(labels: list[str]) -> list[str]:
    """The distinct labels, in numeric order where they are all numbers."""
    return sorted(set(labels), key=label_key)


def encode_labels(labels: list[str], classes: list[str], source: str,
                  names: list[str] | None = None) -> np.ndarray:
    """Class ids of labels; a label the model never saw is an error naming it."""
    index = {c: k for k, c in enumerate(classes)}
    out = np.empty(len(labels), np.int64)
    for k, label in enumerate(labels):
        if label not in index:
            at = f" ({names[k]})" if names else ""
            raise ValueError(f"{source}{at}: label {label!r} is not one of the model's classes "
                             f"{classes}")
        out[k] = index[label]
    return out


def stratified_split(y: np.ndarray, fraction: float, seed) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices, validation = round(n fraction) sequences spread over the
    classes in proportion to their sizes (largest remainders first), every class keeping at
    least one training sequence; which members of a class are held out is drawn from ``seed``."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * fraction
    take = np.minimum(np.floor(quota).astype(np.int64), counts - 1)
    left = int(round(len(y) * fraction)) - int(take.sum())
    # the rest to the largest remainders; equal remainders in a random order
    for c in np.lexsort((rng.permutation(len(classes)), -(quota - take))):
        if left <= 0:
            break
        if take[c] < min(quota[c], counts[c] - 1):
            take[c] += 1
            left -= 1
    train, val = [], []
    for c, k in zip(classes, take):
        idx = rng.permutation(np.nonzero(y == c)[0])
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class Scaler:
    """Per-channel standardisation fitted on training sequences: (x - mean) / sd."""

    def __init__(self, mean, sd) -> None:
        self.mean, self.sd = np.asarray(mean, np.float64), np.asarray(sd, np.float64)

    @classmethod
    def fit(cls, seqs: list[np.ndarray]) -> "Scaler":
        allx = np.concatenate(seqs, axis=0)  # (sum T, F): every valid step once
        sd = allx.std(axis=0)
        return cls(allx.mean(axis=0), np.where(sd > 1e-8 * max(1.0, float(np.abs(allx).max())),
                                               sd, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.sd

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "sd": self.sd.tolist()}


def augment(z: np.ndarray, rng: np.random.Generator, crop: float = 1.0, jitter: float = 0.0,
            magnitude: float = 0.0, stretch: float = 0.0) -> np.ndarray:
    """One random view of a scaled (T, F) training sequence, drawn from ``rng``: a window of L
    consecutive steps, L uniform over [ceil(crop T), T], at a uniform start (crop 1: the whole
    sequence, nothing drawn); resampled (linear interpolation, both ends kept) to
    max(1, round(r L)) steps, log r uniform over [-log(1 + stretch), log(1 + stretch)]; each
    channel times a factor from N(1, magnitude); plus noise from N(0, jitter) on every value.
    The input is never modified."""
    T = len(z)
    if crop < 1:
        L = int(rng.integers(max(1, int(np.ceil(crop * T))), T + 1))
        start = int(rng.integers(0, T - L + 1))
        z = z[start : start + L]
    if stretch > 0:
        L = len(z)
        r = float(np.exp(rng.uniform(-np.log1p(stretch), np.log1p(stretch))))
        n = max(1, int(round(r * L)))
        if L == 1 or n == 1:
            z = np.repeat(z[:1], n, axis=0) if L == 1 else z[:1]
        else:
            t = np.linspace(0.0, L - 1, n)
            z = np.stack([np.interp(t, np.arange(L), z[:, f]) for f in range(z.shape[1])], 1)
    if magnitude > 0:
        z = z * rng.normal(1.0, magnitude, size=(1, z.shape[1]))
    if jitter > 0:
        z = z + rng.normal(0.0, jitter, size=z.shape)
    return z
