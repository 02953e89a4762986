"""What `--backend spark` refuses, each in one line before anything is written; no Spark needed (fast)."""

import sys
from pathlib import Path

import pytest
from conftest import make_table

from forecast.backtest import run_backtest
from forecast.config import BacktestConfig, ForecastConfig, ModelOptions, TriageRules
from forecast.errors import BackendError, ConfigError
from forecast.runner import run_forecast

MODEL = ModelOptions(horizon=3)


@pytest.mark.parametrize("options, message", [
    ({"triage": TriageRules()}, "--triage cannot be used with --backend spark"),
    ({"resume": True}, "--resume cannot be used with --backend spark"),
    ({"fit_timeout": 5.0}, "--fit-timeout cannot be used with --backend spark"),
    ({"output_format": "csv"}, "--format csv cannot be used with --backend spark"),
    ({"scheduler": "tcp://127.0.0.1:8786"}, "--scheduler cannot be used with --backend spark"),
    ({"model": ModelOptions(horizon=3, levels=(80.0,))}, "--level/--quantile cannot be used with --backend spark"),
    ({"to_db": "sqlite:///x.db"}, "--to-db cannot be used with --backend spark"),
])
def test_what_spark_cannot_honour_is_refused_with_the_configuration(options, message):
    with pytest.raises(ConfigError, match=message):
        ForecastConfig(**{"model": MODEL, "backend": "spark", **options})


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_a_master_is_a_spark_option_only(backend):
    with pytest.raises(ConfigError, match="--master can only be used with --backend spark"):
        ForecastConfig(model=MODEL, backend=backend, master="spark://127.0.0.1:7077")


def test_without_pyspark_the_run_says_how_to_install_it(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # as if not installed: importing it raises ImportError
    table = tmp_path / "t.csv"
    make_table(n_series=1, days=20).to_csv(table, index=False)
    out = tmp_path / "out"
    with pytest.raises(BackendError, match=r"needs pyspark: pip install 'forecast\[spark\]'"):
        run_forecast(table, ForecastConfig(model=MODEL, backend="spark", out_dir=out))
    assert not out.exists()


def test_a_backtest_on_spark_is_refused(tmp_path: Path):
    table = tmp_path / "t.csv"
    make_table(n_series=1, days=20).to_csv(table, index=False)
    out = tmp_path / "bt"
    config = BacktestConfig(run=ForecastConfig(model=MODEL, backend="spark", out_dir=out), windows=1)
    with pytest.raises(ConfigError, match="runs `forecast run` only"):
        run_backtest(table, config)
    assert not out.exists()
