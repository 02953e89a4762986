"""An in-process MAP solver for Prophet's model: linear or flat growth, additive or multiplicative seasonality.

With every feature additive the mean is linear in theta = (k, m, delta, beta): mu = D theta, where D's columns are
t, 1, (t - t_change_j)+ and the seasonal features (flat growth: 1 and the features; k and delta then only meet
their priors, whose maximum is 0). Stan's objective (model.log_posterior) is then

    lp(theta, s) = -T log s - |y - D theta|^2 / (2 s^2) - 2 s^2 - theta' R theta / 2 - |delta|_1 / tau

with R = diag(1/25 for k and m, 0 for delta, 1/sigmas^2 for beta). For a fixed s this is a concave problem in theta
(a ridge regression plus a lasso on delta), solved exactly here by the feature-sign active-set method (Lee et al.,
"Efficient sparse coding algorithms", NIPS 2006) on the Gram matrix; for a fixed theta the best s is a root of
4 s^4 + T s^2 - |y - D theta|^2 = 0. The two steps alternate until lp stops rising; every two rounds, Aitken's
extrapolation of s is tried and kept when its round raises lp. The result is checked against
the objective by the caller (tests compare it with Stan's optimum).

With multiplicative features the mean g(t) * (1 + X_m beta) + X_a beta is linear in the trend's parameters for a
fixed beta (the trend columns weighted by 1 + X_m beta: the same ridge-plus-lasso problem), and linear in beta for a
fixed trend (a ridge regression on g * X_m + X_a). Each block, then s, is set to its exact maximiser in turn, so
lp rises at every step; the iteration stops when it no longer does (to 1e-14 relative). On the series tried it
ends within about ten rounds at the same optimum (to rounding) as hundreds more rounds reach.

With logistic growth the mean cap * inv_logit(h) (1 + X_m beta) + X_a beta, h = k (t - m) + H delta
(model.logistic_exponent), is not linear in the trend's parameters. Linearised at the current parameters
(Gauss-Newton), the problem for a fixed s is again a ridge regression with a lasso on delta, solved exactly by the
same active-set method; a backtracking step towards its solution raises lp, then s is set to its exact maximiser,
and so on until lp stops rising (a proximal Gauss-Newton method: its fixed points are the posterior's stationary
points). The logistic posterior is not concave, so it runs from more than one start (module function
_fit_logistic) and keeps the highest.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .model import TREND_INDICATOR, Params, StanData, free_parameters, log_posterior

_SIGMA_FLOOR = 1e-12


class NotCovered(ValueError):
    """A model or series this solver does not handle; the caller serves it with Stan."""


def unsupported_reason(data: StanData) -> str:
    """Why this solver cannot fit `data` ("" when it can)."""
    if data.T <= free_parameters(data):  # an exact fit through every point: no maximum
        return f"as many parameters as points ({data.T} points)"
    span_days = data.t_scale_ns / 86_400e9
    longest = max((period for period, _ in data.seasonalities), default=0.0)
    if longest > span_days:
        # less history than one period (yearly seasonality forced on for 200 days, say): the seasonality is all but
        # unidentified, and the posterior so flat that its exact maximum can extrapolate far from the data, while
        # Stan's L-BFGS stops near its start; the stan engine gives stock Prophet's answer
        return f"a {longest:g}-day seasonality on {span_days:.0f} days of history"
    return ""


def _gufunc_solve() -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """numpy's LAPACK solve without np.linalg.solve's wrapper (type checks and an errstate block: half the cost of
    a solve at these sizes, where there are some twenty solves a series); None where numpy lacks it."""
    try:
        from numpy.linalg import _umath_linalg

        return _umath_linalg.solve1
    except (ImportError, AttributeError):
        return None


_SOLVE1 = _gufunc_solve()


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.linalg.solve(a, b) for a float64 matrix and vector, the same numbers faster. A singular matrix (the
    gufunc's NaN) goes to np.linalg.solve, which raises LinAlgError as before; `fit` runs under
    errstate(invalid="ignore"), so the gufunc's NaN warns of nothing first (an errstate block per solve would
    cost as much as the wrapper it saves)."""
    if _SOLVE1 is not None:
        x = _SOLVE1(a, b, signature="dd->d")
        if math.isfinite(float(x @ x)):
            return x
    return np.linalg.solve(a, b)


def lasso_qp(G: np.ndarray, b: np.ndarray, lam: np.ndarray, x0: np.ndarray | None = None,
             max_iter: int = 500) -> np.ndarray:
    """argmin 0.5 x'Gx - b'x + sum(lam * |x|) for a positive definite G and lam >= 0 (0: no L1 on that x).

    The feature-sign active-set method: solve on the active set with the assumed signs; when a coefficient's
    sign comes out otherwise, a discrete line search (only then: most steps have none) finds where to stop;
    when the signs hold, the zero coefficient with the largest violation of its optimality condition enters.
    Each step is a handful of numpy calls on vectors of some 30 to 60: their count is the cost here."""
    p = len(b)
    l1 = lam > 0
    free = ~l1
    x = np.zeros(p) if x0 is None else x0.copy()
    theta = np.sign(x) * l1
    active = free | (x != 0)
    scale = max(1.0, float(np.abs(b).max()))
    tol = 1e-12 * scale
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if len(idx):
            th = theta[idx]
            xa = solve(G.take(idx, 0).take(idx, 1), (b - lam * theta)[idx])
            cur = x[idx]
            wrong = (np.sign(xa) != th) & l1[idx]  # a coefficient whose sign is not the one assumed
            flips = wrong & (cur != 0)
            consistent = True
            if flips.any():
                a_flip = cur[flips] / (cur[flips] - xa[flips])
                keep = (a_flip > 0) & (a_flip < 1)
                consistent = False
            if not consistent and keep.any():
                # the discrete line search from x to the new point, at the new point and where a coefficient
                # changes sign; along the segment the smooth part is a quadratic in the step a
                d = np.zeros(p)
                d[idx] = xa - cur
                steps = np.concatenate([[1.0], a_flip[keep]])
                zeroed = np.concatenate([[-1], idx[flips][keep]])
                Gd = G @ d
                c1, c2 = (G @ x - b) @ d, d @ Gd
                f = c1 * steps + 0.5 * c2 * steps**2 + np.abs(x[None, :] + steps[:, None] * d[None, :]) @ lam
                best = int(np.argmin(f))
                x = x + steps[best] * d
                if zeroed[best] >= 0:  # the coefficient that reaches zero at this point
                    x[zeroed[best]] = 0.0
            else:  # no sign changes on the way: the new point, as x + 1 * (xa - x) (the same bits)
                x[idx] = cur + (xa - cur)
                consistent = consistent and not wrong.any()
            theta = np.sign(x) * l1
            active = free | (x != 0)
            if not consistent:
                continue  # a coefficient changed sign or reached zero: solve again with the updated signs
        # optimal on the active set; a zero coefficient whose gradient exceeds its penalty enters
        grad = G @ x - b
        viol = np.abs(grad) - lam
        viol[active] = -np.inf
        j = int(np.argmax(viol))
        if viol[j] <= tol:  # also when every coefficient is active (all -inf)
            return x
        theta[j] = -np.sign(grad[j])
        active[j] = True
    return x


def _design(data: StanData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D, ridge, l1) over theta = (k, m, delta, beta): the mean is D theta. D is written column by column into
    one Fortran-ordered array, with no temporaries its size: at 1,941 days a fifth of the cost of stacking
    them (the same numbers)."""
    t, S, K = data.t, data.S, data.K
    flat = data.trend_indicator == TREND_INDICATOR["flat"]
    D = np.empty((len(t), 2 + S + K), order="F")
    D[:, 1] = 1.0
    if flat:
        D[:, 0] = 0.0
        D[:, 2:2 + S] = 0.0
    else:
        D[:, 0] = t
        hinge = D[:, 2:2 + S]
        np.subtract(t[:, None], data.t_change[None, :], out=hinge)
        np.maximum(hinge, 0.0, out=hinge)  # (t - t_change)+: Stan's A (t - t_change), 0.0 before a changepoint
    np.multiply(data.X, data.s_a, out=D[:, 2 + S:])
    ridge = np.concatenate([[1 / 25, 1 / 25], np.zeros(S), 1 / data.sigmas**2])
    l1 = np.concatenate([[0.0, 0.0], np.full(S, 1 / data.tau), np.zeros(K)])
    return D, ridge, l1


def _best_sigma(rss: float, T: int) -> float:
    # the positive root u = s^2 of 4u^2 + T u - rss = 0, in the form that does not cancel
    return math.sqrt(2 * rss / (T + math.sqrt(T * T + 16 * rss)))  # math's sqrt: numpy's bits, no array


def fit(data: StanData, init: Params | None = None, max_iter: int = 2000, rtol: float = 1e-14) -> tuple[Params, float]:
    """Prophet's MAP estimate for a linear or flat model: (params, log posterior).

    Args:
        data: the Stan data.
        init: a starting point, e.g. yesterday's optimum for this series (a warm start); ignored when its shapes
            do not match `data`. The optimum does not depend on it (tests check that).

    Raises:
        NotCovered: for a model this solver does not cover (see `unsupported_reason`).

    A series the model fits exactly (a straight line, say) has no maximum either: sigma_obs goes to its floor,
    1e-12, and the fit through the points is returned.
    """
    params = fit_map(data, init, max_iter, rtol)
    return params, log_posterior(params, data)


def fit_map(data: StanData, init: Params | None = None, max_iter: int = 2000, rtol: float = 1e-14) -> Params:
    """`fit`'s parameters alone: the engines' path, which has no use for the log posterior (evaluating it again
    over the history is a trend and a product with the features, some 2 % of a SW series' cost)."""
    why = unsupported_reason(data)
    if why:
        raise NotCovered(why)
    with np.errstate(invalid="ignore"):  # see `solve`
        return _fit(data, init, max_iter, rtol)


def _fit(data: StanData, init: Params | None, max_iter: int, rtol: float) -> Params:
    if init is not None and (len(init.delta) != data.S or len(init.beta) != data.K):
        init = None  # a start from another model (e.g. yearly seasonality turned on since): start cold
    if data.trend_indicator == TREND_INDICATOR["logistic"]:
        return _fit_logistic(data, init)[0]
    if np.any(data.s_m != 0):
        return _fit_multiplicative(data, init, max_iter, rtol)[0]
    D, ridge, l1 = _design(data)
    S, T = data.S, data.T
    DtD, Dty, yty = D.T @ D, D.T @ data.y, float(data.y @ data.y)
    def rss_of(x: np.ndarray) -> float:
        return max(float(x @ DtD @ x - 2 * Dty @ x + yty), 0.0)

    def lp_of(x: np.ndarray, s: float) -> float:
        return (-T * np.log(s) - 0.5 * rss_of(x) / s**2 - 2 * s**2 - 0.5 * ridge @ x**2 - l1 @ np.abs(x))

    if init is not None:
        x = np.concatenate([[init.k, init.m], init.delta, init.beta])
        s = float(init.sigma_obs)
    else:
        x = solve(DtD + 1e-2 * np.diag(ridge + (l1 > 0)), Dty)  # a ridge start, lasso ignored;
        # s from that fit with its deltas: nearer the optimum's than the fit without them
        s = max(_best_sigma(rss_of(x), T), _SIGMA_FLOOR)
        x[l1 > 0] = 0.0  # then the deltas at 0: the active-set steps add the few that matter (fewer solves)

    ridge_diag = np.diag(ridge)

    def round_from(x: np.ndarray, s: float) -> tuple[np.ndarray, float, float]:
        # theta given s: minimise s^2 * (-lp) = 0.5 x'(D'D + s^2 R)x - D'y x + s^2 |delta|/tau; then s given theta
        x = lasso_qp(DtD + s * s * ridge_diag, Dty, s * s * l1, x0=x)
        s = max(_best_sigma(rss_of(x), T), _SIGMA_FLOOR)
        return x, s, lp_of(x, s)

    prev = -np.inf
    for _ in range(max_iter):
        x, s, lp = round_from(x, s)
        if lp - prev <= rtol * max(1.0, abs(lp)):
            break
        prev = lp
        # The rounds move s towards its fixed point one geometric step at a time. With the round's active set and
        # signs held, x is a ridge solve for each s, so the fixed point s = best_sigma(rss(x(s))) is a scalar
        # root, found by the secant method with one small solve a step; the next round checks the active set
        # there. Kept only if it raises lp, so lp still rises at every step.
        jump = _sigma_fixed_point(DtD, Dty, ridge, l1, x, s, rss_of, T)
        if jump is not None:
            lpj = lp_of(*jump)
            if lpj > lp:
                (x, s), prev = jump, lpj
    params = Params(k=float(x[0]), m=float(x[1]), delta=x[2:2 + S].copy(), sigma_obs=s, beta=x[2 + S:].copy())
    return params


def _sigma_fixed_point(DtD: np.ndarray, Dty: np.ndarray, ridge: np.ndarray, l1: np.ndarray, x: np.ndarray, s: float,
                       rss_of: Callable[[np.ndarray], float], T: int, max_steps: int = 20
                       ) -> tuple[np.ndarray, float] | None:
    """(x, s) where s = best_sigma(rss(x)) and x is the lasso solution for that s on x's active set and signs
    (a ridge solve), by the secant method on u = s^2; None when it does not settle."""
    idx = np.flatnonzero((l1 == 0) | (x != 0))
    G, b, R, c = DtD.take(idx, 0).take(idx, 1), Dty[idx], ridge[idx], (l1 * np.sign(x))[idx]
    full = np.zeros_like(x)
    R_diag = np.diag(R)

    def image(u: float) -> float:  # best_sigma(rss(x(u)))^2 - u, and x(u)
        full[idx] = solve(G + u * R_diag, b - u * c)
        return max(_best_sigma(rss_of(full), T), _SIGMA_FLOOR) ** 2 - u

    u0 = s * s
    f0 = image(u0)
    u1 = u0 + f0
    for _ in range(max_steps):
        f1 = image(u1)
        if abs(f1) <= 1e-13 * u1:
            return full.copy(), float(np.sqrt(u1 + f1))
        if f1 == f0:
            return None
        u0, u1, f0 = u1, u1 - f1 * (u1 - u0) / (f1 - f0), f1
        if not u1 > 0 or not np.isfinite(u1):
            return None
    return None


def _fit_multiplicative(data: StanData, init: Params | None, max_iter: int, rtol: float) -> tuple[Params, float]:
    """Block-coordinate ascent: the trend's parameters (ridge + lasso), then beta (ridge), then s, each exact."""
    D, ridge, l1 = _design(data)
    S, T, y = data.S, data.T, data.y
    n_tr = 2 + S
    D_tr, r_tr, l1_tr = D[:, :n_tr], ridge[:n_tr], l1[:n_tr]
    X_m, X_a, r_b = data.X * data.s_m, data.X * data.s_a, ridge[n_tr:]
    if init is not None:
        beta, th = np.array(init.beta, dtype=float), np.concatenate([[init.k, init.m], init.delta])
        s = float(init.sigma_obs)
    else:
        beta = np.zeros(data.K)
        th = solve(D_tr.T @ D_tr + 1e-2 * np.diag(r_tr + (l1_tr > 0)), D_tr.T @ y)
        s = max(_best_sigma(float(np.sum((y - D_tr @ th) ** 2)), T), _SIGMA_FLOOR)
    prev = -np.inf
    params = None
    for _ in range(max_iter):
        w = 1 + X_m @ beta
        W = w[:, None] * D_tr
        th = lasso_qp(W.T @ W + s * s * np.diag(r_tr), W.T @ (y - X_a @ beta), s * s * l1_tr, x0=th)
        g = D_tr @ th
        V = g[:, None] * X_m + X_a
        beta = solve(V.T @ V + s * s * np.diag(r_b), V.T @ (y - g))
        r = y - (g * (1 + X_m @ beta) + X_a @ beta)
        s = max(_best_sigma(float(r @ r), T), _SIGMA_FLOOR)
        params = Params(k=float(th[0]), m=float(th[1]), delta=th[2:].copy(), sigma_obs=s, beta=beta.copy())
        lp = log_posterior(params, data)
        if lp - prev <= rtol * max(1.0, abs(lp)):
            break
        prev = lp
    return params, log_posterior(params, data)


def _fit_logistic(data: StanData, init: Params | None) -> tuple[Params, float]:
    """Logistic growth: proximal Gauss-Newton rounds on theta = (k, m, delta, beta), then s (module doc); the
    best of the starts (Prophet's init, the logit start, and a warm start when given)."""
    from .model import initial_params

    S = data.S
    hinge = np.maximum(data.t[:, None] - data.t_change[None, :], 0.0)
    _, ridge, l1 = _design(data)
    starts = [init] if init is not None else []
    starts += [initial_params(data), _logit_start(data, hinge)]
    best = None
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        for start in starts:
            x0 = np.concatenate([[start.k, start.m], start.delta, start.beta])
            try:
                x, s, lp = _logistic_rounds(data, hinge, ridge, l1, x0)
            except np.linalg.LinAlgError:
                continue
            if np.isfinite(lp) and (best is None or lp > best[2]):
                best = (x, s, lp)
    if best is None:
        raise NotCovered("the logistic fit did not converge")
    x, s, _ = best
    params = Params(k=float(x[0]), m=float(x[1]), delta=x[2:2 + S].copy(), sigma_obs=float(s), beta=x[2 + S:].copy())
    return params, log_posterior(params, data)


def _logistic_rounds(data: StanData, hinge: np.ndarray, ridge: np.ndarray, l1: np.ndarray, x: np.ndarray,
                     max_iter: int = 500, rtol: float = 1e-15) -> tuple[np.ndarray, float, float]:
    """From x = (k, m, delta, beta): rounds of (1) theta given s: the mean linearised at theta (Gauss-Newton),
    which leaves the same ridge-and-lasso problem as the linear trend (lasso_qp), then a backtracking step along
    it, so that lp rises; (2) s given theta, exactly. Until lp stops rising. Returns (theta, s, lp)."""
    from .model import inv_logit

    S, T, y, t, cap = data.S, data.T, data.y, data.t, data.cap
    X_m, X_a = data.X * data.s_m, data.X * data.s_a

    def mean(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        sig = inv_logit(x[0] * (t - x[1]) + hinge @ x[2:2 + S])
        g = cap * sig
        mult = 1 + X_m @ x[2 + S:]
        return g * mult + X_a @ x[2 + S:], g, sig, mult

    def lp_of(x: np.ndarray, s: float, r: np.ndarray) -> float:
        return float(-T * np.log(s) - 0.5 * (r @ r) / (s * s) - 2 * s * s - 0.5 * ridge @ x**2 - l1 @ np.abs(x))

    mu, g, sig, mult = mean(x)
    r = y - mu
    s = max(_best_sigma(float(r @ r), T), _SIGMA_FLOOR)
    lp = lp_of(x, s, r)
    for _ in range(max_iter):
        w = g * (1 - sig) * mult  # d mu / d h
        J = np.column_stack([w * (t - x[1]), -w * x[0], w[:, None] * hinge, g[:, None] * X_m + X_a])
        target = lasso_qp(J.T @ J + s * s * np.diag(ridge), J.T @ (r + J @ x), s * s * l1, x0=x)
        step, alpha = target - x, 1.0
        while alpha > 1e-12:
            x_new = x + alpha * step
            mu_new, g_new, sig_new, mult_new = mean(x_new)
            r_new = y - mu_new
            lp_new = lp_of(x_new, s, r_new)
            if lp_new >= lp:
                break
            alpha *= 0.5
        else:
            break  # no step raises lp: the linearisation is exact to rounding here
        x, g, sig, mult, r = x_new, g_new, sig_new, mult_new, r_new
        s = max(_best_sigma(float(r @ r), T), _SIGMA_FLOOR)
        new = lp_of(x, s, r)
        if new - lp <= rtol * max(1.0, abs(new)):
            lp = new
            break
        lp = new
    return x, s, lp


def _logit_start(data: StanData, hinge: np.ndarray) -> Params:
    """A start for a logistic fit: the trend's exponent fitted to the logits of y / cap (clipped into (0.01, 0.99)),
    where it is linear: h = k t - k m + hinge delta, by the same ridge-and-lasso solve as the linear trend."""
    from .model import initial_params

    p = np.clip(data.y / data.cap, 0.01, 0.99)
    h = np.log(p / (1 - p))
    D = np.column_stack([data.t, np.ones_like(data.t), hinge])
    plain = np.linalg.lstsq(D[:, :2], h, rcond=None)[0]
    noise = max(float(np.mean((h - D[:, :2] @ plain) ** 2)), 1e-6)  # the lasso's weight against the fit
    lam = np.concatenate([[0.0, 0.0], np.full(data.S, noise / data.tau)])
    x = lasso_qp(D.T @ D + np.diag(np.concatenate([[1e-6, 1e-6], np.full(data.S, 1e-9)])), D.T @ h, lam)
    start = initial_params(data)
    if abs(x[0]) > 1e-8:
        start.k, start.m = float(x[0]), float(-x[1] / x[0])
    start.delta = x[2:].copy()
    return start
