"""`forecast check` (profile and triage without fitting) and `forecast run --triage`, on real files."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app
from forecast.config import TriageRules
from forecast.freq import infer_freq
from forecast.profile import profile_table, triage
from forecast.types import SeriesProblem

runner = CliRunner()
DAYS = 120


def kinds_table() -> pd.DataFrame:
    """One daily series of each kind, all ending on the same day except the stale one."""
    rng = np.random.default_rng(0)
    ds = pd.date_range("2024-01-01", periods=DAYS, freq="D")
    t = np.arange(DAYS)
    healthy = 20 + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, DAYS)
    intermittent = np.where(t % 7 == 0, 3.0, 0.0)
    negative = healthy.copy()
    negative[::5] = -2.0  # a fifth of the values: more than --max-negative-share 0.1
    gappy = np.r_[0:30, 70:DAYS]  # 40 of 120 days absent
    parts = {
        "healthy": (ds, healthy),
        "new": (ds[-10:], healthy[-10:]),
        "stale": (ds[:60], healthy[:60]),
        "intermittent": (ds, intermittent),
        "gappy": (ds[gappy], healthy[gappy]),
        "negative": (ds, negative),
        "constant": (ds, np.full(DAYS, 5.0)),
        "blank": (ds[:5], np.full(5, np.nan)),
    }
    return pd.concat([pd.DataFrame({"unique_id": k, "ds": d, "y": y}) for k, (d, y) in parts.items()],
                     ignore_index=True)


EXPECTED = {
    "healthy": ("fit", ""),
    "new": ("fallback", "new: 10 values (--min-obs 30)"),
    "stale": ("skip", "stale: last value 2024-02-29, 60 periods before the table's end (--stale-after 28)"),
    "intermittent": ("fallback", "intermittent: 85% zeros (--max-zero-share 0.5)"),
    "gappy": ("fallback", "gappy: 40 of 120 periods missing (--max-gap-share 0.2)"),
    "negative": ("fallback", "negative: 24 of 120 values below 0 (--max-negative-share 0.1; --allow-negative fits "
                             "them)"),
    "constant": ("fallback", "constant at 5"),
    "blank": ("skip", "no values: all 5 missing"),
}


@pytest.fixture
def kinds_csv(tmp_path):
    path = tmp_path / "kinds.csv"
    kinds_table().sample(frac=1, random_state=3).to_csv(path, index=False)  # row order must not matter
    return path


def check(*args):
    return runner.invoke(app, ["check", *map(str, args)])


def verdicts(profile_csv) -> dict:
    p = pd.read_csv(profile_csv, keep_default_na=False)
    return {r.unique_id: (r.verdict, r.reason) for r in p.itertuples()}


def test_each_kind_of_series_gets_its_verdict_and_reason(tmp_path, kinds_csv):
    out = tmp_path / "chk"
    result = check(kinds_csv, "--out", out)
    assert result.exit_code == 0, result.output
    assert verdicts(out / "profile.csv") == EXPECTED
    p = pd.read_csv(out / "profile.csv").set_index("unique_id")
    assert p.loc["gappy", ["n_rows", "expected_periods", "missing_periods"]].tolist() == [80, 120, 40]
    assert p.loc["stale", "age_periods"] == 60 and p.loc["healthy", "age_periods"] == 0
    assert p.loc["negative", "n_negative"] == 24 and bool(p.loc["constant", "constant"])
    assert (p["freq"] == "D").all()
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["series", "8"]
    assert any(line.split() == ["verdicts", "fit", "1,", "fallback", "5,", "skip", "2"] for line in lines)
    assert any(line.split()[:4] == ["stale", "->", "skip", "1:"] and "stale" in line.split()[4] for line in lines)
    assert str(out / "profile.csv") in result.stdout


@pytest.mark.parametrize("flag,value,series", [
    ("--min-obs", 5, "new"),
    ("--max-zero-share", 0.9, "intermittent"),
    ("--max-gap-share", 0.5, "gappy"),
    ("--stale-after", 100, "stale"),
    ("--allow-negative", None, "negative"),
])
def test_thresholds_from_the_command_line_change_the_verdicts(tmp_path, kinds_csv, flag, value, series):
    out = tmp_path / "chk"
    args = [flag] if value is None else [flag, value]
    assert check(kinds_csv, "--out", out, *args).exit_code == 0
    got = verdicts(out / "profile.csv")
    assert got[series] == ("fit", "")
    assert {k: v for k, v in got.items() if k != series} == {k: v for k, v in EXPECTED.items() if k != series}


def test_stricter_thresholds_catch_more(tmp_path, kinds_csv):
    out = tmp_path / "chk"
    assert check(kinds_csv, "--out", out, "--min-obs", 200, "--stale-after", 0).exit_code == 0
    got = verdicts(out / "profile.csv")
    assert got["healthy"] == ("fallback", "new: 120 values (--min-obs 200)")
    assert got["stale"][0] == "skip"


@pytest.mark.parametrize("content,args,message", [
    (None, [], "no such file"),
    ("unique_id,date,y\nA,2024-01-01,1\n", [], "time column 'ds' not found; columns are: unique_id, date, y"),
    ("unique_id,ds,y\nA,2024-01-01,1\nA,2024-01-01,2\n", [], "1 duplicate (unique_id, ds) row(s)"),
    ("unique_id,ds,y\nA,2024-01-01,1\n", ["--max-zero-share", 2], None),  # typer's own range check: exit 2
])
def test_an_unusable_table_exits_1_with_one_line_and_writes_nothing(tmp_path, content, args, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "chk"
    result = check(path, "--out", out, *args)
    if message is None:
        assert result.exit_code == 2
    else:
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert not out.exists()


def test_duplicates_policy_is_shared_with_run(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("store,date,sales\nA,2024-01-01,1\nA,2024-01-01,2\nA,2024-01-02,0\n")
    out = tmp_path / "chk"
    result = check(path, "--id-col", "store", "--time-col", "date", "--target-col", "sales", "--duplicates", "sum",
                   "--out", out, "--min-obs", 1)
    assert result.exit_code == 0, result.output
    p = pd.read_csv(out / "profile.csv")
    assert p[["store", "n_obs", "zero_share"]].values.tolist() == [["A", 2, 0.5]]


def test_profile_matches_a_per_series_computation_on_a_shuffled_composite_key_table():
    rng = np.random.default_rng(5)
    frame = make_table(n_series=6, days=50, id_cols=("store", "item"))
    frame["ds"] = frame["ds"].astype("datetime64[ns]")
    frame.loc[rng.random(len(frame)) < 0.2, "y"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.1, "y"] = 0.0
    frame.loc[rng.random(len(frame)) < 0.05, "y"] = -1.0
    frame = frame.drop(index=rng.choice(len(frame), 40, replace=False)).sample(frac=1, random_state=1)
    profile = profile_table(frame, ["store", "item"]).set_index(["store", "item"])
    g = frame.groupby(["store", "item"])
    pd.testing.assert_series_equal(profile["n_rows"], g.size(), check_names=False, check_dtype=False)
    pd.testing.assert_series_equal(profile["n_obs"], g["y"].count(), check_names=False, check_dtype=False)
    pd.testing.assert_series_equal(profile["first"], g["ds"].min(), check_names=False, check_freq=False)
    pd.testing.assert_series_equal(profile["n_negative"], g["y"].apply(lambda y: (y < 0).sum()),
                                   check_names=False, check_dtype=False)
    pd.testing.assert_series_equal(profile["zero_share"], g["y"].apply(lambda y: (y == 0).sum() / y.count()),
                                   check_names=False)
    last_value = frame.dropna(subset=["y"]).groupby(["store", "item"])["ds"].max()
    pd.testing.assert_series_equal(profile["last_value"], last_value, check_names=False, check_freq=False)
    expected = (g["ds"].max() - g["ds"].min()).dt.days + 1
    pd.testing.assert_series_equal(profile["missing_periods"].astype(int), expected - g["y"].count(),
                                   check_names=False, check_dtype=False)


@pytest.mark.parametrize("ds,label", [
    (pd.date_range("2024-01-01", periods=30, freq="D").delete([3, 4, 9]), "D"),  # gaps: the modal step
    (pd.date_range("2024-01-07", periods=20, freq="W-SUN"), "W-SUN"),  # labels are --freq values
    (pd.date_range("2020-01-01", periods=30, freq="MS"), "MS"),
    (pd.date_range("2024-01-01", periods=50, freq="h"), "h"),
    (pd.date_range("2024-01-01", periods=10, freq="2D"), "2D"),
    # steps 1, 3, 7, 1, 7 (none holds half) beside a weekly series: off the table's W-MON grid, and no frequency
    # of its own
    (pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-05", "2024-01-12", "2024-01-13",
                       "2024-01-20"]), ""),
])
def test_profile_frequency_agrees_with_the_models_inference(ds, label):
    frame = pd.DataFrame({"unique_id": "A", "ds": ds, "y": 1.0})
    if label == "":
        weekly = pd.date_range("2024-01-01", periods=20, freq="W-MON")
        frame = pd.concat([frame, pd.DataFrame({"unique_id": ["B", "C"], "ds": [weekly, weekly], "y": 1.0})
                           .explode("ds")], ignore_index=True)
        frame["ds"] = pd.to_datetime(frame["ds"])
    profile = profile_table(frame, ["unique_id"])
    assert profile["freq"].iloc[0] == label
    if label == "":
        with pytest.raises(SeriesProblem):
            infer_freq(ds.to_numpy())
        assert triage(profile, TriageRules(min_obs=1))["verdict"].iloc[0] == "skip"
    else:
        fitted = pd.tseries.frequencies.to_offset(infer_freq(ds.to_numpy()))
        assert profile["expected_periods"].iloc[0] == len(pd.date_range(ds[0], ds[-1], freq=fitted))


def test_run_triage_fits_the_healthy_series_and_treats_the_others_as_their_verdict_says(tmp_path, kinds_csv):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(kinds_csv), "--horizon", "7", "--n-jobs", "1", "--triage",
                                 "--fallback", "mean", "--out", str(out), "--format", "csv", "-q"])
    assert result.exit_code == 0, result.output  # skipped series were triaged on purpose
    forecasts = pd.read_csv(out / "forecasts.csv")
    models = forecasts.groupby("unique_id")["model"].agg(set).to_dict()
    # --fallback serves the fallback verdicts but the intermittent one, which --intermittent-model serves (tsb)
    assert models == {"healthy": {"prophet"}, **{k: {"fallback:mean"} for k, (v, _) in EXPECTED.items()
                                                 if v == "fallback"}, "intermittent": {"fallback:tsb"}}
    assert forecasts.groupby("unique_id").size().eq(7).all()
    assert forecasts.loc[forecasts["unique_id"] == "constant", "yhat"].eq(5.0).all()
    timings = pd.read_csv(out / "timings.csv", keep_default_na=False).set_index("unique_id")
    assert timings["verdict"].to_dict() == {k: v for k, (v, _) in EXPECTED.items()}
    assert timings.loc["stale", "status"] == "skipped" and timings.loc["new", "status"] == "fallback"
    assert timings.loc["new", "error"] == EXPECTED["new"][1]
    errors = pd.read_csv(out / "errors.csv")
    assert errors.to_dict("records") == [
        {"unique_id": k, "stage": "triage", "reason": r} for k, (v, r) in sorted(EXPECTED.items()) if v == "skip"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdicts"] == {"fit": 1, "fallback": 5, "skip": 2}
    assert (summary["series_ok"], summary["series_fallback"], summary["series_skipped"],
            summary["series_failed"]) == (1, 5, 2, 0)
    assert "triage" in summary["stage_seconds"]


def test_run_triage_without_fallback_uses_seasonal_naive(tmp_path, kinds_csv):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(kinds_csv), "--horizon", "3", "--n-jobs", "1", "--triage",
                                 "--min-obs", "200", "--out", str(out), "-q"])  # min-obs 200: nothing is fitted
    assert result.exit_code == 0, result.output
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert set(forecasts["model"]) == {"fallback:seasonal-naive"}
    healthy = kinds_table().query("unique_id == 'healthy'")["y"].to_numpy()
    np.testing.assert_allclose(forecasts.loc[forecasts["unique_id"] == "healthy", "yhat"], healthy[-7:-4])


def test_a_sorted_table_profiles_as_its_shuffled_copy():
    frame = make_table(n_series=6, days=40, id_cols=("store", "item"))
    frame["ds"] = frame["ds"].astype("datetime64[ns]")
    frame.loc[frame.index % 9 == 0, "y"] = np.nan
    frame = frame.sort_values(["store", "item", "ds"], ignore_index=True)
    shuffled = frame.sample(frac=1, random_state=2)
    sorted_profile = profile_table(frame, ["store", "item"])  # neighbour comparison, no sort
    pd.testing.assert_frame_equal(sorted_profile, profile_table(shuffled, ["store", "item"]))
    keys = list(sorted_profile[["store", "item"]].itertuples(index=False, name=None))
    assert keys == sorted(set(frame[["store", "item"]].itertuples(index=False, name=None)))


@pytest.mark.parametrize("freq,expected", [("D", 291), ("W-SUN", 42), ("MS", 10)])
def test_a_given_freq_is_the_grid_gaps_are_counted_on(freq, expected):
    # 60 values scattered over 291 days: no step holds half of them, but the most common one is a day, and every
    # date lies on that grid: the table's frequency, D, unless --freq says otherwise
    rng = np.random.default_rng(0)
    days = np.sort(rng.choice(np.arange(1, 290), 58, replace=False))
    ds = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.r_[0, days, 290], unit="D")
    table = pd.DataFrame({"unique_id": "irregular", "ds": ds, "y": 1.0})
    assert profile_table(table, ["unique_id"])["freq"].iloc[0] == "D"
    profile = profile_table(table, ["unique_id"], freq)
    assert profile["freq"].iloc[0] == freq
    assert profile["expected_periods"].iloc[0] == expected
    if freq == "D":
        assert profile["missing_periods"].iloc[0] == 291 - 60
        assert triage(profile, TriageRules(), freq_given=True)["verdict"].iloc[0] == "fallback"  # gappy


def test_check_never_replaces_someone_elses_files_but_reruns_into_its_own_directory(tmp_path, table_csv):
    out = tmp_path / "out"
    out.mkdir()
    (out / "profile.csv").write_text("my,own,notes\n1,2,3\n")
    result = CliRunner().invoke(app, ["check", str(table_csv), "--out", str(out)])
    assert result.exit_code == 1
    assert f"{out}: holds files that are not a forecast check's (profile.csv); choose a new or empty --out" in \
        result.output
    assert (out / "profile.csv").read_text() == "my,own,notes\n1,2,3\n"  # untouched
    mine = tmp_path / "mine"
    for _ in range(2):  # a check run again into its own directory replaces its own profile
        result = CliRunner().invoke(app, ["check", str(table_csv), "--out", str(mine)])
        assert result.exit_code == 0, result.output
    assert list(pd.read_csv(mine / "profile.csv").columns)[-3:] == ["verdict", "reason", "rules"]
