"""Public constants of ``domain="ball"`` for the fast path, from the reference, rounded safely.

The fast path never re-derives a bound: it evaluates the reference's named functions
(:mod:`dpxattn.reference.ball`, :mod:`dpxattn.reference.ball_sensitivity`; proof note
``proofs_notes/27-ball-domain.md``) once per parameter set and rounds each to float64 in the
safe direction (:func:`dpxattn.fast.sensitivities.round_up` for sensitivities, sigma and
feature bounds; :func:`dpxattn.fast.directed.float_down` for the denominator floor). Memoised
on public parameters only. Keys and queries: l2 norm <= R (validation in
:func:`dpxattn.fast.validation.check_ball_rows`). Spec: DESIGN §10 ("Domains"); PAPER.md §5
items 3 and 8.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from dpxattn.fast.directed import exact_fraction, float_down, memo_safe
from dpxattn.fast.sensitivities import round_up

__all__ = ["resolve_ball_scale", "ball_feature_bounds", "ball_direct_sensitivity",
           "ball_gaussian_constants", "ball_denominator_floor", "check_ball_degree", "ball_plan_note"]


def _key(x):
    return None if x is None else exact_fraction("value", x)


def _call(fn, *args):
    """``fn`` memoised by the arguments as given when they are hashable public numbers."""
    if memo_safe(*args):
        return fn(*(a if isinstance(a, int) else _key(a) for a in args))
    return fn.__wrapped__(*(a if isinstance(a, int) else _key(a) for a in args))


def resolve_ball_scale(scale):
    """``scale`` itself, or the ball's default (1) for None (``reference.ball.ball_scale``)."""
    from dpxattn.reference.ball import DEFAULT_BALL_SCALE

    return DEFAULT_BALL_SCALE if scale is None else scale


@lru_cache(maxsize=256)
def _bounds(d, degree, R, scale) -> tuple:
    from dpxattn.reference import ball

    return tuple(round_up(m, "M_alpha (ball)")
                 for m in ball.ball_feature_bounds(d, degree, R, scale=scale))


def ball_feature_bounds(d: int, degree: int, R, *, scale, device=None) -> torch.Tensor:
    """(r,) float64: M_alpha = sup_{||x|| <= R} |P(x)_alpha|, rounded up (a new tensor)."""
    return torch.tensor(_call(_bounds, d, degree, R, scale), dtype=torch.float64, device=device)


@lru_cache(maxsize=256)
def _l1(d, degree, R, R_w, d_v, scale) -> float:
    from dpxattn.reference.ball_sensitivity import ball_direct_statistic

    return round_up(ball_direct_statistic(d, degree, R, R_w, d_v, scale=scale), "Delta_S (ball)")


def ball_direct_sensitivity(*, d: int, degree: int, R, R_w, d_v: int, scale) -> float:
    """l1 sensitivity of S on the ball (``ball_direct_statistic``), float64 rounded up."""
    return _call(_l1, d, degree, R, R_w, d_v, scale)


@lru_cache(maxsize=256)
def _gauss(d, degree, R, R_w, d_v, scale, eps, delta) -> tuple[float, float]:
    from dpxattn.reference.direct import gaussian_constants

    Delta2, sigma = gaussian_constants(d, degree, R, R_w, d_v, eps, delta, scale=scale,
                                       domain="ball")
    return round_up(Delta2, "Delta_2 (ball)"), round_up(sigma, "sigma (ball)")


def ball_gaussian_constants(*, d: int, degree: int, R, R_w, d_v: int, eps, delta,
                            scale) -> tuple[float, float]:
    """``(Delta_2, sigma)`` of the Gaussian ``direct`` release on the ball, rounded up."""
    return _call(_gauss, d, degree, R, R_w, d_v, scale, eps, delta)


@lru_cache(maxsize=256)
def _floor(n, degree, R, scale) -> float:
    from dpxattn.reference import ball

    return float_down(ball.ball_denominator_floor(n, degree, R, scale=scale), "n tau")


def ball_denominator_floor(*, n: int, degree: int, R, scale) -> float:
    """n tau rounded down: the public lower bound of the Taylor denominator on the ball (raises
    the reference's ParameterError for an odd degree with T_s(-scale R^2) <= 0)."""
    return _call(_floor, n, degree, R, scale)


@lru_cache(maxsize=256)
def _degree(degree, R, scale) -> bool:
    from dpxattn.reference import ball

    ball.ball_kernel_floor(degree, R, scale=scale)
    return True


def check_ball_degree(*, degree: int, R, scale) -> None:
    """The ball's degree rule (``reference.ball.ball_kernel_floor``): an even degree, or an odd
    one with T_s(-scale R^2) > 0 certified; else the reference's ParameterError."""
    _call(_degree, degree, R, scale)


def ball_plan_note(clip: bool) -> str:
    """The privacy plan's line for a ball structure (``reference.ball.ball_plan_note``)."""
    from dpxattn.reference import ball

    return ball.ball_plan_note(clip)
