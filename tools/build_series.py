"""Export the bundled forecasting series ``rnnkit/data/series/*.csv`` from statsmodels' datasets.

Run once (the CSVs are committed; statsmodels is not a dependency of rnnkit)::

    pip install statsmodels
    python tools/build_series.py

Every series written here is public domain (see ``rnnkit/data/series/SOURCES.md``). The output
is deterministic: values are written with ``repr``-exact decimals and a fixed row order, so a
re-run with the same statsmodels leaves the files unchanged.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "rnnkit" / "data" / "series"

# (id, statsmodels column) of the long-format US macro file: levels and rates, all seasonally
# adjusted, from FRED / BLS (public domain)
MACRO = (("realgdp", "realgdp"), ("realcons", "realcons"), ("realinv", "realinv"),
         ("cpi", "cpi"), ("m1", "m1"), ("unemp", "unemp"), ("tbilrate", "tbilrate"))


def _number(x: float) -> str:
    """Shortest decimal that round-trips (0.1 stays 0.1), integers without a trailing .0."""
    x = float(x)
    if not math.isfinite(x):
        raise SystemExit(f"unexpected non-finite value {x}")
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def _write(name: str, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path = OUTPUT / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    try:
        from statsmodels.datasets import co2, elnino, macrodata, nile, sunspots
    except ImportError:
        raise SystemExit("statsmodels is not installed: pip install statsmodels") from None
    OUTPUT.mkdir(parents=True, exist_ok=True)

    d = sunspots.load_pandas().data  # yearly mean sunspot numbers 1700-2008
    _write("sunspots.csv", ["year", "sunspots"],
           [[str(int(y)), _number(v)] for y, v in zip(d["YEAR"], d["SUNACTIVITY"])])

    # weekly Mauna Loa flask CO2 (ppm), 1958-03 .. 2001-12: monthly means of the weekly values;
    # the 5 months without any observation are interpolated linearly (time-weighted)
    w = co2.load_pandas().data["co2"]
    monthly = w.resample("MS").mean().interpolate(method="time").round(3)
    _write("co2.csv", ["date", "co2"],
           [[t.strftime("%Y-%m-%d"), _number(v)] for t, v in monthly.items()])

    d = nile.load_pandas().data  # annual Nile flow at Aswan (10^8 m^3), 1871-1970
    _write("nile.csv", ["year", "volume"],
           [[str(int(y)), _number(v)] for y, v in zip(d["year"], d["volume"])])

    d = elnino.load_pandas().data  # monthly sea surface temperature, Nino 1+2 region, 1950-2010
    months = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    _write("elnino.csv", ["date", "sst"],
           [[f"{int(r['YEAR'])}-{k + 1:02d}-01", _number(r[m])]
            for _, r in d.iterrows() for k, m in enumerate(months)])

    d = macrodata.load_pandas().data  # quarterly US macro data 1959Q1-2009Q3
    rows = []
    for sid, col in MACRO:
        for _, r in d.iterrows():
            rows.append([sid, f"{int(r['year'])}-{3 * (int(r['quarter']) - 1) + 1:02d}-01",
                         _number(r[col])])
    _write("us_macro.csv", ["series", "date", "value"], rows)


if __name__ == "__main__":
    main()
