"""Time series from CSV: parsing, regular frequencies, calendar features, filling, scaling, windows.

NumPy and the standard library only:

- `read_series_csv(path, target, ...)`: a CSV with a time column (dates or integer steps), a
  target column, optional covariate columns and optionally a series-id column (many series in
  long format).  Every problem (a missing or non-numeric value, an unparsable, unsorted,
  duplicate or missing timestamp) is one `ValueError` naming the file, the line and the column,
  unless ``fill`` ('ffill' or 'interpolate') is given, which fills missing values and inserts
  the rows of missing timestamps.
- `Frequency`: the regular spacing shared by all series (``monthly``, ``quarterly``,
  ``daily``, ``every 15 seconds``, ``steps``...), its default seasonal period, the timestamps of
  the future and calendar features (sin/cos of the position in the year, week or day) where the
  frequency has a calendar.
- `series_scale`, `normalize_windows`, `denormalize`: per-series scaling and per-window
  levels, the only transformation a forecasting model sees (``z = (y - level) / scale``).
- `context_windows(values, origins, context)`: the ``context`` values before each origin,
  left-padded with the first value where the history is shorter.
- `bundled_series_path(name)`: the public-domain series shipped in ``series/`` (SOURCES.md).

A time index is an integer in the frequency's unit: the value itself for integer steps, months
since year 0 for month-based dates, days (proleptic ordinals) for day-based dates and seconds for
sub-daily ones, so the timestamps of a series are ``start + step * arange(len)``.
"""
from __future__ import annotations

import csv
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "BUNDLED", "FILL_METHODS", "Frequency", "Series", "SeriesSet", "bundled_series", "bundled_series_path",
    "context_windows", "denormalize", "fill_missing", "normalize_windows", "parse_number",
    "read_series_csv",
    "series_scale",
]

FILL_METHODS = ("ffill", "interpolate")
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
TIME_NAMES = ("date", "time", "timestamp", "datetime", "ds", "period", "year", "month", "week",
              "day", "quarter", "step", "t")

_INT = re.compile(r"^[+-]?\d+$")
_YEAR_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})[- ]?[Qq]([1-4])$")
_DAY = 86_400


# ----------------------------------------------------------------------------- frequencies

@dataclass(frozen=True)
class Frequency:
    """Regular spacing of time indices: ``step`` units of ``unit``.

    unit: 'step' (integer time column or row order), 'month', 'day' or 'second'.
    day: for 'month' only, the day of the month every timestamp falls on (0 = the month's last
    day), so that future timestamps look like the past ones.
    style: 'month' for timestamps written YYYY-MM, 'quarter' for YYYY-Qn, else ISO dates.
    """

    unit: str
    step: int = 1
    day: int = 1
    style: str = "iso"

    @property
    def name(self) -> str:
        known = {("step", 1): "steps", ("month", 1): "monthly", ("month", 3): "quarterly",
                 ("month", 6): "half-yearly", ("month", 12): "yearly", ("day", 1): "daily",
                 ("day", 7): "weekly", ("second", 3600): "hourly",
                 ("second", 1800): "half-hourly", ("second", 60): "minutely"}
        return known.get((self.unit, self.step), f"every {self.step} {self.unit}s")

    @property
    def season(self) -> int:
        """The usual seasonal period: 12 for monthly, 4 quarterly, 52 weekly, 7 daily, ..."""
        if self.unit == "month" and 12 % self.step == 0:
            return 12 // self.step
        if self.unit == "day" and self.step == 7:
            return 52
        if self.unit == "day" and self.step == 1:
            return 7
        if self.unit == "second" and _DAY % self.step == 0 and self.step >= 60:
            return _DAY // self.step  # one day: 24 hourly, 48 half-hourly
        return 1

    def format(self, index: int) -> str:
        """The timestamp of time index ``index``, written as the input wrote its timestamps."""
        index = int(index)
        if self.unit == "step":
            return str(index)
        if self.unit == "month":
            year, month = divmod(index, 12)
            if self.style == "quarter":
                return f"{year:04d}-Q{month // 3 + 1}"
            if self.style == "month":
                return f"{year:04d}-{month + 1:02d}"
            return _month_date(year, month + 1, self.day).isoformat()
        if self.unit == "day":
            return dt.date.fromordinal(index).isoformat()
        days, seconds = divmod(index, _DAY)
        stamp = dt.datetime.combine(dt.date.fromordinal(days), dt.time())
        stamp += dt.timedelta(seconds=seconds)
        whole_minutes = index % 60 == 0 and self.step % 60 == 0
        return stamp.isoformat(sep=" ", timespec="minutes" if whole_minutes else "seconds")

    def index(self, start: int, n: int) -> np.ndarray:
        """The time indices start, start + step, ... (n of them)."""
        return start + self.step * np.arange(n, dtype=np.int64)

    @property
    def calendar_size(self) -> int:
        return len(self._periods())

    def _periods(self) -> list[tuple[str, float]]:
        """(what, period) of each calendar cycle the frequency resolves."""
        if self.unit == "month":
            return [("month", 12.0)] if self.step < 12 else []
        if self.unit == "day":
            if self.step == 1:
                return [("weekday", 7.0), ("yearday", 365.25)]
            return [("yearday", 365.25)] if self.step < 183 else []
        if self.unit == "second":
            cycles = []
            if self.step < _DAY:
                cycles.append(("daytime", float(_DAY)))
            if self.step < 7 * _DAY:
                cycles.append(("weekday", 7.0))
            if self.step < 183 * _DAY:
                cycles.append(("yearday", 365.25))
            return cycles
        return []

    def calendar(self, index: np.ndarray) -> np.ndarray:
        """Calendar features (len(index), 2 * cycles): sin and cos of each cycle's phase.

        Monthly and quarterly: the month of the year; daily: the day of the week and of the
        year; sub-daily: also the time of day.  Yearly data and integer steps have none.
        """
        index = np.asarray(index, np.int64)
        cols = []
        for what, period in self._periods():
            if what == "month":
                phase = np.mod(index, 12) / period
            elif self.unit == "second" and what == "daytime":
                phase = np.mod(index, _DAY) / period
            else:
                days = index if self.unit == "day" else index // _DAY
                if what == "weekday":
                    phase = np.mod(days, 7) / period  # ordinal 1 = Monday 0001-01-01
                else:
                    phase = _day_of_year(days) / period
            cols += [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)]
        if not cols:
            return np.zeros((len(index), 0))
        return np.stack(cols, axis=1)

    def to_json(self) -> dict:
        return {"unit": self.unit, "step": self.step, "day": self.day, "style": self.style}

    @classmethod
    def from_json(cls, d: dict) -> "Frequency":
        return cls(unit=str(d["unit"]), step=int(d["step"]), day=int(d["day"]), style=str(d["style"]))


def _month_date(year: int, month: int, day: int) -> dt.date:
    last = _days_in_month(year, month)
    return dt.date(year, month, last if day == 0 else min(day, last))


def _days_in_month(year: int, month: int) -> int:
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    return (nxt - dt.timedelta(days=1)).day


def _day_of_year(days: np.ndarray) -> np.ndarray:
    """0-based day of the year of proleptic ordinals (vectorised through datetime64)."""
    d64 = (days - dt.date(1970, 1, 1).toordinal()).astype("datetime64[D]")
    year_start = d64.astype("datetime64[Y]").astype("datetime64[D]")
    return (d64 - year_start).astype(np.int64).astype(np.float64)


# ----------------------------------------------------------------------------- time parsing

def _parse_time(text: str):
    """('int', n) | ('month', months, style) | ('date', datetime); None if unparsable."""
    s = text.strip()
    if _INT.match(s):
        return ("int", int(s))
    m = _YEAR_MONTH.match(s)
    if m and 1 <= int(m.group(2)) <= 12:
        return ("month", int(m.group(1)) * 12 + int(m.group(2)) - 1, "month")
    m = _QUARTER.match(s)
    if m:
        return ("month", int(m.group(1)) * 12 + 3 * (int(m.group(2)) - 1), "quarter")
    try:
        stamp = dt.datetime.fromisoformat(s.replace("/", "-"))
    except ValueError:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return ("date", stamp)


def _infer_frequency(kind: str, style: str, stamps: list[list], where) -> Frequency:
    """The common regular spacing of parsed timestamps (one list per series)."""
    if kind == "int":
        diffs = [b - a for s in stamps for a, b in zip(s, s[1:])]
        return Frequency("step", _gcd(diffs) or 1)
    if kind == "month":
        diffs = [b - a for s in stamps for a, b in zip(s, s[1:])]
        return Frequency("month", _gcd(diffs) or 1, 1, style)
    flat = [t for s in stamps for t in s]
    midnight = all(t.hour == t.minute == t.second == t.microsecond == 0 for t in flat)
    if any(t.microsecond for t in flat):
        raise ValueError(f"{where}: timestamps with fractions of a second are not supported")
    if midnight:
        months = [[t.year * 12 + t.month - 1 for t in s] for s in stamps]
        ends = all(t.day == _days_in_month(t.year, t.month) for t in flat)
        days = {t.day for t in flat}
        mdiffs = [b - a for s in months for a, b in zip(s, s[1:])]
        if (len(days) == 1 or ends) and mdiffs and min(mdiffs) > 0:
            day = 0 if ends and (len(days) > 1 or flat[0].day >= 28) else flat[0].day
            return Frequency("month", _gcd(mdiffs), day)
        ddiffs = [(b - a).days for s in stamps for a, b in zip(s, s[1:])]
        return Frequency("day", _gcd(ddiffs) or 1)
    sdiffs = [int((b - a).total_seconds()) for s in stamps for a, b in zip(s, s[1:])]
    return Frequency("second", _gcd(sdiffs) or 1)


def _gcd(values: list[int]) -> int:
    g = 0
    for v in values:
        if v > 0:
            g = math.gcd(g, v)
    return g


def _to_index(freq: Frequency, parsed) -> int:
    if parsed[0] in ("int", "month"):
        return parsed[1]
    stamp = parsed[1]
    if freq.unit == "month":
        return stamp.year * 12 + stamp.month - 1
    if freq.unit == "day":
        return stamp.toordinal()
    return stamp.toordinal() * _DAY + stamp.hour * 3600 + stamp.minute * 60 + stamp.second


# ----------------------------------------------------------------------------- series

@dataclass
class Series:
    """One series: time indices ``start + step * k``, values (T,), covariates (T, C)."""

    id: str
    start: int
    values: np.ndarray
    covariates: np.ndarray
    filled: int = 0  # values or rows filled by --fill

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class SeriesSet:
    """Every series of one CSV file with their common frequency and the columns they came from."""

    series: list[Series]
    freq: Frequency
    target: str
    time_col: str | None = None
    id_col: str | None = None
    covariates: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.series)

    def ids(self) -> list[str]:
        return [s.id for s in self.series]

    def truncate(self, n_last_removed: int) -> "SeriesSet":
        """Every series without its last ``n_last_removed`` values (a backtest fold's past)."""
        cut = [Series(s.id, s.start, s.values[: len(s) - n_last_removed],
                      s.covariates[: len(s) - n_last_removed], s.filled) for s in self.series]
        return SeriesSet(cut, self.freq, self.target, self.time_col, self.id_col, self.covariates)


def fill_missing(values: np.ndarray, method: str) -> np.ndarray:
    """Fill NaNs along axis 0: 'ffill' carries the last value forward, 'interpolate' draws a
    straight line between neighbours; values before the first observation take its value
    (and, for 'interpolate', after the last one the last's)."""
    values = np.array(values, dtype=np.float64)
    flat = values.reshape(len(values), -1)
    for j in range(flat.shape[1]):
        col = flat[:, j]
        ok = ~np.isnan(col)
        if ok.all():
            continue
        if not ok.any():
            raise ValueError("a column has no values at all: nothing to fill from")
        idx = np.arange(len(col))
        if method == "interpolate":
            col[~ok] = np.interp(idx[~ok], idx[ok], col[ok])
        elif method == "ffill":
            last = np.maximum.accumulate(np.where(ok, idx, -1))
            first = int(np.argmax(ok))
            col[:] = col[np.where(last < 0, first, last)]
        else:
            raise ValueError(f"fill must be one of {FILL_METHODS}, got {method!r}")
    return values


def parse_number(text: str, column: str, where: str) -> float:
    """One CSV cell as a finite float, NaN where it is missing (MISSING); otherwise an error
    naming ``where`` (file and line) and the column."""
    s = text.strip()
    if s.lower() in MISSING:
        return math.nan
    try:
        x = float(s)
    except ValueError:
        raise ValueError(f"{where}: column {column!r} holds {text!r}, which is not a "
                         "number") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: column {column!r} holds {text!r}; values must be finite "
                         "numbers")
    return x


def read_series_csv(path: str | Path, target: str, time_col: str | None = None,
                    id_col: str | None = None, covariates: tuple[str, ...] | list[str] = (),
                    fill: str | None = None, min_length: int = 2) -> SeriesSet:
    """Read one or many series from a CSV (see the module docstring).

    time_col None: a column named date, time, timestamp, year, ... (see ``TIME_NAMES``) if there
    is one, else the row order.  Rows of one series must be in time order (series may follow
    each other or interleave in long format).  Raises ValueError naming the file and the line.
    """
    path = Path(path)
    where = str(path)
    if fill is not None and fill not in FILL_METHODS:
        raise ValueError(f"--fill must be one of {FILL_METHODS}, got {fill!r}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise ValueError(f"{where} is empty") from None
            header = [h.strip() for h in header]
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except UnicodeDecodeError as e:
        raise ValueError(f"{where} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise ValueError(f"{where}: malformed CSV: {e}") from None

    def column(name: str, what: str) -> int:
        if name not in header:
            raise ValueError(f"{where} has no {what} column {name!r}; its columns are {header}")
        return header.index(name)

    covariates = tuple(covariates)
    t_idx = column(target, "target")
    i_idx = column(id_col, "series-id") if id_col else None
    c_idx = [column(c, "covariate") for c in covariates]
    if time_col is None:
        lower = {h.lower(): k for k, h in enumerate(header)}
        used = {target, id_col, *covariates}
        time_col = next((header[lower[n]] for n in TIME_NAMES
                         if n in lower and header[lower[n]] not in used), None)
    tm_idx = column(time_col, "time") if time_col else None
    if tm_idx is not None and tm_idx in (t_idx, i_idx, *c_idx):
        raise ValueError(f"--time-col {time_col!r} is also the target, id or a covariate column")
    if not rows:
        raise ValueError(f"{where} has a header but no rows")

    # group rows by series, parse timestamps and numbers
    groups: dict[str, list] = {}
    kind = style = None
    for k, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"{where}, line {line}: {len(row)} fields, the header has {len(header)}")
        sid = row[i_idx].strip() if i_idx is not None else ""
        if i_idx is not None and not sid:
            raise ValueError(f"{where}, line {line}: the series id ({id_col!r}) is empty")
        if tm_idx is None:
            parsed = ("int", len(groups.get(sid, ())))
        else:
            text = row[tm_idx]
            if not text.strip():
                raise ValueError(f"{where}, line {line}: the timestamp ({time_col!r}) is missing")
            parsed = _parse_time(text)
            if parsed is None:
                raise ValueError(f"{where}, line {line}: cannot read the timestamp {text!r} in "
                                 f"column {time_col!r} (use ISO dates like 2024-01-31, "
                                 "2024-01-31 13:00, 2024-01, 2024-Q1, or integer steps)")
            pkind = "date" if parsed[0] == "date" else parsed[0]
            pstyle = parsed[2] if parsed[0] == "month" else "iso"
            if kind is None:
                kind, style = pkind, pstyle
            elif (pkind, pstyle) != (kind, style):
                raise ValueError(f"{where}, line {line}: timestamp {text!r} is written unlike the "
                                 f"first row's ({_KIND_NAMES[kind, style]})")
        at = f"{where}, line {line}"
        y = parse_number(row[t_idx], target, at)
        cov = [parse_number(row[j], header[j], at) for j in c_idx]
        groups.setdefault(sid, []).append((line, parsed, y, cov))
    kind = kind or "int"
    style = style or "iso"

    stamps = []
    for sid, items in groups.items():
        values = [p[1] for _, p, _, _ in items]
        for (la, pa, _, _), (lb, pb, _, _) in zip(items, items[1:]):
            if pb[1] == pa[1]:
                raise ValueError(f"{where}, line {lb}: duplicate timestamp {_show(pb)} (also on line "
                                 f"{la}){_of(sid, id_col)}")
            if pb[1] < pa[1]:
                raise ValueError(f"{where}, line {lb}: timestamp {_show(pb)} comes before "
                                 f"{_show(pa)} on line {la}{_of(sid, id_col)}: rows must be sorted "
                                 "by time")
        stamps.append(values)
    freq = _infer_frequency(kind, style, stamps, where)

    series = []
    for sid, items in groups.items():
        idx = np.array([_to_index(freq, p) for _, p, _, _ in items], np.int64)
        lines = [line for line, _, _, _ in items]
        rel = idx - idx[0]
        if np.any(rel % freq.step):
            k = int(np.argmax(rel % freq.step != 0))
            raise ValueError(f"{where}, line {lines[k]}: timestamp {_show(items[k][1])} is off the "
                             f"series' regular {freq.name} spacing{_of(sid, id_col)}")
        pos = rel // freq.step
        n = int(pos[-1]) + 1
        gaps = np.flatnonzero(np.diff(pos) > 1)
        if len(gaps) and fill is None:
            k = int(gaps[0])
            missing = int(pos[k + 1] - pos[k] - 1)
            raise ValueError(f"{where}, line {lines[k + 1]}: {missing} missing timestamp(s) between "
                             f"{freq.format(idx[k])} and {freq.format(idx[k + 1])} ({freq.name} "
                             f"series){_of(sid, id_col)}; pass --fill ffill|interpolate to fill them")
        if n > 10 * len(items) + 10:
            raise ValueError(f"{where}: filling the gaps of series {sid!r} would make {n} rows out of "
                             f"{len(items)}: the timestamps are not a regular {freq.name} series")
        y = np.full(n, np.nan)
        y[pos] = [v for _, _, v, _ in items]
        cov = np.full((n, len(covariates)), np.nan)
        if covariates:
            cov[pos] = [c for _, _, _, c in items]
        holes = np.isnan(y) | np.isnan(cov).any(axis=1)
        if holes.any():
            if fill is None:
                k = int(np.argmax(holes))
                col = target if np.isnan(y[k]) else covariates[int(np.argmax(np.isnan(cov[k])))]
                raise ValueError(f"{where}, line {lines[int(np.searchsorted(pos, k))]}: missing value "
                                 f"in column {col!r}{_of(sid, id_col)}; pass --fill "
                                 "ffill|interpolate to fill missing values")
            try:
                y = fill_missing(y, fill)
                cov = fill_missing(cov, fill)
            except ValueError:
                raise ValueError(f"{where}: series {sid or target!r} has a column without any "
                                 "value") from None
        if n < min_length:
            raise ValueError(f"{where}: series{_of(sid, id_col, ' ')}has {n} value(s); at least "
                             f"{min_length} are needed")
        series.append(Series(sid, int(idx[0]), y, cov, int(holes.sum())))
    return SeriesSet(series, freq, target, time_col, id_col, covariates)


_KIND_NAMES = {("int", "iso"): "integer steps", ("month", "month"): "YYYY-MM",
               ("month", "quarter"): "YYYY-Qn", ("date", "iso"): "an ISO date"}


def _show(parsed) -> str:
    if parsed[0] != "date":
        return str(parsed[1])
    return parsed[1].isoformat(sep=" ").removesuffix(" 00:00:00")


def _of(sid: str, id_col: str | None, end: str = "") -> str:
    return f" (series {sid!r}){end}" if id_col else end


# ----------------------------------------------------------------------------- scaling, windows

def series_scale(values: np.ndarray) -> float:
    """The scale of a series: the mean absolute step |y_t - y_{t-1}| (the in-sample naive error,
    MASE's m = 1 denominator), else its standard deviation, else |mean|, else 1.

    Dividing by it makes every series' one-step changes O(1), whatever its units and level.
    """
    y = np.asarray(values, np.float64)
    for s in (np.mean(np.abs(np.diff(y))) if len(y) > 1 else 0.0, np.std(y), np.abs(np.mean(y))):
        if np.isfinite(s) and s > 1e-12 * max(1.0, float(np.max(np.abs(y)))):
            return float(s)
    return 1.0


def context_windows(values: np.ndarray, origins: np.ndarray, context: int) -> np.ndarray:
    """values[o - context : o] for each origin o, (n, context[, ...]), left-padded by values[0]."""
    values = np.asarray(values)
    origins = np.asarray(origins, np.int64)
    pad = np.repeat(values[:1], context, axis=0)
    padded = np.concatenate([pad, values])  # values[k] is padded[k + context]
    idx = origins[:, None] + np.arange(context)[None, :]  # (n, context) into padded
    return padded[idx]


def normalize_windows(context: np.ndarray, scale, target: np.ndarray | None = None):
    """Per-window level and per-series scale: z = (y - level) / scale, level = the last context value.

    context (n, N), scale scalar or (n,); returns (z_context, level (n,), z_target or None).
    The naive forecast is z = 0, so a model predicting changes starts from it.
    """
    level = context[:, -1]
    scale = np.broadcast_to(np.asarray(scale, np.float64), level.shape)[:, None]
    z = (context - level[:, None]) / scale
    zt = None if target is None else (target - level[:, None]) / scale
    return z, level, zt


def denormalize(z: np.ndarray, level: np.ndarray, scale) -> np.ndarray:
    """Inverse of `normalize_windows`: y = level + scale * z (z (n, H))."""
    scale = np.broadcast_to(np.asarray(scale, np.float64), np.shape(level))
    return level[:, None] + scale[:, None] * z


# ----------------------------------------------------------------------------- bundled data

BUNDLED = {  # name: (target, id column, typical horizon)
    "sunspots": ("sunspots", None, 11),
    "co2": ("co2", None, 12),
    "nile": ("volume", None, 10),
    "elnino": ("sst", None, 12),
    "us_macro": ("value", "series", 8),
}


def bundled_series_path(name: str) -> Path:
    """Path of a bundled series CSV: one of ``BUNDLED`` (see series/SOURCES.md)."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled series {name!r}; there are {sorted(BUNDLED)}")
    return Path(__file__).resolve().parent / "series" / f"{name}.csv"


def bundled_series(name: str) -> SeriesSet:
    """Read a bundled series."""
    target, id_col, _ = BUNDLED[name] if name in BUNDLED else (None, None, None)
    return read_series_csv(bundled_series_path(name), target, id_col=id_col)
