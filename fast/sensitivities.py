"""Sensitivities of every released group, from the reference's named functions, rounded up.

The fast path never re-derives a sensitivity: it evaluates the analytic l1 sensitivities of
``dpxattn.reference.sensitivity`` (replace-one-row adjacency; ``proofs_notes/17-sensitivity.md``)
once per build, exactly or at the reference's precision, and rounds each to float64 **upward**
(:func:`dpxattn.fast.directed.float_up`), so the noise is never smaller than the proof assumes.

* ``direct``: ``Delta_S = 2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) sum_{alpha != 0} M_alpha`` (``direct_statistic``,
  the exact sup);
  with ``law="gaussian"`` the l2 sensitivity ``Delta_2`` and the analytic-Gaussian sigma, both
  from ``dpxattn.reference.direct.gaussian_constants`` (certified upward there), rounded up
  (:func:`direct_gaussian_constants`);
* ``tree``, per column (value columns: R_w; the denominator: weight 1): ``c0 = 2 R_w``,
  ``c1 = 2 R_w T_s(t_max)``, and per (coordinate t, moment m) ``2 R_w M_t^m`` per level
  (``tree_level``), with M_t the exact feature bounds of ``dpxattn.reference.kernel``.

Spec: PAPER.md §5 items 8 and 13, §3.7; DESIGN §1 (privacy unit).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fractions import Fraction

from dpxattn.fast.directed import exact_fraction, float_up, memo_safe

__all__ = ["direct_sensitivity", "direct_gaussian_constants", "tree_sensitivities", "round_up",
           "tree_gaussian_constants",
           "direct_secure_constants"]

#: relative margin over the reference's working-precision rounding (it evaluates at >= 100 bits)
_MARGIN = 1 + Fraction(1, 2**90)


def round_up(value, name: str) -> float:
    """A float64 >= the exact constant that ``value`` (an mpf at the reference's precision, or an
    exact number) approximates: ``float_up(value (1 + 2^-90))``."""
    return float_up(exact_fraction(name, value) * _MARGIN, name)


def _key(x):
    return None if x is None else exact_fraction("value", x)


@lru_cache(maxsize=256)
def _direct(d, degree, R, R_w, d_v, scale) -> float:
    from dpxattn.reference import sensitivity

    return round_up(sensitivity.direct_statistic(d, degree, R, R_w, d_v, scale=scale),
                    "Delta_S")


def _direct_of(d, degree, R, R_w, d_v, scale) -> float:
    return _direct(d, degree, _key(R), _key(R_w), d_v, _key(scale))


#: keyed by the arguments as given (type and value): skips the exact conversions of a repeat
_direct_memo = lru_cache(maxsize=256, typed=True)(_direct_of)


def direct_sensitivity(*, d: int, degree: int, R, R_w, d_v: int, scale=None) -> float:
    """l1 sensitivity of S = P(K)^T [V, 1] (r x (d_v + 1)), float64 rounded up."""
    if memo_safe(d, degree, R, R_w, d_v, scale):
        return _direct_memo(d, degree, R, R_w, d_v, scale)
    return _direct_of(d, degree, R, R_w, d_v, scale)


@lru_cache(maxsize=256)
def _direct_gaussian(d, degree, R, R_w, d_v, scale, eps, delta) -> tuple[float, float]:
    from dpxattn.reference.direct import gaussian_constants

    Delta2, sigma = gaussian_constants(d, degree, R, R_w, d_v, eps, delta, scale=scale)
    return round_up(Delta2, "Delta_2"), round_up(sigma, "sigma")


def _direct_gaussian_of(d, degree, R, R_w, d_v, scale, eps, delta):
    return _direct_gaussian(d, degree, _key(R), _key(R_w), d_v, _key(scale), _key(eps),
                            _key(delta))


_direct_gaussian_memo = lru_cache(maxsize=256, typed=True)(_direct_gaussian_of)


def direct_gaussian_constants(*, d: int, degree: int, R, R_w, d_v: int, eps, delta,
                              scale=None) -> tuple[float, float]:
    """``(Delta_2, sigma)`` of the Gaussian ``direct`` release, float64 rounded up: the l2
    (Frobenius) sensitivity of S and sigma = ``sigma_for(Delta_2, eps, delta)``, both from the
    reference (``dpxattn.reference.direct.gaussian_constants``), converted once. ``eps``,
    ``delta``: the component's exact share. Memoised (public parameters only)."""
    if memo_safe(d, degree, R, R_w, d_v, scale, eps, delta):
        return _direct_gaussian_memo(d, degree, R, R_w, d_v, scale, eps, delta)
    return _direct_gaussian_of(d, degree, R, R_w, d_v, scale, eps, delta)


@lru_cache(maxsize=64)
def _tree_gaussian(d, degree, R, R_w, d_v, scale, eps, delta, grid, copies):
    from dpxattn.reference.dptree_softmax import gaussian_constants

    Delta2, sigma = gaussian_constants(d, degree, R, R_w, d_v, eps, delta, grid_size=grid,
                                       copies=copies, scale=scale)
    return round_up(Delta2, "tree Delta_2"), round_up(sigma, "tree sigma")


def tree_gaussian_constants(*, d: int, degree: int, R, R_w, d_v: int, eps, delta, grid: int,
                            copies: int, scale=None) -> tuple[float, float]:
    """``(Delta_2, sigma)`` of the Gaussian ``tree`` release, float64 rounded up: the l2
    sensitivity of the whole released vector (every copy, column, c0, c1 and node) and
    sigma = ``sigma_for(Delta_2, eps, delta)``, both from the reference
    (``dpxattn.reference.dptree_softmax.gaussian_constants``). ``eps``, ``delta``: the plan's
    one component. Memoised (public parameters only). ``proofs_notes/26-tree-gaussian.md``."""
    return _tree_gaussian(d, degree, _key(R), _key(R_w), d_v, _key(scale), _key(eps),
                          _key(delta), grid, copies)


@lru_cache(maxsize=64)
def _tree(d, degree, R, R_w, d_v, scale):
    from dpxattn.reference import kernel, sensitivity

    M = kernel.feature_bounds(d, degree, R, scale=scale)
    weights = [R_w] * d_v + [1]
    scal = np.empty((d_v + 1, 2), dtype=np.float64)
    nodes = np.empty((d_v + 1, len(M), 3), dtype=np.float64)
    per_weight: dict = {}
    for k, w in enumerate(weights):
        key = (w, k == d_v)  # the denominator's c1 has its own (tighter) sensitivity
        if key not in per_weight:
            c0 = round_up(sensitivity.c0(w), "c0 sensitivity")
            c1 = round_up(sensitivity.c1_column(d, degree, R, w, denominator=k == d_v,
                                                scale=scale), "c1 sensitivity")
            lv = np.array([[round_up(sensitivity.tree_level(M_t, m, w), "tree_level sensitivity")
                            for m in range(3)] for M_t in M])
            per_weight[key] = (c0, c1, lv)
        c0, c1, lv = per_weight[key]
        scal[k] = (c0, c1)
        nodes[k] = lv
    scal.setflags(write=False)
    nodes.setflags(write=False)
    return scal, nodes


def tree_sensitivities(*, d: int, degree: int, R, R_w, d_v: int, scale=None):
    """``(scalars (d_v + 1, 2), nodes (d_v + 1, r, 3))`` float64 arrays, rounded up.

    ``scalars[k] = (Delta_c0, Delta_c1)`` of column k; ``nodes[k, t, m]`` the per-level
    sensitivity of the DPTree of (column k, coordinate t, moment m). Column d_v is the
    denominator (weight 1). Read-only arrays (cached).
    """
    return _tree(d, degree, _key(R), _key(R_w), d_v, _key(scale))


# ---------------------------------------------------------------------------------------------
# the float64 sums' allowance (build's secure mode before exact accumulation; the bench row
# ST5s and tests compare the accumulator with it)
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _direct_secure(n, d, degree, R, R_w, d_v, scale):
    from dpxattn.reference import kernel, sensitivity

    analytic = sensitivity.direct_statistic(d, degree, R, R_w, d_v, scale=scale)
    err = sensitivity.direct_statistic_float_error(n, d, degree, R, R_w, d_v, scale=scale)
    sens = round_up(sensitivity.secure_sensitivity(analytic, err), "secure Delta_S")
    g = sensitivity.float64_gamma(n + sensitivity.direct_term_roundings(degree))
    M = max(kernel.feature_bounds(d, degree, R, scale=scale))
    bound = round_up(n * M * max(R_w, 1) * (1 + g), "S value bound")
    return sens, bound


def direct_secure_constants(*, n: int, d: int, degree: int, R, R_w, d_v: int, scale=None):
    """``(sensitivity, value_bound)`` a hardened release of S computed with float64 sums would
    need, float64 rounded up (no build uses it: secure mode accumulates exactly,
    ``fast/accumulator.py``; kept as the comparison of the bench row ST5s):
    ``direct_statistic + 2 direct_statistic_float_error`` (an l1 sensitivity of the computed
    float64 S over all its r (d_v + 1) coordinates) and ``(1 + gamma) n max_alpha M_alpha
    max(R_w, 1)`` (a public bound on every |computed S entry|). ``proofs_notes/23-hardened-noise.md``."""
    if memo_safe(n, d, degree, R, R_w, d_v, scale):
        return _direct_secure_memo(n, d, degree, R, R_w, d_v, scale)
    return _direct_secure_of(n, d, degree, R, R_w, d_v, scale)


def _direct_secure_of(n, d, degree, R, R_w, d_v, scale):
    return _direct_secure(n, d, degree, _key(R), _key(R_w), d_v, _key(scale))


#: keyed by the arguments as given (type and value): skips the exact conversions of a repeat
_direct_secure_memo = lru_cache(maxsize=256, typed=True)(_direct_secure_of)
