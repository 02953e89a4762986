"""What a person sees (issue 19): plots that keep the history readable, a report whose numbers read alike, help
that reads whole at 80 columns, and the command-line habits people bring (environment variables, --version)."""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app
from forecast.outputs import read_history, read_run_dir

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, env=None, cwd=None):
    """The real `forecast` command in a child process, as a person runs it in a pipe at 80 columns."""
    full_env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "forecast", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


# ---------------------------------------------------------------------------------------------------------------
# plots

@pytest.fixture(scope="module")
def retail_run(tmp_path_factory):
    """A run over weekly retail-like series with integer store and dept keys: (1, 1) regular, (2, 1) with two
    long gaps, (10, 1) too short for Prophet (served by the fallback), (4, 99) whose forecast is made wild
    afterwards (50,000 and -56,000 on a series that lives between 0 and 8,000)."""
    tmp = tmp_path_factory.mktemp("retail")
    rng = np.random.default_rng(3)
    ds = pd.date_range("2022-01-03", periods=120, freq="W-MON")
    t = np.arange(len(ds))
    frames = []
    for store, dept in [(1, 1), (2, 1), (10, 1), (4, 99)]:
        y = np.clip(4000 + 3000 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 300, len(ds)), 0, None)
        keep = np.arange(len(ds))
        if (store, dept) == (2, 1):
            keep = np.r_[0:30, 60:80, 110:120]
        if (store, dept) == (10, 1):
            keep = keep[-20:]
        frames.append(pd.DataFrame({"store": store, "dept": dept, "date": ds[keep], "sales": y[keep]}))
    path = tmp / "retail.csv"
    pd.concat(frames).to_csv(path, index=False)
    out = tmp / "run"
    result = runner.invoke(app, ["run", str(path), "--id-col", "store", "--id-col", "dept", "--time-col", "date",
                                 "--target-col", "sales", "--horizon", "13", "--n-jobs", "1", "--out", str(out),
                                 "-q", "--uncertainty-samples", "100"])
    assert result.exit_code == 0, result.output
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    wild = (forecasts["store"] == 4).to_numpy()
    forecasts.loc[wild, "yhat"] = np.r_[np.linspace(6000, 50000, 7), np.full(wild.sum() - 7, -56000.0)]
    forecasts.to_parquet(out / "forecasts.parquet")
    return out


def _figure(run_dir, key):
    from forecast.plot import _pyplot, series_figure

    run = read_run_dir(run_dir)
    fig = series_figure(run, read_history(run), key)
    return fig, fig.axes[0], _pyplot()


def test_a_wild_forecast_leaves_the_axis_to_the_history_and_is_marked_off_scale(retail_run):
    history = pd.read_csv(retail_run.parent / "retail.csv").query("store == 4")["sales"]
    span = history.max() - history.min()
    fig, ax, plt = _figure(retail_run, (4, 99))
    try:
        low, high = ax.get_ylim()
        # the history fills most of the axis: at most half its range beyond it on each side, plus a margin
        assert history.min() - 0.61 * span <= low <= history.min()
        assert history.max() <= high <= history.max() + 0.61 * span
        assert (high - low) < 2.3 * span  # autoscaling to 50,000 and -56,000 would be 13 times the history's range
        notes = " ".join(t.get_text() for t in ax.texts)
        assert "off scale above" in notes and "up to 50,000" in notes
        assert "off scale below" in notes and "down to -56,000" in notes
        markers = [line for line in ax.lines if line.get_marker() in ("^", "v")]
        assert {m.get_marker() for m in markers} == {"^", "v"}
        for line in markers:  # drawn at the axis' edge
            assert set(np.round(np.asarray(line.get_ydata(), dtype=float), 6)) <= {round(low, 6), round(high, 6)}
        assert ax.get_title() == "store 4, dept 99"  # the key columns' names, not "4 / 99"
    finally:
        plt.close(fig)


def test_history_line_breaks_where_periods_are_missing(retail_run):
    fig, ax, plt = _figure(retail_run, (2, 1))
    try:
        history = next(line for line in ax.lines if line.get_label() == "history")
        y = np.asarray(history.get_ydata(), dtype=float)
        assert np.isnan(y).sum() == 2  # two gaps: the line is cut twice instead of joining across them
        assert (~np.isnan(y)).sum() == 60
    finally:
        plt.close(fig)


def test_a_fallback_series_plot_names_its_model_in_its_own_colour_and_says_why(retail_run):
    fig, ax, plt = _figure(retail_run, (10, 1))
    try:
        labels = {line.get_label(): line for line in ax.lines}
        served = [name for name in labels if name.startswith("fallback:")]
        assert served, labels
        assert "--min-obs 30" in ax.get_title() and f"served by {served[0]}" in ax.get_title()
        prophet_fig, prophet_ax, _ = _figure(retail_run, (1, 1))
        prophet_line = next(line for line in prophet_ax.lines if line.get_label() == "prophet (fast)")
        assert labels[served[0]].get_color() != prophet_line.get_color()
        plt.close(prophet_fig)
    finally:
        plt.close(fig)


def test_plot_worst_titles_say_which_metric_put_the_series_there(tmp_path):
    path = tmp_path / "in.csv"
    make_table(n_series=3, days=80).to_csv(path, index=False)
    out = tmp_path / "bt"
    assert runner.invoke(app, ["backtest", str(path), "--horizon", "7", "--windows", "1", "--n-jobs", "1", "--out",
                               str(out), "-q", "--uncertainty-samples", "50"]).exit_code == 0
    from forecast.plot import worst_reason, worst_series

    run = read_run_dir(out)
    key = worst_series(run, 1)[0]
    mase = run.metrics.query("model == 'prophet'")["mase"].max()
    assert worst_reason(run, key).startswith(f"worst by MASE {mase:.2f}, WAPE ")
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(zip(metrics["model"], metrics["engine"].fillna(""))) == {("prophet", "fast"), ("seasonal_naive", "")}


# ---------------------------------------------------------------------------------------------------------------
# the report

class _Tables(HTMLParser):
    """Every table of a page: its headers and its rows of cell texts; and the page's text."""

    def __init__(self):
        super().__init__()
        self.tables, self.text, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"headers": [], "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = (tag, [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            kind, parts = self._cell
            text = "".join(parts)
            if kind == "th":
                self.tables[-1]["headers"].append(text)
            else:
                self.tables[-1]["rows"][-1].append(text)
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell[1].append(data)


def _tables(path):
    page = _Tables()
    page.feed(Path(path).read_text(encoding="utf-8"))
    for table in page.tables:
        table["rows"] = [r for r in table["rows"] if r]
    return page


_NUMBER = re.compile(r"^-?[\d,]+(\.(\d+))?( %)?$")


def _shape(cell: str):
    """A number's format: its count of decimals and whether it is a percentage; None for text or blank."""
    m = _NUMBER.match(cell)
    return None if m is None else (len(m.group(2) or ""), bool(m.group(3)))


def test_report_tables_use_one_number_format_per_column_and_name_the_engine(tmp_path):
    frame = make_table(n_series=12, days=80)
    frame["y"] = frame["y"] * np.where(frame["unique_id"].isin(["S3", "S7"]), 2000.0, 1.0)  # 1e4 beside 20
    frame.loc[frame.groupby("unique_id").tail(3).index[:3], "y"] = 0.0  # zero actuals in a window
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "bt"
    assert runner.invoke(app, ["backtest", str(path), "--horizon", "7", "--windows", "2", "--n-jobs", "1", "--out",
                               str(out), "-q", "--uncertainty-samples", "50"]).exit_code == 0
    assert runner.invoke(app, ["report", str(out), "--plots", "1"]).exit_code == 0
    page = _tables(out / "report.html")
    text = " ".join(page.text)
    assert "e+" not in text and "e-0" not in text
    checked = 0
    for table in page.tables:
        for i, header in enumerate(table["headers"]):
            cells = [r[i] for r in table["rows"] if i < len(r) and r[i] != ""]
            shapes = {_shape(c) for c in cells}
            if None in shapes:
                continue  # a text column
            assert len(shapes) == 1, (header, cells)
            checked += 1
            if header.split()[0] in ("WAPE", "sMAPE", "MAPE", "coverage"):
                assert shapes.pop()[1], (header, cells)  # a percentage
    assert checked >= 20
    accuracy = next(t for t in page.tables if t["headers"][:4] == ["model", "n", "WAPE", "MASE"])
    assert [r[0] for r in accuracy["rows"]] == ["prophet (fast)", "seasonal_naive"]
    worst = next(t for t in page.tables if t["headers"][:2] == ["series", "model"] and "MASE" in t["headers"])
    assert {r[1] for r in worst["rows"]} == {"prophet (fast)"}
    assert "sMAPE \u26a0" in accuracy["headers"] and "Judge by WAPE and MASE" in text


def test_report_lists_fallback_series_with_their_model_in_natural_key_order(tmp_path):
    frame = make_table(n_series=11, days=60)
    short = frame["unique_id"].isin(["S10", "S2", "S1"])
    frame = frame[~short | (frame["ds"] >= frame["ds"].max() - pd.Timedelta(days=9))]  # 10 values: fallback
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "run"
    assert runner.invoke(app, ["run", str(path), "--horizon", "5", "--n-jobs", "1", "--out", str(out), "-q",
                               "--uncertainty-samples", "50"]).exit_code == 0
    assert runner.invoke(app, ["report", str(out), "--plots", "0"]).exit_code == 0
    page = _tables(out / "report.html")
    table = next(t for t in page.tables if t["headers"][:3] == ["series", "status", "served by"])
    assert [r[0] for r in table["rows"]] == ["S1", "S2", "S10"]
    assert {r[1] for r in table["rows"]} == {"fallback"}
    assert all(r[2].startswith("fallback:") and "--min-obs 30" in r[4] for r in table["rows"])
    assert "Series without a Prophet forecast (3: 0 failed, 3 fallback, 0 skipped)" in " ".join(page.text)
    run_table = page.tables[0]
    assert ["model", "prophet (fast)"] in run_table["rows"]


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium(retail_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    assert runner.invoke(app, ["report", str(retail_run), "--plots", "4"]).exit_code == 0
    shot = tmp_path / "report.png"
    profile = tmp_path / "profile"
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={shot}",
                             "--window-size=1280,2000", (retail_run / "report.html").as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert shot.exists(), result.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels[..., :3].std() > 0.05  # text, tables and plots, not a blank page
    # the top of the page is drawn: the dark heading text sits in the first 100 rows
    assert (pixels[:100, :, :3].mean(axis=2) < 0.3).any()


# ---------------------------------------------------------------------------------------------------------------
# the command line

COMMANDS = ("run", "backtest", "check", "plot", "report")


@pytest.mark.slow
def test_help_reads_whole_at_80_columns_in_a_pipe():
    command = typer.main.get_command(app)
    for name in COMMANDS:
        result = _cli(name, "--help")
        assert result.returncode == 0, result.stderr
        text = result.stdout
        assert max(len(line) for line in text.splitlines()) <= 80
        assert "\u2026" not in text and "\u256d" not in text  # no cut names, no boxes
        tokens = set(text.split())
        for param in command.commands[name].params:
            for opt in param.opts + param.secondary_opts:
                if opt.startswith("-"):
                    assert opt in tokens or opt + "," in tokens, (name, opt)
        assert not re.search(r"\w-\n", text), name  # no option (or word) split after its hyphen
        assert not re.search(r"\w \.(\s|$)| ,", text)  # no space left where markup was eaten ("directory .")
    assert "Output directory [default: outputs/<UTC timestamp>]." in " ".join(_cli("run", "--help").stdout.split())


def test_help_names_the_environment_variables_and_version_is_an_option():
    text = " ".join(runner.invoke(app, ["run", "--help"], terminal_width=80).output.split())
    for var in ("FORECAST_N_JOBS", "FORECAST_OUT", "FORECAST_ENGINE", "FORECAST_LOG_FORMAT"):
        assert f"[env var: {var}" in text
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and re.fullmatch(r"forecast \S+, prophet \S+, python \S+\n", result.output)
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


def test_environment_variables_set_options_and_the_command_line_wins(tmp_path, table_csv):
    out = tmp_path / "from-env"
    result = runner.invoke(app, ["run", str(table_csv), "--horizon", "3", "-q", "--uncertainty-samples", "50"],
                           env={"FORECAST_N_JOBS": "1", "FORECAST_OUT": str(out), "FORECAST_ENGINE": "fast"})
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_jobs"] == 1 and summary["config"]["out_dir"] == str(out)
    other = tmp_path / "from-flag"
    result = runner.invoke(app, ["run", str(table_csv), "--horizon", "3", "-q", "--out", str(other),
                                 "--uncertainty-samples", "50"], env={"FORECAST_OUT": str(out)})
    assert result.exit_code == 0, result.output
    assert (other / "summary.json").exists()
    bad = runner.invoke(app, ["run", str(table_csv), "--horizon", "3"], env={"FORECAST_ENGINE": "turbo"})
    assert bad.exit_code == 2 and "turbo" in bad.output


def test_every_missing_column_is_reported_in_one_message_with_its_suggestion(write_csv):
    path = write_csv("Store,Dept,Date,Weekly_Sales\n1,1,2024-01-01,5\n", "retail.csv")
    result = runner.invoke(app, ["check", str(path), "--id-col", "store", "--id-col", "dpt"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "4 columns not found" in message
    for fix in ("--id-col Store", "--id-col Dept", "--time-col Date", "--target-col Weekly_Sales"):
        assert f"pass {fix}" in message, message


def test_duplicate_rows_name_the_column_that_would_make_them_unique(write_csv):
    frame = make_table(n_series=4, days=20, id_cols=("store", "item"))  # 2 stores x 2 items
    path = write_csv(frame, "two_keys.csv")
    result = runner.invoke(app, ["check", str(path), "--id-col", "store"])
    assert result.exit_code == 1
    assert "40 duplicate (store, ds) row(s)" in result.stderr
    assert "every row is unique with --id-col item added to the key" in result.stderr
    assert "pass --duplicates sum, mean or last" in result.stderr


def test_an_environment_variable_beats_the_job_file_and_loses_to_the_command_line(tmp_path, table_csv):
    import json

    job = tmp_path / "job.toml"
    job.write_text(f'[input]\npath = "{table_csv}"\n[model]\nhorizon = 3\nuncertainty_samples = 50\n'
                   f'[run]\nn_jobs = 2\n[output]\ndir = "{tmp_path / "from-file"}"\n')
    result = runner.invoke(app, ["run", "--config", str(job), "-q"],
                           env={"FORECAST_N_JOBS": "1", "FORECAST_OUT": str(tmp_path / "from-env")})
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "from-env" / "summary.json").read_text())["config"]
    assert config["n_jobs"] == 1 and not (tmp_path / "from-file").exists()
    result = runner.invoke(app, ["run", "--config", str(job), "-q", "--n-jobs", "2", "--out", str(tmp_path / "flag")],
                           env={"FORECAST_N_JOBS": "1"})
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "flag" / "summary.json").read_text())["config"]["n_jobs"] == 2
