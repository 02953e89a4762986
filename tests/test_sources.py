"""Input sources and `forecast.forecast(df)`: a table in memory goes through the run a file does, with the same
checks and the same forecasts, and leaves no files unless asked."""

import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest
from conftest import make_table
from typer.testing import CliRunner

import forecast
from forecast.checkpoint import make_manifest, manifest_difference
from forecast.cli import app
from forecast.errors import ConfigError, InputError
from forecast.outputs import read_history, read_run_dir
from forecast.sources import FileSource, Source, open_source, read_table, register_source, reopen_source
from forecast.sources.frames import FrameSource

ARGS = dict(horizon=5, id_cols=["store", "item"], time_col="date", target_col="sales", seed=7, n_jobs=1)


def two_key_table() -> pd.DataFrame:
    frame = make_table(n_series=4, days=60, id_cols=("store", "item"))
    return frame.rename(columns={"ds": "date", "y": "sales"})


def test_open_source_picks_by_what_it_is_given(tmp_path):
    frame = two_key_table()
    assert isinstance(open_source(tmp_path / "t.csv"), FileSource)
    assert isinstance(open_source(str(tmp_path / "t.csv")), FileSource)
    assert open_source(frame).label == "DataFrame"
    assert open_source(pa.Table.from_pandas(frame)).label == "Arrow table"
    source = open_source(frame)
    assert open_source(source) is source
    with pytest.raises(InputError, match="not an input forecast can read"):
        open_source(42)


def test_a_new_source_is_one_class_and_one_registration():
    class Rows(Source):
        kind, label, path, keys_as_text = "rows", "rows", None, False

        def __init__(self, rows):
            self.frame = pd.DataFrame(rows.items, columns=["unique_id", "ds", "y"])

        @classmethod
        def accepts(cls, obj):
            return type(obj).__name__ == "RowList"

        @classmethod
        def reopen(cls, record):
            raise InputError("rows cannot be read again")

        def columns(self):
            return list(self.frame.columns)

        def read(self, columns, id_cols, time_col, filters=None):
            return self.frame[list(columns)].copy()

        def read_as_text(self, columns):
            return None

        def identity(self):
            return {"path": "rows", "size": len(self.frame), "sha256": ""}

        def record(self):
            return {"kind": "rows"}

    class RowList:
        items = [("a", "2024-01-01", 1.0), ("a", "2024-01-02", 2.0)]

    register_source("rows", Rows)
    try:
        table, _ = read_table(RowList(), ["unique_id"], "ds", "y")
        assert table["y"].tolist() == [1.0, 2.0]
        with pytest.raises(InputError, match="cannot be read again"):
            reopen_source({"kind": "rows"})
    finally:
        from forecast.sources import base

        del base._REGISTRY["rows"], base._SCHEMES["rows"]


def test_a_source_for_uris_is_imported_only_for_its_own_scheme(tmp_path):
    # a database source (and its driver) must cost nothing to a run of a CSV: registered with its scheme, it is
    # not imported for a path, nor for another scheme; for its own it is (here: a module that does not exist)
    from forecast.sources import base

    register_source("nodb", "forecast_no_such_module:NoSource", schemes=("nodb",))
    try:
        (tmp_path / "t.csv").write_text("unique_id,ds,y\na,2024-01-01,1\n")
        assert isinstance(open_source(str(tmp_path / "t.csv")), FileSource)
        assert isinstance(open_source("otherdb://host/t.csv"), FileSource)  # the file source still reads the rest
        with pytest.raises(ModuleNotFoundError, match="forecast_no_such_module"):
            open_source("nodb://host/db")
    finally:
        del base._REGISTRY["nodb"], base._SCHEMES["nodb"]


def test_a_dataframe_and_an_arrow_table_are_read_as_the_same_csv_is(tmp_path):
    frame = two_key_table()
    frame.to_csv(tmp_path / "t.csv", index=False)
    by_file, _ = read_table(tmp_path / "t.csv", ["store", "item"], "date", "sales")
    for given in (frame, pa.Table.from_pandas(frame), frame.astype({"date": str})):
        table, _ = read_table(given, ["store", "item"], "date", "sales")
        pd.testing.assert_frame_equal(table.astype({"store": str, "item": str}),
                                      by_file.astype({"store": str, "item": str}))


@pytest.mark.parametrize("as_arrow", [False, True])
def test_a_bad_table_in_memory_is_the_same_one_line_error_naming_it(as_arrow):
    label = "Arrow table" if as_arrow else "DataFrame"
    wrap = (lambda f: pa.Table.from_pandas(f, preserve_index=False)) if as_arrow else (lambda f: f)
    frame = two_key_table()
    with pytest.raises(InputError, match=rf"^{label}: time column 'day' not found; columns are: store, item, date, "
                                         r"sales; did you mean 'date'\? pass --time-col date$"):
        forecast.forecast(wrap(frame), **{**ARGS, "time_col": "day"})
    doubled = pd.concat([frame, frame.head(2)], ignore_index=True)
    with pytest.raises(InputError, match=rf"^{label}: 2 duplicate \(store, item, date\) row\(s\), e\.g\. "
                                         r"store=store0, item=item0, date=2024-01-01 00:00:00"):
        forecast.forecast(wrap(doubled), **ARGS)
    text = frame.astype({"sales": str})
    text.loc[3, "sales"] = "n/a?"
    with pytest.raises(InputError, match=rf"^{label}: column 'sales' has a value that is not a number: 'n/a\?' "
                                         r"at row 4"):
        forecast.forecast(wrap(text), **ARGS)


def test_unknown_option_is_refused_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"unknown option 'sead'; did you mean 'seed'\?"):
        forecast.forecast(two_key_table(), **{**ARGS, "sead": 1})


def test_forecast_of_a_dataframe_equals_the_cli_run_of_its_csv_and_leaves_no_files(tmp_path, monkeypatch):
    frame = two_key_table()
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = CliRunner().invoke(app, ["run", str(tmp_path / "t.csv"), "--horizon", "5", "--id-col", "store",
                                      "--id-col", "item", "--time-col", "date", "--target-col", "sales", "--seed",
                                      "7", "--n-jobs", "1", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    by_cli = read_run_dir(tmp_path / "cli").forecasts.drop(columns="run_id")

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for given in (frame, pa.Table.from_pandas(frame)):
        records = forecast.forecast_with_records(given, **ARGS)
        pd.testing.assert_frame_equal(records.forecasts.drop(columns="run_id"), by_cli)
        assert records.summary["status"] == "ok" and records.summary["input"] == open_source(given).label
        assert records.timings["status"].tolist() == ["ok"] * 4 and records.errors.empty
        assert records.out_dir is None
    assert os.listdir(scratch) == [] and os.listdir(cwd) == []
    plain = forecast.forecast(frame, **ARGS)
    pd.testing.assert_frame_equal(plain.drop(columns="run_id"), by_cli)

    # asked for files: they are a run's, and plot/report know the history cannot be read again
    records = forecast.forecast_with_records(frame, out=tmp_path / "kept", **ARGS)
    assert records.out_dir == tmp_path / "kept"
    summary = json.loads((tmp_path / "kept" / "summary.json").read_text())
    assert summary["input"] == "DataFrame" and summary["source"]["kind"] == "frame"
    with pytest.raises(InputError, match=r"summary\.json: the run's input was a DataFrame in memory, which cannot "
                                         "be read again"):
        read_history(read_run_dir(tmp_path / "kept"))


def test_manifest_identity_of_a_file_is_as_before_and_of_a_frame_is_its_content(tmp_path):
    frame = two_key_table()
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = (tmp_path / "t.csv").read_bytes()
    import hashlib

    assert make_manifest(tmp_path / "t.csv", {}, 4)["input"] == {
        "path": str((tmp_path / "t.csv").resolve()), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    same, other = make_manifest(frame.copy(), {}, 4), make_manifest(frame, {}, 4)
    assert manifest_difference(same, other) is None
    changed = frame.copy()
    changed.loc[0, "sales"] += 1
    assert "the input's content differs" in manifest_difference(same, make_manifest(changed, {}, 4))
    arrow = pa.Table.from_pandas(frame)
    assert manifest_difference(make_manifest(arrow, {}, 4), make_manifest(pa.Table.from_pandas(frame), {}, 4)) is None


def test_file_record_reopens_from_another_directory_and_old_summaries_still_read(tmp_path, monkeypatch):
    frame = make_table(n_series=2, days=20)
    frame.to_csv(tmp_path / "t.csv", index=False)
    monkeypatch.chdir(tmp_path)
    record = open_source("t.csv").record()
    assert record == {"kind": "file", "given": "t.csv", "path": str(tmp_path / "t.csv")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert reopen_source(record).columns() == ["unique_id", "ds", "y"]
    with pytest.raises(InputError, match="was a pipe or standard input, which cannot be read again"):
        reopen_source({"kind": "file", "given": "-"})
    with pytest.raises(InputError, match=r"the run's input gone\.csv is not there any more"):
        reopen_source({"kind": "file", "given": "gone.csv"})
    assert isinstance(FrameSource(frame), Source)


def test_a_dataframe_run_resumes_by_its_content_and_reports_without_plots(tmp_path):
    from forecast.errors import OutputExistsError
    from forecast.report import build_report

    frame = two_key_table()
    first = forecast.forecast_with_records(frame, out=tmp_path / "run", **ARGS)
    again = forecast.forecast_with_records(frame.copy(), out=tmp_path / "run", resume=True, **ARGS)
    pd.testing.assert_frame_equal(again.forecasts, first.forecasts)
    changed = frame.assign(sales=frame["sales"] + 1)
    with pytest.raises(OutputExistsError, match="the input's content differs"):
        forecast.forecast(changed, out=tmp_path / "run", resume=True, **ARGS)
    page = build_report(tmp_path / "run", plots=2).read_text()
    assert "No plots:" in page and "was a DataFrame in memory, which cannot be read again" in page


def test_a_run_without_files_is_named_by_its_time_or_its_run_id():
    frame = two_key_table()
    assert forecast.forecast(frame, **ARGS)["run_id"].str.fullmatch(r"\d{8}T\d{6}Z").all()
    assert (forecast.forecast(frame, run_id="nightly", **ARGS)["run_id"] == "nightly").all()


@pytest.mark.slow
def test_a_script_without_a_main_guard_can_call_forecast_with_worker_processes(tmp_path):
    # spawn imports the main script again in each worker; a script that calls forecast.forecast at its top level
    # (as the README's example reads) would start a run in every worker, and every worker would die at start
    two_key_table().to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "script.py").write_text(
        "import pandas as pd\nimport forecast\n\n"
        "df = pd.read_csv('t.csv')\n"
        "out = forecast.forecast(df, horizon=3, id_cols=['store', 'item'], time_col='date', target_col='sales', "
        "n_jobs=2, min_obs=2)\n"
        "print(len(out), out['model'].unique().tolist())\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n_series = two_key_table().groupby(["store", "item"]).ngroups
    assert proc.stdout.split()[0] == str(3 * n_series) and "prophet" in proc.stdout
    assert "Traceback" not in proc.stderr
