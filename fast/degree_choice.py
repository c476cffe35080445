"""The smallest Taylor degree whose certified kernel error eps_s meets a target (public).

eps_s = sup |1 - e^{-t} T_s(t)| over the logits t the domain allows is the kernel's relative
error against exact softmax attention (PAPER.md §2.3; v2 App. I). It depends on public numbers
only (R, scale, d, the domain), never on the data, so choosing the degree with it costs no
privacy. The certificate is the reference's, in interval arithmetic (never below the truth):

* ``domain="box"`` (keys and queries in [0, R]^d): logits in [0, scale d R^2],
  :func:`dpxattn.reference.kernel.certified_eps_s` (unsigned);
* ``domain="ball"`` (l2 norm <= R): logits in [-a, a], a = scale R^2,
  :func:`dpxattn.reference.kernel.certified_eps_s_logits`; a degree is admissible only if the
  ball's denominator bound exists, the rule ``build(domain="ball")`` enforces
  (:func:`dpxattn.reference.ball.ball_kernel_floor`: even s, or odd s with T_s(-a) > 0
  certified). ``even_only=True`` keeps even degrees only.

The feature dimension r = C(d + s, s) of each candidate is reported, since r drives memory,
time and (through T_s) the noise: a target that needs a large s may be infeasible at large d.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from dpxattn.accounting import feature_dimension
from dpxattn.errors import ParameterError
from dpxattn.params import check_positive, check_positive_int

__all__ = ["DegreeChoice", "choose_degree", "certified_kernel_error"]

MAX_DEGREE = 12


@dataclass(frozen=True)
class DegreeChoice:
    """``degree`` s, its certified ``eps_s`` (float, rounded up from the reference's bound),
    the feature dimension ``r`` = C(d + s, s), the logit bound ``logit_max`` (box: scale d R^2;
    ball: scale R^2, logits in [-logit_max, logit_max]) and the ``domain``. Paper: PAPER.md §2.3."""

    degree: int
    eps_s: float
    r: int
    logit_max: float
    domain: str


def _default_scale(domain: str, d: int):
    if domain == "ball":
        from dpxattn.reference.ball import DEFAULT_BALL_SCALE

        return DEFAULT_BALL_SCALE
    return Fraction(1, d)


def _up(x) -> float:
    """mpf -> the nearest float that is >= x (never below the certificate)."""
    import math

    import mpmath

    f = float(x)
    return f if mpmath.mpf(f) >= x else math.nextafter(f, math.inf)


def certified_kernel_error(degree: int, *, R, d: int, scale=None, domain: str = "ball") -> float:
    """The reference's certified eps_s for this domain (module docstring), as a float rounded
    up. For the ball, raises :class:`ParameterError` (from ``ball_kernel_floor``) if the degree
    has no positive denominator bound there. Paper: eps_s, PAPER.md §2.3 (v2 App. I)."""
    from dpxattn.reference import kernel

    d = check_positive_int("d", d)
    check_positive("R", R)
    if domain not in ("ball", "box"):
        raise ParameterError("domain", "must be 'ball' or 'box'", domain)
    scale = _default_scale(domain, d) if scale is None else scale
    if domain == "box":
        return _up(kernel.certified_eps_s(R, degree, d, scale=scale))
    from dpxattn.reference import ball

    ball.ball_kernel_floor(degree, R, scale=scale)
    return _up(kernel.certified_eps_s_logits(ball.logit_bound(R, scale), degree, signed=True))


def choose_degree(eps_s_target, *, R, d: int, scale=None, domain: str = "ball",
                  even_only: bool = False, max_degree: int = MAX_DEGREE,
                  max_r: int | None = None) -> DegreeChoice:
    """The smallest admissible degree s <= ``max_degree`` with certified eps_s <= target.

    ``scale``: the inverse temperature (None: the domain's default, 1 for the ball, 1/d for the
    box). ``max_r``: refuse candidates whose r = C(d + s, s) exceeds it. Raises
    :class:`ParameterError` naming ``eps_s_target`` (with the best eps_s reached) when none
    qualifies. Public: reads no data. Paper: degree choice s of the polynomial-kernel lemma (v2
    App. I; PAPER.md §2.3), box form = ``reference.kernel.select_degree``."""
    check_positive("eps_s_target", eps_s_target)
    d = check_positive_int("d", d)
    max_degree = check_positive_int("max_degree", max_degree, minimum=0)
    from dpxattn.reference import ball as ref_ball

    scale_used = _default_scale(domain, d) if scale is None else scale
    best = None
    for s in range(max_degree + 1):
        if even_only and s % 2:
            continue
        r = feature_dimension(d, s)
        if max_r is not None and r > max_r:
            break
        try:
            err = certified_kernel_error(s, R=R, d=d, scale=scale_used, domain=domain)
        except ParameterError:
            if domain == "ball":
                continue  # odd degree without a positive denominator floor: not admissible
            raise
        best = err if best is None else min(best, err)
        if err <= float(eps_s_target):
            logit = (float(ref_ball.logit_bound(R, scale_used)) if domain == "ball"
                     else float(Fraction(scale_used) * d * Fraction(R) ** 2))
            return DegreeChoice(s, err, r, logit, domain)
    limit = f"degree <= {max_degree}" + (f" and r <= {max_r}" if max_r is not None else "")
    raise ParameterError("eps_s_target", f"is not reached by any admissible {limit} "
                         f"(best certified eps_s {best:.3g})", eps_s_target,
                         hint="lower R or scale, or allow a larger degree")
