"""`forecast plot` and `forecast report` on real runs whose keys are hostile: safe names, valid PNGs, escaped HTML."""

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app
from forecast.outputs import read_run_dir
from forecast.plot import series_filename

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = ["../x", "a/b", "<script>alert(1)</script>", "new\nline", "=SUM(1)"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished run (CSV outputs) over series with hostile keys, one of which fails."""
    tmp = tmp_path_factory.mktemp("hostile")
    frame = make_table(n_series=len(HOSTILE), days=60)
    frame["unique_id"] = frame["unique_id"].map({f"S{i}": k for i, k in enumerate(HOSTILE)})
    frame.loc[frame["unique_id"] == "a/b", "y"] = np.nan  # fails: all values missing
    path = tmp / "in.parquet"
    frame.to_parquet(path)
    out = tmp / "run"
    result = runner.invoke(app, ["run", str(path), "--horizon", "5", "--n-jobs", "1", "--out", str(out), "-q",
                                 "--format", "csv", "--uncertainty-samples", "100"])
    assert result.exit_code == 3, result.output
    return out


@pytest.fixture(scope="module")
def backtest_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bt")
    frame = make_table(n_series=2, days=80)
    frame["unique_id"] = frame["unique_id"].map({"S0": "<b>bold</b>", "S1": "plain"})
    path = tmp / "in.csv"
    frame.to_csv(path, index=False)
    out = tmp / "bt"
    result = runner.invoke(app, ["backtest", str(path), "--horizon", "7", "--windows", "1", "--n-jobs", "1",
                                 "--out", str(out), "-q", "--uncertainty-samples", "100"])
    assert result.exit_code == 0, result.output
    return out


def test_file_names_are_safe_stable_and_unique():
    names = [series_filename((k,)) for k in HOSTILE + ["a_b", "a b"]]
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9_-]+-[0-9a-f]{10}\.png", name), name
        assert "/" not in name and ".." not in name and not any(ord(c) < 32 for c in name)
    assert len(set(names)) == len(names)  # "a/b", "a_b" and "a b" read alike but are different files
    assert series_filename(("a/b",)) == series_filename(("a/b",))
    assert series_filename(("store1", "item2")) != series_filename(("store1item2",))


def test_plot_writes_one_valid_png_per_series_inside_the_plots_dir(run_dir):
    result = runner.invoke(app, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    pngs = sorted((run_dir / "plots").iterdir())
    assert sorted(p.name for p in pngs) == sorted(series_filename((k,)) for k in HOSTILE)
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["in.parquet", "run"]  # nothing escaped ../


def test_csv_outputs_are_read_back_with_the_exact_keys(run_dir):
    assert "'=SUM(1)" in (run_dir / "forecasts.csv").read_text()  # escaped for spreadsheets
    run = read_run_dir(run_dir)
    assert sorted(run.forecasts["unique_id"].unique()) == sorted(set(HOSTILE) - {"a/b"})
    assert sorted(run.timings["unique_id"]) == sorted(HOSTILE)
    assert run.errors["unique_id"].tolist() == ["a/b"]


def test_plot_selects_series_by_key_and_worst_needs_a_backtest(run_dir, backtest_dir, tmp_path):
    result = runner.invoke(app, ["plot", str(run_dir), "--series", "../x", "--out", str(tmp_path / "one")])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "one").iterdir()] == [series_filename(("../x",))]
    result = runner.invoke(app, ["plot", str(run_dir), "--worst", "2"])
    assert result.exit_code == 1 and "--worst needs a backtest" in result.stderr
    result = runner.invoke(app, ["plot", str(run_dir), "--series", "nope"])
    assert result.exit_code == 1 and "--series 'nope' is not a series" in result.stderr
    result = runner.invoke(app, ["plot", str(backtest_dir), "--worst", "1", "--out", str(tmp_path / "worst")])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(backtest_dir / "metrics.csv").query("model == 'prophet'")
    worst = scores.sort_values("mase")["unique_id"].iloc[-1]
    assert [p.name for p in (tmp_path / "worst").iterdir()] == [series_filename((worst,))]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.text, self.scripts = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "script" or any(k in ("href", "src") and not v.startswith("data:") for k, v in attrs.items()):
            self.scripts += 1

    def handle_data(self, data):
        self.text.append(data)


def _parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_report_is_self_contained_and_escapes_keys_and_errors(run_dir):
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    page = _parse(run_dir / "report.html")
    assert page.scripts == 0  # the <script> key is text, and nothing is loaded from elsewhere
    text = " ".join(page.text)
    assert "<script>alert(1)</script>" in text and "../x" in text
    assert "all 60 values are missing" in text  # the failures table
    assert "&lt;script&gt;" in (run_dir / "report.html").read_text()
    assert len(page.images) >= 4  # fit-time histogram and three forecast plots (a/b failed, still plotted)
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC


def test_report_of_a_backtest_has_the_accuracy_table(backtest_dir):
    result = runner.invoke(app, ["report", str(backtest_dir), "--plots", "1"])
    assert result.exit_code == 0, result.output
    page = _parse(backtest_dir / "report.html")
    text = " ".join(page.text)
    assert "Accuracy (backtest)" in text and "seasonal_naive" in text and "<b>bold</b>" in text
    assert "b" not in page.tags  # the key's markup was not taken as markup
    overall = json.loads((backtest_dir / "summary.json").read_text())["overall"]
    from forecast.report import _decimals

    decimals = _decimals(max(figures["mae"] for figures in overall.values()))  # one format for the MAE column
    assert f"{overall['prophet']['mae']:,.{decimals}f}" in text
    assert len(page.images) == 2  # histogram and one plot


def test_new_commands_have_help_with_an_example():
    for name in ("backtest", "plot", "report"):
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0
        assert "Example: forecast " + name in " ".join(result.output.split())


@pytest.mark.slow
def test_report_out_on_a_directory_names_it_and_the_fix(run_dir, tmp_path):
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {tmp_path}: is a directory; give the report's file name, such as "
                                     f"{tmp_path / 'report.html'}")


def test_a_key_in_a_script_the_font_lacks_plots_without_warnings():
    import warnings

    from forecast.plot import _pyplot, png_bytes

    plt = _pyplot()
    fig, ax = plt.subplots()
    ax.set_title("日本 🚀")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail the test
        assert png_bytes(fig)[:8] == PNG_MAGIC
    plt.close(fig)


@pytest.mark.slow
def test_a_series_without_forecast_says_why_and_the_report_counts_what_an_interrupted_run_did_not_do(run_dir,
                                                                                                   tmp_path):
    import json
    import shutil

    from forecast.plot import _why_none

    run = read_run_dir(run_dir)
    assert _why_none(run, ("a/b",)) == "failed"  # all its values are missing
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    timings = pd.read_csv(copy / "timings.csv", keep_default_na=False)
    timings[timings["unique_id"] != "../x"].to_csv(copy / "timings.csv", index=False)  # "../x" was never reached
    summary = json.loads((copy / "summary.json").read_text())
    summary.update(status="interrupted", series_done=summary["series_total"] - 1)
    (copy / "summary.json").write_text(json.dumps(summary))
    assert _why_none(read_run_dir(copy), ("../x",)) == "not done, the run was interrupted"
    assert runner.invoke(app, ["report", str(copy)]).exit_code == 0
    text = " ".join(" ".join(_parse(copy / "report.html").text).split())
    assert "1 series not done: the run was interrupted; --resume finishes it." in text
    assert "series_failed" in text and "series_done" in text
