"""Time series from CSV: frequencies, calendar features, filling, errors that name the line, scaling."""
import numpy as np
import pytest

from rnnkit.data.series import (BUNDLED, Frequency, bundled_series, context_windows, denormalize,
                                fill_missing, normalize_windows, parse_number, read_series_csv,
                                series_scale)


def csv(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read(tmp_path, text, **kw):
    return read_series_csv(csv(tmp_path, text), kw.pop("target", "y"), **kw)


@pytest.mark.parametrize("stamps, name, season, nxt", [
    (["2020-01-01", "2020-02-01", "2020-03-01"], "monthly", 12, "2020-04-01"),
    (["2020-01", "2020-02", "2020-03"], "monthly", 12, "2020-04"),
    (["2020-01-31", "2020-02-29", "2020-03-31"], "monthly", 12, "2020-04-30"),
    (["2020-Q1", "2020-Q2", "2020-Q3"], "quarterly", 4, "2020-Q4"),
    (["2020-01-01", "2020-04-01", "2020-07-01"], "quarterly", 4, "2020-10-01"),
    (["2019-06-30", "2020-06-30", "2021-06-30"], "yearly", 1, "2022-06-30"),
    (["2024-01-01", "2024-01-08", "2024-01-15"], "weekly", 52, "2024-01-22"),
    (["2024-02-27", "2024-02-28", "2024-02-29"], "daily", 7, "2024-03-01"),
    (["2024-01-01 22:00", "2024-01-01 23:00", "2024-01-02 00:00"], "hourly", 24, "2024-01-02 01:00"),
    (["1700", "1701", "1702"], "steps", 1, "1703"),
])
def test_frequencies_are_inferred_and_continued(tmp_path, stamps, name, season, nxt):
    data = read(tmp_path, "t,y\n" + "".join(f"{t},{k}\n" for k, t in enumerate(stamps)), time_col="t")
    assert data.freq.name == name and data.freq.season == season
    s = data.series[0]
    np.testing.assert_array_equal(s.values, [0.0, 1.0, 2.0])
    assert data.freq.format(s.start) == stamps[0]
    assert data.freq.format(s.start + len(s) * data.freq.step) == nxt


def test_time_column_found_by_name_or_row_order(tmp_path):
    data = read(tmp_path, "y,Date\n1,2020-01-01\n2,2020-02-01\n")
    assert data.time_col == "Date" and data.freq.name == "monthly"
    data = read(tmp_path, "x,y\n5,1\n3,2\n4,3\n")  # no time column: the row order
    assert data.time_col is None and data.freq.name == "steps"
    np.testing.assert_array_equal(data.series[0].values, [1, 2, 3])


def test_calendar_features():
    monthly = Frequency("month", 1)
    jan, jul = 2020 * 12, 2020 * 12 + 6
    np.testing.assert_allclose(monthly.calendar(np.array([jan, jul])), [[0, 1], [0, -1]], atol=1e-12)
    assert Frequency("month", 12).calendar_size == 0  # yearly: no calendar
    assert Frequency("step", 1).calendar(np.arange(3)).shape == (3, 0)
    daily = Frequency("day", 1)
    import datetime as dt
    monday = dt.date(2024, 1, 1).toordinal()
    f = daily.calendar(np.array([monday, monday + 7, monday + 1]))
    assert f.shape == (3, 4)
    np.testing.assert_allclose(f[0, :2], f[1, :2])  # same weekday, same weekday features
    assert not np.allclose(f[0, :2], f[2, :2])
    np.testing.assert_allclose(f[0, 2:], [0, 1], atol=1e-12)  # 1 January: day 0 of the year


@pytest.mark.parametrize("text, message", [
    ("t,y\n1,1\n2,2\n3,\n4,4\n", r"line 4: missing value in column 'y'.*--fill"),
    ("t,y\n1,1\n2,abc\n3,3\n", r"line 3: column 'y' holds 'abc', which is not a number"),
    ("t,y\n1,1\n2,inf\n", r"line 3: column 'y' holds 'inf'; values must be finite"),
    ("t,y\n1,1\n3,2\n2,3\n", r"line 4: timestamp 2 comes before 3 on line 3.*sorted"),
    ("t,y\n1,1\n2,2\n2,3\n", r"line 4: duplicate timestamp 2 \(also on line 3\)"),
    ("t,y\n1,1\n2,2\n5,3\n6,4\n", r"line 4: 2 missing timestamp\(s\) between 2 and 5.*--fill"),
    ("t,y\n2020-01-01,1\n2020-13-01,2\n", r"line 3: cannot read the timestamp '2020-13-01'"),
    ("t,y\n2020-01-01,1\n2020-02,2\n", r"line 3: timestamp '2020-02' is written unlike"),
    ("t,y\n,1\n", r"line 2: the timestamp \('t'\) is missing"),
    ("t,y\n1,1\n2,2,3\n", r"line 3: 3 fields, the header has 2"),
    ("t,z\n1,1\n", r"no target column 'y'; its columns are \['t', 'z'\]"),
    ("t,y\n", r"has a header but no rows"),
    ("t,y\n1,5\n", r"has 1 value\(s\); at least 2"),
])
def test_csv_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read(tmp_path, text, time_col="t")


def test_covariate_errors_and_values(tmp_path):
    with pytest.raises(ValueError, match=r"line 3: missing value in column 'x'"):
        read(tmp_path, "t,y,x\n1,1,0.5\n2,2,NA\n", time_col="t", covariates=["x"])
    data = read(tmp_path, "t,y,x\n1,1,0.5\n2,2,NA\n3,3,1.5\n", time_col="t", covariates=["x"],
                fill="interpolate")
    np.testing.assert_allclose(data.series[0].covariates[:, 0], [0.5, 1.0, 1.5])


def test_non_numeric_is_an_error_even_with_fill(tmp_path):
    with pytest.raises(ValueError, match="line 3"):
        read(tmp_path, "t,y\n1,1\n2,oops\n3,3\n", time_col="t", fill="ffill")


def test_fill_inserts_missing_timestamps_and_fills_values(tmp_path):
    text = "t,y\n2020-01-01,1\n2020-02-01,\n2020-03-01,3\n2020-06-01,6\n"
    ff = read(tmp_path, text, time_col="t", fill="ffill").series[0]
    np.testing.assert_array_equal(ff.values, [1, 1, 3, 3, 3, 6])
    assert ff.filled == 3  # one empty cell and two inserted months
    lin = read(tmp_path, text, time_col="t", fill="interpolate").series[0]
    np.testing.assert_allclose(lin.values, [1, 2, 3, 4, 5, 6])


def test_fill_missing_edges():
    nan = np.nan
    np.testing.assert_array_equal(fill_missing(np.array([nan, 2.0, nan, 4.0, nan]), "ffill"),
                                  [2, 2, 2, 4, 4])
    np.testing.assert_array_equal(fill_missing(np.array([nan, 2.0, nan, 4.0, nan]), "interpolate"),
                                  [2, 2, 3, 4, 4])
    with pytest.raises(ValueError, match="no values"):
        fill_missing(np.array([nan, nan]), "ffill")


def test_long_format_many_series(tmp_path):
    text = ("id,t,y\n"
            "a,2020-01-01,1\n"
            "b,2020-03-01,100\n"
            "a,2020-02-01,2\n"
            "b,2020-04-01,200\n"
            "a,2020-03-01,3\n")
    data = read(tmp_path, text, time_col="t", id_col="id")
    assert data.ids() == ["a", "b"] and data.freq.name == "monthly"
    a, b = data.series
    np.testing.assert_array_equal(a.values, [1, 2, 3])
    np.testing.assert_array_equal(b.values, [100, 200])
    assert data.freq.format(b.start) == "2020-03-01"
    with pytest.raises(ValueError, match=r"line 4: duplicate timestamp 2020-03-01 \(also on line 3\) "
                                         r"\(series 'b'\)"):
        read(tmp_path, "id,t,y\na,2020-01-01,1\nb,2020-03-01,5\nb,2020-03-01,6\n", time_col="t",
             id_col="id")
    with pytest.raises(ValueError, match=r"line 3: the series id \('id'\) is empty"):
        read(tmp_path, "id,t,y\na,1,1\n,2,2\n", time_col="t", id_col="id")


def test_bundled_series_read_cleanly():
    sizes = {"sunspots": [309], "co2": [526], "nile": [100], "elnino": [732], "us_macro": [203] * 7}
    freqs = {"sunspots": "steps", "co2": "monthly", "nile": "steps", "elnino": "monthly",
             "us_macro": "quarterly"}
    assert set(BUNDLED) == set(sizes)
    for name in BUNDLED:
        data = bundled_series(name)
        assert [len(s) for s in data.series] == sizes[name]
        assert data.freq.name == freqs[name]
        assert all(np.isfinite(s.values).all() and s.filled == 0 for s in data.series)


def test_series_scale():
    assert series_scale(np.array([1.0, 3.0, 2.0, 6.0])) == pytest.approx((2 + 1 + 4) / 3)
    assert series_scale(np.array([5.0, 5.0, 5.0])) == pytest.approx(5.0)  # no steps: |mean|
    assert series_scale(np.array([0.0, 0.0])) == 1.0
    assert series_scale(np.array([7.0])) == pytest.approx(7.0)


def test_context_windows_pad_on_the_left():
    y = np.array([10.0, 11.0, 12.0, 13.0, 14.0])
    np.testing.assert_array_equal(context_windows(y, np.array([1, 3, 5]), 3),
                                  [[10, 10, 10], [10, 11, 12], [12, 13, 14]])


def test_scaling_round_trip(rng):
    ctx = rng.normal(50, 10, (6, 8))
    target = rng.normal(50, 10, (6, 3))
    scale = rng.uniform(0.5, 3.0, 6)
    z, level, zt = normalize_windows(ctx, scale, target)
    np.testing.assert_array_equal(level, ctx[:, -1])
    np.testing.assert_allclose(z[:, -1], 0.0)  # the level is the last context value
    np.testing.assert_allclose(zt, (target - ctx[:, -1:]) / scale[:, None])
    np.testing.assert_allclose(denormalize(zt, level, scale), target, rtol=1e-12)
    np.testing.assert_allclose(denormalize(z, level, scale), ctx, rtol=1e-12)


def test_parse_number_reads_finite_numbers_and_names_the_bad_cell():
    assert parse_number(" 2.5e1 ", "y", "f.csv, line 3") == 25.0
    for missing in ("", "NA", "n/a", "NaN", "null", "?", "-"):
        assert np.isnan(parse_number(missing, "y", "f.csv, line 3"))
    with pytest.raises(ValueError, match=r"^f.csv, line 3: column 'y' holds 'abc', which is not a number$"):
        parse_number("abc", "y", "f.csv, line 3")
    with pytest.raises(ValueError, match=r"^f.csv, line 4: column 'x' holds '-inf'; values must be finite"):
        parse_number("-inf", "x", "f.csv, line 4")
