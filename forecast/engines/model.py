"""Prophet's model for one series in numpy: its preprocessing (the Stan data), its objective, its prediction.

Everything here reproduces Prophet 1.5 (forecaster.py and prophet.stan) operation by operation, so that the Stan
data equal `Prophet().preprocess(df)` and the prediction equals `Prophet.predict` for the same parameters:

- scaling "absmax" (floor 0, y_scale = max|y|, 1 when that is 0), t = (ds - start) / (end - start);
- changepoints: 25 (fewer for short series) at evenly spaced history rows in the first 80 %; a dummy one at 0
  when there are none;
- the auto seasonalities (yearly 10, weekly 3, daily 4 Fourier orders) with Prophet's on/off rules, or a single
  column of zeros when there are none;
- holidays: a holidays file's rows (all of them, each with its window of days) and the country's holidays in the
  history's years (--holidays): one indicator column per holiday name and day offset ("<name>_delim_+1"), sorted
  by that name as Prophet sorts them, prior scale 10, in the seasonality mode; at prediction the same columns;
- extra regressors (--regressor), after those, in the order given: standardised by the history's mean and
  standard deviation unless binary (0/1) or constant, prior scale 10, in the seasonality mode;
- logistic growth: y and the cap measured from the floor (0 without --floor-col) and scaled by max|y - floor|;
  the trend cap * inv_logit((k + A delta) (t - (m + A gamma))), whose exponent, unrolled, is
  k (t - m) + sum_j delta_j (t - t_change_j)+ (the linear trend's hinges, with the offset -k m), which is how it is
  computed here; Prophet's init through the first and last points' logits;
- MAP inits: linear growth through the first and last points, flat growth at the mean, sigma_obs 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from ..config import ModelOptions
from ..levels import band_percents

N_CHANGEPOINTS = 25
CHANGEPOINT_RANGE = 0.8
_DAY_NS = 86_400 * 10**9
_AUTO = {"yearly": (365.25, 10), "weekly": (7.0, 3), "daily": (1.0, 4)}
TREND_INDICATOR = {"linear": 0, "logistic": 1, "flat": 2}
HOLIDAYS_PRIOR_SCALE = 10.0  # Prophet's default holidays_prior_scale


@dataclass
class StanData:
    """Prophet's Stan data for one series, plus what prediction needs to map back to the data's scale."""

    y: np.ndarray  # scaled
    t: np.ndarray
    t_change: np.ndarray
    X: np.ndarray  # (T, K)
    sigmas: np.ndarray
    s_a: np.ndarray
    s_m: np.ndarray
    tau: float
    trend_indicator: int
    y_scale: float
    start_ns: int
    t_scale_ns: int
    seasonalities: list[tuple[float, int]] = field(default_factory=list)  # (period, order) in Prophet's order
    country: str | None = None  # --holidays
    holiday_table: tuple = ()  # --holidays-file rows: (name, date, lower_window, upper_window)
    holiday_keys: list[str] = field(default_factory=list)  # the holiday columns, in order ("<name>_delim_+0")
    holiday_names: list[str] = field(default_factory=list)  # the holidays seen in training
    regressors: list[tuple[str, float, float]] = field(default_factory=list)  # (name, mu, std) in column order
    cap: np.ndarray | None = None  # logistic growth: the cap over the history, scaled as y (from the floor)
    cap_col: str | None = None  # logistic growth: the input columns of the cap and the floor (None: floor 0)
    floor_col: str | None = None

    @property
    def T(self) -> int:
        return len(self.y)

    @property
    def S(self) -> int:
        return len(self.t_change)

    @property
    def K(self) -> int:
        return self.X.shape[1]

    def changepoint_matrix(self) -> np.ndarray:
        """A[i, j] = 1 when t[i] >= t_change[j] (the Stan program's get_changepoint_matrix)."""
        return (self.t[:, None] >= self.t_change[None, :]).astype(float)


def fourier(ds_ns: np.ndarray, seasonalities: list[tuple[float, int]]) -> np.ndarray:
    """Prophet's Fourier features (sin, cos per order) for every seasonality, side by side; one zeros column if none.

    Series on one regular date grid (daily, weekly, ... with no gaps) share their features: they are rows of one
    read-only matrix per (step, seasonalities) that this process keeps for the span of the grid seen so far, so
    the thousands of series of a retail table, which end on the same day, compute them once, not once each.
    """
    if not seasonalities:
        return np.zeros((len(ds_ns), 1))
    ds_ns = np.asarray(ds_ns).astype(np.int64)
    step = regular_step(ds_ns)
    if step is not None:
        return _grid_features(int(ds_ns[0]), step, len(ds_ns), tuple(seasonalities))
    return _fourier_at(ds_ns, seasonalities)


def regular_step(ds_ns: np.ndarray) -> int | None:
    """The step (ns) of ascending int64 timestamps that are evenly spaced with no gap; None when they are not (or
    there are fewer than 2)."""
    if len(ds_ns) < 2:
        return None
    step = int(ds_ns[1] - ds_ns[0])
    if step > 0 and int(ds_ns[-1] - ds_ns[0]) == step * (len(ds_ns) - 1) and (np.diff(ds_ns) == step).all():
        return step
    return None


_GRID_CACHE: dict[tuple, tuple[int, np.ndarray]] = {}  # (step, seasonalities, phase) -> (first ns, features)
_GRID_MAX_ROWS = 50_000  # a cached grid spans at most this many steps (137 years of days)


def _grid_features(start: int, step: int, n: int, seasonalities: tuple) -> np.ndarray:
    """The features of `n` points from `start` every `step` ns, as rows of the cached grid's matrix (a view)."""
    key = (step, seasonalities, start % step)
    first, X = _GRID_CACHE.get(key, (start, np.empty((0, 0))))
    lo, hi = min(first, start), max(first + step * len(X), start + step * n)
    if lo < first or hi > first + step * len(X):  # extend the grid to cover this series as well
        if (hi - lo) // step > _GRID_MAX_ROWS:
            return _fourier_at(start + step * np.arange(n, dtype=np.int64), list(seasonalities))
        first, X = lo, _fourier_at(lo + step * np.arange((hi - lo) // step, dtype=np.int64), list(seasonalities))
        X.flags.writeable = False  # shared by every series on the grid
        _GRID_CACHE[key] = (first, X)
    i = (start - first) // step
    return X[i:i + n]


def _fourier_at(ds_ns: np.ndarray, seasonalities: list[tuple[float, int]]) -> np.ndarray:
    days = ds_ns.astype(np.int64) / 1e9 / (24 * 60 * 60)  # pandas' total_seconds() / 86400
    x_T = np.pi * 2 * days
    cols = []
    for period, order in seasonalities:
        for i in range(order):
            c = (i + 1) / period * x_T
            cols.append(np.sin(c))
            cols.append(np.cos(c))
    return np.column_stack(cols)


def _holiday_key(name: str, offset: int) -> str:
    return f"{name}_delim_{'+' if offset >= 0 else '-'}{abs(offset)}"


def holiday_features(ds_ns: np.ndarray, country: str | None, table: tuple = (), keys: list[str] | None = None,
                     names: list[str] | None = None) -> tuple[np.ndarray, list[str], list[str]]:
    """Prophet's holiday indicator columns at ds (make_holiday_features): (X, column keys, holiday names).

    The holidays are every row of `table` (name, date, lower_window, upper_window) and the country's holidays in
    the years of ds; each row marks its date plus each offset of its window, in the column "<name>_delim_<+k>".
    For training (`keys` None) the columns are every key, sorted; for prediction pass the training `keys` and
    `names`: the holidays of other names are left out, and a column none of these dates has is zeros.
    """
    import pandas as pd

    dates = pd.DatetimeIndex(ds_ns)
    rows = [(int(pd.Timestamp(day).normalize().value), name, int(lw), int(uw)) for name, day, lw, uw in table]
    if country:
        days, country_names = _holidays(country, tuple(sorted({int(y) for y in dates.year})))
        rows += [(int(d), n, 0, 0) for d, n in zip(days, country_names)]
    if names is not None:
        trained = set(names)
        rows = [r for r in rows if r[1] in trained]
    marked: dict[str, list[int]] = {}
    for day, name, lw, uw in rows:
        for offset in range(lw, uw + 1):
            marked.setdefault(_holiday_key(name, offset), []).append(day + offset * _DAY_NS)
    if keys is None:
        keys, names = sorted(marked), list(dict.fromkeys(r[1] for r in rows))
    days = dates.normalize().as_unit("ns").asi8
    X = np.zeros((len(dates), len(keys)))
    for j, key in enumerate(keys):
        if key in marked:
            X[np.isin(days, marked[key]), j] = 1.0
    return X, list(keys), list(names)


@lru_cache(maxsize=64)
def _holidays(country: str, years: tuple[int, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """(days as ns, names) of Prophet's make_holidays_df for a country and years; series share them."""
    import pandas as pd
    from prophet.make_holidays import make_holidays_df

    frame = make_holidays_df(year_list=list(years), country=country)
    return pd.DatetimeIndex(frame["ds"]).normalize().as_unit("ns").asi8, tuple(frame["holiday"])


def features(ds_ns: np.ndarray, data: "StanData", extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The feature matrix X at ds for a fitted series: Fourier terms, holidays, then the regressors (their values
    at ds in `extra`, by name), or the zeros column when there are none."""
    parts = [fourier(ds_ns, data.seasonalities)] if data.seasonalities else []
    if data.holiday_keys:
        parts.append(holiday_features(ds_ns, data.country, data.holiday_table, data.holiday_keys,
                                      data.holiday_names)[0])
    for name, mu, std in data.regressors:
        parts.append(((np.asarray(extra[name], dtype=float) - mu) / std)[:, None])
    return np.column_stack(parts) if parts else np.zeros((len(ds_ns), 1))


def regressor_scale(x: np.ndarray) -> tuple[float, float]:
    """(mu, std) that Prophet standardises a regressor's history by: none (0, 1) when it is binary (0/1 only) or
    constant, else its mean and sample standard deviation."""
    values = set(np.unique(x).tolist())
    if len(values) < 2 or values == {0.0, 1.0}:
        return 0.0, 1.0
    return float(np.mean(x)), float(np.std(x, ddof=1))


def _order(toggle: str, disabled: bool, default: int) -> int:
    if toggle == "auto":
        return 0 if disabled else default
    return default if toggle == "on" else 0


def seasonalities_for(ds_ns: np.ndarray, opts: ModelOptions) -> list[tuple[float, int]]:
    """Prophet's set_auto_seasonalities: which of yearly, weekly, daily are on, with their Fourier orders."""
    span = int(ds_ns[-1] - ds_ns[0])
    steps = np.diff(ds_ns.astype(np.int64))
    steps = steps[steps != 0]
    min_dt = int(steps.min()) if len(steps) else 0
    rules = {
        "yearly": span < 730 * _DAY_NS,
        "weekly": span < 14 * _DAY_NS or min_dt >= 7 * _DAY_NS,
        "daily": span < 2 * _DAY_NS or min_dt >= _DAY_NS,
    }
    out = []
    for name in ("yearly", "weekly", "daily"):
        period, default = _AUTO[name]
        order = _order(getattr(opts, f"{name}_seasonality"), rules[name], default)
        if order > 0:
            out.append((period, order))
    return out


def stan_data(ds: np.ndarray, y: np.ndarray, opts: ModelOptions, extra: dict[str, np.ndarray] | None = None) -> StanData:
    """Prophet's Stan data for one series (ds ascending and unique, y without NaN), as `Prophet.preprocess` makes it.

    `extra`: each of opts.regressors' values at ds (finite), by name, and with logistic growth those of the
    cap and floor columns (opts.cap_col, opts.floor_col).

    Raises:
        ValueError: with logistic growth, for a cap not above the floor (Prophet refuses it too).
    """
    ds_ns = np.asarray(ds, dtype="datetime64[ns]").astype(np.int64)
    y = np.asarray(y, dtype=float)
    logistic = opts.growth == "logistic"
    floor = np.zeros(len(y))
    if logistic:
        cap, floor = cap_floor(extra or {}, opts.cap_col, opts.floor_col, len(y), ds_ns)
    y_scale = float(np.abs(y - floor).max())
    if y_scale == 0:
        y_scale = 1.0
    start, t_scale = int(ds_ns[0]), int(ds_ns[-1] - ds_ns[0])
    t = (ds_ns - start) / t_scale
    T = len(y)
    hist_size = int(np.floor(T * CHANGEPOINT_RANGE))
    n_cp = min(N_CHANGEPOINTS, hist_size - 1)
    if n_cp > 0:
        idx = np.linspace(0, hist_size - 1, n_cp + 1).round().astype(int)[1:]
        t_change = np.sort((ds_ns[idx] - start) / t_scale)
    else:
        t_change = np.array([0.0])
    seas = seasonalities_for(ds_ns, opts)
    parts, sigmas = [], []
    if seas:
        parts.append(fourier(ds_ns, seas))
        sigmas += [float(opts.seasonality_prior_scale)] * parts[-1].shape[1]
    keys, names = [], []
    if opts.holidays or opts.holiday_table:
        H, keys, names = holiday_features(ds_ns, opts.holidays, opts.holiday_table)
        if keys:
            parts.append(H)
            sigmas += [HOLIDAYS_PRIOR_SCALE] * len(keys)
    regressors = []
    for name in opts.regressors:  # Prophet's add_regressor defaults: prior scale 10, the seasonality mode
        x = np.asarray(extra[name], dtype=float)
        mu, std = regressor_scale(x)
        regressors.append((name, mu, std))
        parts.append(((x - mu) / std)[:, None])
        sigmas.append(HOLIDAYS_PRIOR_SCALE)
    if parts:
        X = np.column_stack(parts)
        s_a = np.full(X.shape[1], 1.0 if opts.seasonality_mode == "additive" else 0.0)
        s_m, sigmas = 1.0 - s_a, np.array(sigmas)
    else:
        X, s_a, s_m, sigmas = np.zeros((T, 1)), np.zeros(1), np.zeros(1), np.ones(1)
    return StanData(y=(y - floor) / y_scale, t=t, t_change=t_change, X=X, sigmas=sigmas, s_a=s_a, s_m=s_m,
                    tau=float(opts.changepoint_prior_scale), trend_indicator=TREND_INDICATOR[opts.growth],
                    y_scale=y_scale, start_ns=start, t_scale_ns=t_scale, seasonalities=seas,
                    country=opts.holidays, holiday_table=opts.holiday_table, holiday_keys=keys,
                    holiday_names=names, regressors=regressors,
                    cap=(cap - floor) / y_scale if logistic else None,
                    cap_col=opts.cap_col if logistic else None, floor_col=opts.floor_col if logistic else None)


def cap_floor(extra: dict[str, np.ndarray], cap_col: str, floor_col: str | None, n: int,
              ds_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cap and floor (0 without a floor column) at n times, as given in `extra` by column name.

    Raises:
        ValueError: where the cap is not above the floor, naming the count and the first such time.
    """
    cap = np.asarray(extra[cap_col], dtype=float)
    floor = np.asarray(extra[floor_col], dtype=float) if floor_col else np.zeros(n)
    bad = ~(cap > floor)
    if bad.any():
        first = str(np.asarray(ds_ns[bad][0]).astype("datetime64[ns]"))[:19].replace("T", " ")
        below = f"the floor {floor_col!r}" if floor_col else "0 (the floor without --floor-col)"
        raise ValueError(f"cap {cap_col!r} is not above {below} at {int(bad.sum())} time(s), first {first}; "
                         "logistic growth needs cap > floor")
    return cap, floor


def free_parameters(data: StanData) -> int:
    """How many parameters can move the fit: k, m, the changepoints' deltas (the dummy one at 0 only repeats k;
    flat growth has m alone), and the feature columns (the zeros column of a model without features moves
    nothing)."""
    n_cp, n_features = _movable(data)
    if data.trend_indicator == TREND_INDICATOR["flat"]:
        return 1 + n_features
    return 2 + n_cp + n_features


def _movable(data: StanData) -> tuple[int, int]:
    """(changepoints, feature columns) that can move the fit: none for the dummy changepoint at 0, none for the
    zeros column of a model without features."""
    dummy = data.S == 1 and data.t_change[0] == 0.0
    no_features = data.K == 1 and not data.X.any()
    return (0 if dummy else data.S), (0 if no_features else data.K)


def reduced(data: StanData, budget: int) -> tuple[StanData, str] | None:
    """Prophet's model for a series too short for it, with at most `budget` free parameters (free_parameters):
    fewer changepoints (evenly spaced among Prophet's, down to none, as Prophet has for its shortest series),
    then lower Fourier orders, the highest order first; holidays and regressors are kept. Returns the reduced
    data and what was reduced, in words; a linear trend through too few points for a slope becomes flat (the
    level alone); None when even the trend and the kept columns leave no point over.
    """
    orders = [order for _, order in data.seasonalities]
    n_fourier = 2 * sum(orders)
    n_cp, n_features = _movable(data)
    rest = n_features - n_fourier  # holiday and regressor columns, after the Fourier terms
    keep_cp = max(0, min(n_cp, budget - 2 - n_fourier - rest))
    new_orders = list(orders)
    while 2 + keep_cp + 2 * sum(new_orders) + rest > budget and any(new_orders):
        j = int(np.argmax(new_orders))
        new_orders[j] -= 1
    flat = data.trend_indicator == TREND_INDICATOR["linear"] and 2 + rest >= data.T and 1 + rest < data.T
    if 2 + keep_cp + 2 * sum(new_orders) + rest >= data.T and not flat:
        return None
    if keep_cp:
        t_change = data.t_change[np.unique(np.linspace(0, n_cp - 1, keep_cp).round().astype(int))]
    else:
        t_change = np.array([0.0])
    cols, offset = [], 0
    for order, new in zip(orders, new_orders):
        cols += range(offset, offset + 2 * new)
        offset += 2 * order
    cols += range(data.K - rest, data.K)
    cols = np.asarray(cols, dtype=int)
    if len(cols):
        X, sigmas, s_a, s_m = data.X[:, cols], data.sigmas[cols], data.s_a[cols], data.s_m[cols]
    else:
        X, sigmas, s_a, s_m = np.zeros((data.T, 1)), np.ones(1), np.zeros(1), np.zeros(1)
    seas = [(period, new) for (period, _), new in zip(data.seasonalities, new_orders) if new > 0]
    said = [f"{keep_cp} changepoint(s) of {n_cp}"] if keep_cp < n_cp else []
    said += [f"{_period_name(period)} order {new} of {order}"
             for (period, order), new in zip(data.seasonalities, new_orders) if new < order]
    if flat:  # too few points for a slope as well: the level alone (Prophet's flat growth)
        said.append("flat growth")
    return replace(data, t_change=t_change, X=X, sigmas=sigmas, s_a=s_a, s_m=s_m, seasonalities=seas,
                   trend_indicator=TREND_INDICATOR["flat"] if flat else data.trend_indicator), ", ".join(said)


def _period_name(period: float) -> str:
    names = {period: name for name, (period, _) in _AUTO.items()}
    return f"{names[period]} seasonality" if period in names else f"{period:g}-day seasonality"


@dataclass
class Params:
    """Prophet's MAP parameters for one series (on the scaled data)."""

    k: float
    m: float
    delta: np.ndarray
    sigma_obs: float
    beta: np.ndarray


def initial_params(data: StanData) -> Params:
    """Prophet's inits: linear growth through the first and last points (flat: 0 and the mean; logistic: through
    their logits, Prophet's logistic_growth_init), sigma_obs 1."""
    if data.trend_indicator == TREND_INDICATOR["flat"]:
        k, m = 0.0, float(np.mean(data.y))
    elif data.trend_indicator == TREND_INDICATOR["logistic"]:
        span = data.t[-1] - data.t[0]
        c0, c1 = data.cap[0], data.cap[-1]
        y0 = max(0.01 * c0, min(0.99 * c0, data.y[0]))  # valid values, in case y > cap or y < 0
        y1 = max(0.01 * c1, min(0.99 * c1, data.y[-1]))
        r0, r1 = c0 / y0, c1 / y1
        if abs(r0 - r1) <= 0.01:
            r0 = 1.05 * r0
        l0, l1 = np.log(r0 - 1), np.log(r1 - 1)
        m = l0 * span / (l0 - l1)
        k = (l0 - l1) / span
    else:
        k = (data.y[-1] - data.y[0]) / (data.t[-1] - data.t[0])
        m = data.y[0] - k * data.t[0]
    return Params(k=float(k), m=float(m), delta=np.zeros(data.S), sigma_obs=1.0, beta=np.zeros(data.K))


def is_constant(data: StanData) -> bool:
    """Prophet does not fit a constant series (linear or flat growth): it keeps the inits with sigma_obs 1e-9."""
    return data.trend_indicator != TREND_INDICATOR["logistic"] and bool(data.y.min() == data.y.max())


def constant_params(data: StanData) -> Params:
    p = initial_params(data)
    p.sigma_obs = 1e-9
    return p


def trend(params: Params, data: StanData, t: np.ndarray | None = None, cap: np.ndarray | None = None) -> np.ndarray:
    """The trend on the scaled data at times t (default: the history); `cap`: the scaled cap at t (logistic)."""
    if t is None:
        t, cap = data.t, data.cap
    if data.trend_indicator == TREND_INDICATOR["flat"]:
        return np.full(len(t), params.m)
    A = (t[:, None] >= data.t_change[None, :])
    if data.trend_indicator == TREND_INDICATOR["logistic"]:
        return cap * inv_logit(logistic_exponent(params.k, params.m, params.delta, t, data.t_change))
    return (params.k + A @ params.delta) * t + (params.m + A @ (-data.t_change * params.delta))


def logistic_exponent(k: float, m: float, delta: np.ndarray, t: np.ndarray, t_change: np.ndarray) -> np.ndarray:
    """(k + A delta)(t - (m + A gamma)) of Prophet's logistic trend. Prophet's offsets gamma make the exponent
    continuous at each changepoint, so that, unrolled, it is k (t - m) + sum_j delta_j (t - t_change_j)+: no
    sequential loop, and no division by a segment's rate (which Stan's form has, and which is 0/0 where a rate
    is 0)."""
    return k * (t - m) + np.maximum(t[:, None] - t_change[None, :], 0.0) @ delta


def inv_logit(u: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-u)) without overflow for large |u|."""
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def log_posterior(params: Params, data: StanData) -> float:
    """The Stan model's objective as optimize reports it in lp__: no Jacobian for sigma_obs > 0, constants dropped.

    k, m ~ N(0, 5); delta ~ Laplace(0, tau); sigma_obs ~ N(0, 0.5); beta ~ N(0, sigmas);
    y ~ N(trend * (1 + X_sm beta) + X_sa beta, sigma_obs).
    """
    p = params
    mu = trend(p, data) * (1 + data.X @ (data.s_m * p.beta)) + data.X @ (data.s_a * p.beta)
    r = data.y - mu
    s = p.sigma_obs
    return float(
        -0.5 * (p.k / 5) ** 2 - 0.5 * (p.m / 5) ** 2
        - np.abs(p.delta).sum() / data.tau
        - 0.5 * (s / 0.5) ** 2
        - 0.5 * ((p.beta / data.sigmas) ** 2).sum()
        - data.T * np.log(s) - 0.5 * (r @ r) / s**2
    )


def predict(params: Params, data: StanData, ds: np.ndarray, opts: ModelOptions,
            rng: np.random.RandomState | np.random.Generator | None,
            extra: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """yhat, yhat_lower, yhat_upper at `ds` as Prophet.predict makes them (vectorised uncertainty); `extra` holds
    the regressors' values at `ds` (and the cap's and floor's, with logistic growth).

    With `rng` a RandomState seeded as model.py seeds numpy's global one, the intervals equal Prophet's: the draws
    are taken in Prophet's order (trend change points, their Laplace sizes, then the observation noise). A
    numpy Generator (the fast engine's) draws from the same distribution in a faster layout, with other numbers.
    """
    return predict_bands(params, data, ds, opts, rng, extra)[:3]


def predict_bands(params: Params, data: StanData, ds: np.ndarray, opts: ModelOptions,
                  rng: np.random.RandomState | np.random.Generator | None,
                  extra: dict[str, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """`predict`, and the --level and --quantile columns (levels.band_columns) as percentiles of the same
    simulated paths: one simulation, one sort, every band."""
    ds_ns = np.asarray(ds, dtype="datetime64[ns]").astype(np.int64)
    t = (ds_ns - data.start_ns) / data.t_scale_ns
    X = features(ds_ns, data, extra)
    logistic = data.trend_indicator == TREND_INDICATOR["logistic"]
    cap = floor = None
    if logistic:
        cap, floor = cap_floor(extra or {}, data.cap_col, data.floor_col, len(t), ds_ns)
        cap = (cap - floor) / data.y_scale
    trend_pt = trend(params, data, t, cap)
    offset = floor if logistic else 0.0
    xb_a = X @ (params.beta * data.s_a) * data.y_scale
    xb_m = X @ (params.beta * data.s_m)
    tr = trend_pt * data.y_scale + offset
    yhat = tr * (1 + xb_m) + xb_a
    n = opts.uncertainty_samples
    bands = band_percents(opts)
    if not n:
        nan = np.full(len(t), np.nan)
        return yhat, nan, nan.copy(), {name: nan.copy() for name in bands}
    rng = rng if rng is not None else np.random.RandomState()
    future = t > 1
    n_future = int(future.sum())
    # Prophet's trend uncertainty (linear and logistic growth): at each future step a change point occurs with the
    # history's rate of change points per unit time, its size Laplace with the mean |delta|; the paths integrate
    # the changes twice (rate, then level), averaging each step's rate with the previous one's.
    changes = n_future and data.trend_indicator != TREND_INDICATOR["flat"]
    if changes:
        tf = t[future]
        single_diff = np.diff(tf).mean() if n_future > 1 else np.diff(data.t).mean()
        likelihood = data.S * single_diff
        mean_delta = np.mean(np.abs(params.delta)) + 1e-8
    # the --interval-width bounds, then each band's, all from the one sort of the paths
    wanted = [100 * (1.0 - opts.interval_width) / 2, 100 * (1.0 + opts.interval_width) / 2, *bands.values()]
    if isinstance(rng, np.random.RandomState):
        # Prophet's draws in Prophet's order and layout (sample x time), so a seeded RandomState gives its numbers
        unc = np.zeros((n, len(t)))
        if changes:
            change = rng.uniform(size=(n, n_future)) < likelihood
            shift = rng.laplace(0, mean_delta, size=change.shape) * change
            mat = (np.hstack([np.zeros((n, 1)), shift])[:, :-1] + shift) / 2
            if logistic:
                unc[:, future] = logistic_uncertainty(mat.T, params, data, tf, cap[future], single_diff).T
            else:
                unc[:, future] = mat.cumsum(axis=1).cumsum(axis=1) * single_diff
        trends = (trend_pt[None, :] + unc) * data.y_scale + offset
        noise = rng.normal(0, params.sigma_obs, trends.shape) * data.y_scale
        sims = trends * (1 + xb_m) + xb_a + noise
        lower, upper, *more = percentiles_at(sims, wanted, axis=0)
        return yhat, lower, upper, dict(zip(bands, more))
    # The same distribution, drawn time x sample: the sums run down contiguous rows of samples at once, the
    # change points are drawn as the gaps between them (change_sizes), and the paths are built in place.
    noise = rng.standard_normal((len(t), n))
    if changes:
        shift = change_sizes(rng, n_future, n, likelihood, mean_delta)
        if logistic:
            mat = shift.copy()
            mat[1:] += shift[:-1]
            unc = logistic_uncertainty(mat / 2, params, data, tf, cap[future], single_diff)
            unc *= ((1 + xb_m[future]) * data.y_scale)[:, None]
        else:
            # the rate (a running sum of the changes), then the level: a running sum of the average of each
            # step's rate and the previous one's (doubled here, halved in the scale). numpy's cumsum down the
            # short time axis is a loop per sample; a loop over the time steps adds whole rows instead
            for i in range(1, n_future):
                shift[i] += shift[i - 1]
            shift[1:] += shift[:-1]
            for i in range(1, n_future):
                shift[i] += shift[i - 1]
            unc = shift
            unc *= (single_diff / 2 * data.y_scale * (1 + xb_m[future]))[:, None]
    # sims = ((trend + unc) * (1 + xb_m) + noise) * y_scale + xb_a, with the floor's term in logistic growth,
    # summed into the noise's array
    noise *= params.sigma_obs * data.y_scale
    if changes:
        if n_future == len(t):
            noise += unc
        else:
            noise[future] += unc
    base = trend_pt * (1 + xb_m) * data.y_scale + xb_a
    if logistic:
        base += floor * (1 + xb_m)
    noise += base[:, None]
    lower, upper, *more = percentiles_at(noise, wanted, axis=1)
    return yhat, lower, upper, dict(zip(bands, more))


def change_sizes(rng: np.random.Generator, n_steps: int, n_paths: int, rate: float, scale: float,
                 batch: int | None = None) -> np.ndarray:
    """The trend's future changes, steps x paths: at each step of each path a change occurs with probability
    `rate` (at every one when `rate` >= 1), independently, its size Laplace(0, `scale`); 0 elsewhere.

    Drawn as Prophet draws them in distribution, not draw for draw: the changes' positions in the flattened
    array are those of a Bernoulli sequence, whose gaps are geometric, so a few % of the steps cost one draw
    each instead of every step costing a uniform. `batch`: how many gaps to draw at a time (default: enough to
    pass the last step but about once in 10^9)."""
    total = n_steps * n_paths
    shift = np.zeros(total)
    if not rate > 0:  # no change points in the history (or no rate at all): as uniforms below 0 would give
        return shift.reshape(n_steps, n_paths)
    if rate >= 1:
        pos = np.arange(total)
    else:
        expected = total * rate
        batch = batch or int(expected + 6 * np.sqrt(expected) + 16)
        pos = np.cumsum(rng.geometric(rate, size=batch)) - 1
        while pos[-1] < total - 1:  # the batch ended before the last step: the sequence goes on from there
            pos = np.concatenate([pos, pos[-1] + np.cumsum(rng.geometric(rate, size=batch))])
        pos = pos[:np.searchsorted(pos, total)]
    shift[pos] = rng.laplace(0, scale, size=len(pos))
    return shift.reshape(n_steps, n_paths)


def percentiles(sims: np.ndarray, lower_p: float, upper_p: float, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """np.percentile(sims, [lower_p, upper_p], axis) (its default, linear method, to the last bit) from one sort:
    numpy's vectorised sort orders the fast engine's 28 x 1000 simulations in half the time a partition at the
    four order statistics takes, and np.percentile's general machinery costs a third more again."""
    lower, upper = percentiles_at(sims, [lower_p, upper_p], axis)
    return lower, upper


def percentiles_at(sims: np.ndarray, ps: list[float], axis: int) -> list[np.ndarray]:
    """np.percentile(sims, p, axis) for each p of `ps` (see `percentiles`), from one sort. Each percentile is
    computed alone from the sorted paths, so a band's bounds do not depend on which other bands are asked for."""
    n = sims.shape[axis]
    q = np.array(ps, dtype=float) / 100 * (n - 1)
    below = np.floor(q).astype(int)
    above = np.minimum(below + 1, n - 1)
    ordered = np.sort(sims, axis=axis)
    t = q - below
    out = []
    for j in range(len(ps)):
        a, b = np.take(ordered, below[j], axis=axis), np.take(ordered, above[j], axis=axis)
        diff = b - a
        out.append(np.where(t[j] >= 0.5, b - diff * (1 - t[j]), a + diff * t[j]))  # numpy's _lerp
    return out


def logistic_uncertainty(mat: np.ndarray, params: Params, data: StanData, t_future: np.ndarray,
                         cap_future: np.ndarray, single_diff: float) -> np.ndarray:
    """Prophet's logistic trend uncertainty (`_logistic_uncertainty`), time x sample: each sample's logistic trend
    through the history's changepoints, moved to the first point after each of them on a grid of `single_diff`
    from 0 (as Prophet places them), and the sample's own future rate changes `mat` (time x sample); returned
    centred on the samples' mean, as Prophet adds it to the fitted trend.

    Prophet runs the offsets' recurrence step by step over that whole grid (a Python loop over every step, each
    summing all earlier ones); unrolled as in `logistic_exponent`, the exponent at a future step is
    k (t - m) + sum over earlier changes of size * (t - its time): two running sums.
    """
    grid = np.arange(0, 1 + single_diff, single_diff)
    hist = np.zeros(len(grid))
    # the first grid point after each changepoint; where two share one, the later delta wins (numpy's
    # fancy assignment, as in Prophet)
    hist[np.searchsorted(grid, data.t_change, side="right")] = params.delta
    h1, h2 = hist.sum(), hist @ grid  # every historical change comes before every future step
    c1 = np.cumsum(mat, axis=0) - mat  # sum of earlier future changes (the step's own adds 0: t - t = 0)
    c2 = np.cumsum(mat * t_future[:, None], axis=0) - mat * t_future[:, None]
    tf = t_future[:, None]
    u = params.k * (tf - params.m) + tf * (h1 + c1) - (h2 + c2)
    paths = cap_future[:, None] * inv_logit(u)
    return paths - paths.mean(axis=1, keepdims=True)
