"""Sensitivities of every released group, from the reference's named functions, rounded up.

The fast path never re-derives a sensitivity: it evaluates the analytic l1 sensitivities of
``dpxattn.reference.sensitivity`` (replace-one-row adjacency; ``proofs_notes/17-sensitivity.md``)
once per build, exactly or at the reference's precision, and rounds each to float64 **upward**
(:func:`dpxattn.fast.directed.float_up`), so the noise is never smaller than the proof assumes.

* ``direct``: ``Delta_S = (2 d_v R_w + 1) sum_alpha M_alpha`` (``direct_statistic``);
* ``tree``, per column (value columns: R_w; the denominator: weight 1): ``c0 = 2 R_w``,
  ``c1 = 2 R_w T_s(t_max)``, and per (coordinate t, moment m) ``2 R_w M_t^m`` per level
  (``tree_level``), with M_t the exact feature bounds of ``dpxattn.reference.kernel``.

Spec: PAPER.md §5 items 8 and 13, §3.7; DESIGN §1 (privacy unit).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fractions import Fraction

from dpxattn.fast.directed import exact_fraction, float_up

__all__ = ["direct_sensitivity", "tree_sensitivities", "round_up"]

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


def direct_sensitivity(*, d: int, degree: int, R, R_w, d_v: int, scale=None) -> float:
    """l1 sensitivity of S = P(K)^T [V, 1] (r x (d_v + 1)), float64 rounded up."""
    return _direct(d, degree, _key(R), _key(R_w), d_v, _key(scale))


@lru_cache(maxsize=64)
def _tree(d, degree, R, R_w, d_v, scale):
    from dpxattn.reference import kernel, sensitivity

    M = kernel.feature_bounds(d, degree, R, scale=scale)
    weights = [R_w] * d_v + [1]
    scal = np.empty((d_v + 1, 2), dtype=np.float64)
    nodes = np.empty((d_v + 1, len(M), 3), dtype=np.float64)
    per_weight: dict = {}
    for k, w in enumerate(weights):
        if w not in per_weight:
            c0 = round_up(sensitivity.c0(w), "c0 sensitivity")
            c1 = round_up(sensitivity.c1(d, degree, R, w, scale=scale), "c1 sensitivity")
            lv = np.array([[round_up(sensitivity.tree_level(M_t, m, w), "tree_level sensitivity")
                            for m in range(3)] for M_t in M])
            per_weight[w] = (c0, c1, lv)
        c0, c1, lv = per_weight[w]
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
