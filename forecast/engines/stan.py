"""Prophet's own compiled Stan optimizer, run directly: our data/init JSON, our CSV reader, no cmdstanpy.

The arguments are the ones Prophet's CmdStanPyBackend passes (Newton when T < 100, else L-BFGS, 10,000 iterations,
Newton again if L-BFGS fails), and the numbers are written as Python writes them (shortest round-trip repr, as
stanio's json.dumps does), so the binary sees the same input and returns the same parameters as stock Prophet.
The only files are the binary's own input and output, in a private temp dir removed after each fit.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .model import Params, StanData, initial_params

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


class StanFailed(RuntimeError):
    """The Stan binary returned an error for this series."""


@lru_cache(maxsize=1)
def binary_path() -> Path:
    """prophet/stan_model/prophet_model.bin of the installed Prophet (looked up once per process: 0.7 ms)."""
    spec = importlib.util.find_spec("prophet")
    if spec is None or spec.origin is None:
        raise StanFailed("prophet is not installed")
    return Path(spec.origin).parent / "stan_model" / "prophet_model.bin"


def _vec(a: ArrayLike) -> str:
    return "[" + ",".join(map(repr, np.asarray(a, dtype=float).tolist())) + "]"


_ROW_TEXT: dict[bytes, str] = {}  # a feature row's JSON text by its bytes: series on one date grid share rows
_ROW_TEXT_MAX = 100_000


def _rows_json(X: np.ndarray) -> str:
    """The rows of X as JSON arrays, each row's text made once per process (X of a long series is most of the
    data file, and its rows are the same dates' features for every series on the grid)."""
    X = np.ascontiguousarray(X, dtype=float)
    out = []
    for row in X:
        key = row.tobytes()
        text = _ROW_TEXT.get(key)
        if text is None:
            if len(_ROW_TEXT) >= _ROW_TEXT_MAX:
                _ROW_TEXT.clear()
            text = _ROW_TEXT[key] = _vec(row)
        out.append(text)
    return ",".join(out)


def data_json(data: StanData) -> str:
    """The Stan data as JSON text, in the form stanio writes it."""
    rows = _rows_json(data.X)
    cap = data.cap if data.cap is not None else np.zeros(data.T)  # Stan reads a cap for every growth
    return (
        f'{{"T":{data.T},"S":{data.S},"K":{data.K},"tau":{data.tau!r},"trend_indicator":{data.trend_indicator},'
        f'"y":{_vec(data.y)},"t":{_vec(data.t)},"cap":{_vec(cap)},"t_change":{_vec(data.t_change)},'
        f'"s_a":{_vec(data.s_a)},"s_m":{_vec(data.s_m)},"X":[{rows}],"sigmas":{_vec(data.sigmas)}}}'
    )


def init_json(p: Params) -> str:
    return (f'{{"k":{float(p.k)!r},"m":{float(p.m)!r},"delta":{_vec(p.delta)},"beta":{_vec(p.beta)},'
            f'"sigma_obs":{float(p.sigma_obs)!r}}}')


def read_output(path: Path, S: int, K: int) -> tuple[Params, float]:
    """(params, lp__) from the optimizer's CSV (comment lines, a header, one row of values)."""
    header = values = None
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            if header is None:
                header = line
            else:
                values = line
                break
    if values is None:
        raise StanFailed("the Stan binary wrote no estimate")
    names = header.rstrip("\n").split(",")
    row = np.array(values.split(","), dtype=float)
    pos = {n: i for i, n in enumerate(names[: 4 + S + K])}  # lp__, k, m, delta.*, sigma_obs, beta.*
    d0, b0 = pos["delta.1"], pos["beta.1"]
    params = Params(k=row[pos["k"]], m=row[pos["m"]], delta=row[d0:d0 + S].copy(), sigma_obs=row[pos["sigma_obs"]],
                    beta=row[b0:b0 + K].copy())
    return params, float(row[pos["lp__"]])


def run_binary(exe: Path, workdir: str, algorithm: str, sig_figs: int | None = None) -> subprocess.CompletedProcess:
    """One run of the optimizer on workdir's data.json and init.json, writing workdir/out.csv."""
    args = [str(exe), "random", "seed=1", "data", "file=data.json", "init=init.json",
            "output", "file=out.csv", *([f"sig_figs={sig_figs}"] if sig_figs else []),
            "method=optimize", f"algorithm={algorithm}", "iter=10000"]
    return subprocess.run(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def algorithm_for(data: StanData) -> str:
    """Prophet's choice: Newton below 100 points, else L-BFGS."""
    return "newton" if data.T < 100 else "lbfgs"


def fit(data: StanData, init: Params | None = None, sig_figs: int | None = None) -> tuple[Params, float]:
    """Prophet's MAP fit of one series by its Stan binary: (params, lp__).

    Args:
        data: the Stan data.
        init: starting point; Prophet's inits by default.
        sig_figs: digits of the output; None keeps CmdStan's default (6), which is what stock Prophet reads.

    Raises:
        StanFailed: when the optimizer fails with both algorithms.
    """
    exe = binary_path()
    workdir = tempfile.mkdtemp(prefix="stan-")
    try:
        Path(workdir, "data.json").write_text(data_json(data))
        Path(workdir, "init.json").write_text(init_json(init if init is not None else initial_params(data)))
        algorithm = algorithm_for(data)
        proc = run_binary(exe, workdir, algorithm, sig_figs)
        if proc.returncode != 0 and algorithm == "lbfgs":  # Prophet's fallback on Newton
            proc = run_binary(exe, workdir, "newton", sig_figs)
        if proc.returncode != 0:
            reason = (proc.stderr or "").strip().splitlines()
            raise StanFailed(f"Stan optimizer failed (exit {proc.returncode}): {reason[-1] if reason else ''}")
        return read_output(Path(workdir, "out.csv"), data.S, data.K)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


