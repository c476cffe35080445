"""Truncated Laplace TLap(Delta, eps, delta), exactly, at an explicit precision.

Paper: Definition "truncated Laplace", Fact (moments) and Lemma (TLap mechanism)
(v2 §2 / App. B); spec PAPER.md §2.1; predecessor GDGK20 (PAPER App. A.4).
Proof notes: ``proofs_notes/02-tlap-law.md`` (law, moments, inversion),
``proofs_notes/03-tlap-privacy-tightness.md`` (hockey-stick divergence, tightness),
``proofs_notes/04-vector-extension.md`` (vector extension).

Parameters: sensitivity Delta > 0, eps > 0 (finite), 0 < delta <= 1/2 (validated with
:mod:`dpxattn.params`). With ``c = e^eps - 1``:

* ``b = Delta/eps`` (:func:`scale`), ``a = ln(1 + c/(2 delta))`` (:func:`truncation`),
  ``A = b a`` (:func:`support_bound`), ``B = 1/(2 b (1 - e^{-a})) = (eps/(2 Delta))(1 + 2 delta/c)``
  (:func:`normalizer`);
* density ``B e^{-|z|/b}`` on ``[-A, A]``.

Every function takes ``prec=`` (bits, default :data:`dpxattn.reference._mp.DEFAULT_PREC`) and
returns mpf values of a private context at that precision; inputs (int, float, Fraction, str,
mpf, numpy scalars) are converted exactly (:func:`dpxattn.reference._mp.to_mpf`). Closed forms
are written without cancellation (``1 - e^{-a} = c/(c + 2 delta)``, ``e^{-a} = 2 delta/(c + 2 delta)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np

from dpxattn.errors import ParameterError, UniformsError
from dpxattn.params import check_delta, check_eps, check_positive, check_real
from dpxattn.reference._mp import context, to_fraction, to_mpf, to_vector

__all__ = [
    "scale",
    "truncation",
    "support_bound",
    "normalizer",
    "variance",
    "pdf",
    "cdf",
    "tail",
    "ppf",
    "sample",
    "hockey_stick",
    "hockey_stick_2d",
    "uncovered_mass",
    "vector_extension_delta",
]

_CITE = "TLap (v2 §2 / App. B); spec PAPER.md §2.1"


@dataclass(frozen=True)
class _Law:
    """The constants of one TLap(Delta, eps, delta) law at one precision."""

    ctx: mpmath.MPContext
    Delta: object
    eps: object
    delta: object
    c: object          # e^eps - 1
    b: object          # Delta / eps
    a: object          # ln(1 + c / (2 delta))
    em_a: object       # e^{-a} = 2 delta / (c + 2 delta)
    one_m_em_a: object  # 1 - e^{-a} = c / (c + 2 delta)
    Bb: object         # B b = 1 / (2 (1 - e^{-a}))


def _law(sensitivity, eps, delta, prec) -> _Law:
    check_positive("sensitivity", sensitivity)
    check_eps(eps)
    check_delta(delta)
    ctx = context(prec)
    D = to_mpf(sensitivity, ctx, "sensitivity")
    e = to_mpf(eps, ctx, "eps")
    dl = to_mpf(delta, ctx, "delta")
    if not (dl <= ctx.mpf(1) / 2):  # exact re-check after conversion (e.g. mpf inputs)
        raise ParameterError("delta", "must satisfy 0 < delta <= 1/2", delta)
    c = ctx.expm1(e)
    denom = c + 2 * dl
    return _Law(ctx=ctx, Delta=D, eps=e, delta=dl, c=c, b=D / e, a=ctx.log1p(c / (2 * dl)),
                em_a=2 * dl / denom, one_m_em_a=c / denom, Bb=denom / (2 * c))


def scale(sensitivity, eps, delta, *, prec=None):
    """Laplace scale b = Delta/eps of TLap(Delta, eps, delta).

    Paper: TLap definition, "density proportional to exp(-eps |z| / Delta)" (v2 §2 / App. B); spec PAPER.md §2.1. Proof note: ``proofs_notes/02-tlap-law.md``.
    ``delta`` is validated (it is a parameter of the law) though b does not depend on it.
    """
    return _law(sensitivity, eps, delta, prec).b


def truncation(sensitivity, eps, delta, *, prec=None):
    """Dimensionless truncation a = ln(1 + (e^eps - 1)/(2 delta)), so that A = b a.

    Paper: TLap definition (v2 §2 / App. B); spec PAPER.md §2.1.
    Proof note: ``proofs_notes/02-tlap-law.md``.
    """
    return _law(sensitivity, eps, delta, prec).a


def support_bound(sensitivity, eps, delta, *, prec=None):
    """Support half-width A = (Delta/eps) ln(1 + (e^eps - 1)/(2 delta)); |Z| <= A surely.

    The paper calls this bound "B". A >= Delta exactly when delta <= 1/2.
    Paper: TLap definition and lemma ("always accurate up to the truncation bound")
    (v2 §2 / App. B); spec PAPER.md §2.1. Proof note:
    ``proofs_notes/02-tlap-law.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    return law.b * law.a


def normalizer(sensitivity, eps, delta, *, prec=None):
    """Density constant B = 1/(2 b (1 - e^{-a})) = (eps/(2 Delta)) (1 + 2 delta/(e^eps - 1)).

    Paper: TLap definition (v2 §2 / App. B); spec PAPER.md §2.1.
    Proof note: ``proofs_notes/02-tlap-law.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    return law.Bb / law.b


def variance(sensitivity, eps, delta, *, prec=None):
    """Var Z = (2 Delta^2/eps^2) (1 - delta (a^2 + 2a)/(e^eps - 1)); E Z = 0.

    Paper: Fact (moments of TLap) (v2 §2 / App. B); spec PAPER.md §2.1.
    Proof note: ``proofs_notes/02-tlap-law.md`` (derivation from the density).
    """
    law = _law(sensitivity, eps, delta, prec)
    a = law.a
    return 2 * law.b**2 * (1 - law.delta * (a * a + 2 * a) / law.c)


def pdf(x, sensitivity, eps, delta, *, prec=None):
    """Density f(x) = B exp(-|x|/b) for |x| <= A, else 0 (support closed).

    Paper: TLap definition (v2 §2 / App. B); spec PAPER.md §2.1.
    Proof note: ``proofs_notes/02-tlap-law.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    ctx = law.ctx
    t = abs(to_mpf(x, ctx, "x")) / law.b
    if ctx.isnan(t):
        raise ParameterError("x", "must not be NaN", x)
    if t > law.a:
        return ctx.zero
    return law.Bb / law.b * ctx.exp(-t)


def cdf(x, sensitivity, eps, delta, *, prec=None):
    """F(x) = 1/2 + sign(x) (1 - e^{-|x|/b}) / (2 (1 - e^{-a})) on [-A, A]; 0 below, 1 above.

    Paper: TLap definition (v2 §2 / App. B); spec PAPER.md §2.1.
    Proof note: ``proofs_notes/02-tlap-law.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    ctx = law.ctx
    z = to_mpf(x, ctx, "x")
    if ctx.isnan(z):
        raise ParameterError("x", "must not be NaN", x)
    t = abs(z) / law.b
    if t >= law.a:
        return ctx.one if z > 0 else ctx.zero
    # lower tail P[Z <= -|z|] = B b (e^{-t} - e^{-a}) = B b e^{-a} (e^{a - t} - 1): no cancellation
    lower = law.Bb * law.em_a * ctx.expm1(law.a - t)
    return lower if z < 0 else 1 - lower


def tail(t, sensitivity, eps, delta, *, prec=None):
    """P[|Z| > t] = (e^{-t/b} - e^{-a})/(1 - e^{-a}) for 0 <= t <= A; 1 for t < 0; 0 for t >= A.

    Paper: TLap definition (v2 §2 / App. B); spec PAPER.md §2.1.
    Proof note: ``proofs_notes/02-tlap-law.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    ctx = law.ctx
    s = to_mpf(t, ctx, "t")
    if ctx.isnan(s):
        raise ParameterError("t", "must not be NaN", t)
    if s < 0:
        return ctx.one
    x = s / law.b
    if x >= law.a:
        return ctx.zero
    # e^{-x} - e^{-a} = e^{-a} (e^{a - x} - 1), no cancellation
    return law.em_a * ctx.expm1(law.a - x) / law.one_m_em_a


def _ppf(law: _Law, u, index=None):
    ctx = law.ctx
    where = "uniforms" if index is None else f"uniforms[{index}]"
    v = to_mpf(u, ctx, "u" if index is None else where)
    if not (ctx.isfinite(v) and 0 < v < 1):
        raise UniformsError("u" if index is None else where,
                            "must lie strictly inside the open interval (0, 1)", u)
    # m = min(u, 1 - u) (exact: 1 - u for u >= 1/2 is exact for float input, Sterbenz), and
    # 1 - |2u - 1| (1 - e^{-a}) = e^{-a} + 2 m (1 - e^{-a}), evaluated without cancellation.
    m = v if 2 * v < 1 else 1 - v
    mag = -law.b * ctx.log(law.em_a + 2 * m * law.one_m_em_a)
    return -mag if 2 * v < 1 else mag


def ppf(u, sensitivity, eps, delta, *, prec=None):
    """Inverse CDF: the TLap draw for one uniform u in (0, 1) (the convention's one-uniform map).

    ``u < 1/2``: ``b ln(1 - (1 - 2u)(1 - e^{-a}))`` (negative); ``u >= 1/2``:
    ``-b ln(1 - (2u - 1)(1 - e^{-a}))``; so ``cdf(ppf(u)) = u`` and ``|ppf(u)| < A``.
    Evaluated as ``-/+ b ln(e^{-a} + 2 m (1 - e^{-a}))`` with ``m = min(u, 1 - u)`` (the same
    number, without cancellation; ``ppf(1 - u) = -ppf(u)`` exactly when 1 - u is exact).
    u outside (0, 1) (or NaN) raises :class:`dpxattn.errors.UniformsError`.
    Paper: TLap sampler (v2 §2 / App. B); spec PAPER.md §2.1;
    ``proofs_notes/01-conventions.md`` (uniforms). Proof note: ``proofs_notes/02-tlap-law.md``.
    """
    return _ppf(_law(sensitivity, eps, delta, prec), u)


def sample(uniforms, sensitivity, eps, delta, *, prec=None) -> list:
    """TLap draws ``[ppf(u) for u in uniforms]`` (a list of mpf, same length, same order).

    ``uniforms``: a 1-D array or sequence of numbers strictly inside (0, 1); any entry outside
    raises :class:`dpxattn.errors.UniformsError` naming its index. Deterministic given the
    uniforms: randomness enters only through them (DESIGN §5).
    Paper: TLap sampler (v2 §2 / App. B); spec PAPER.md §2.1.
    Proof note: ``proofs_notes/02-tlap-law.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    if isinstance(uniforms, np.ndarray) and uniforms.ndim != 1:
        raise UniformsError("uniforms", "must be a 1-D array", f"shape {uniforms.shape}")
    if hasattr(uniforms, "__len__") and len(uniforms) == 0:
        return []
    try:
        values = to_vector(uniforms, law.ctx, "uniforms")
    except ValueError as err:
        raise UniformsError("uniforms", "must be a 1-D array of numbers in (0, 1)",
                            hint=str(err)) from None
    return [_ppf(law, u, i) for i, u in enumerate(values)]


# --------------------------------------------------------------------------------------------
# Hockey-stick divergence, exactly (piecewise exponentials)
# --------------------------------------------------------------------------------------------

def _check_real(name: str, value, ctx):
    v = to_mpf(check_real(name, value), ctx, name)
    if not ctx.isfinite(v):
        raise ParameterError(name, "must be a finite real number", value)
    return v


def _pieces_integral(ctx, a, sigma, log_gamma):
    """J = int max(0, phi(x) - e^{log_gamma} phi(x - sigma)) dx, phi(x) = e^{-|x|} 1[|x| <= a].

    Dimensionless (x = z/b); sigma >= 0; log_gamma real, or None for "no subtracted term"
    (then J = int phi = 2 (1 - e^{-a})). On each interval between the breakpoints
    {-a, 0, a, sigma - a, sigma, sigma + a} the integrand is P e^x + Q e^{-x}, which changes
    sign at most once (at x0 = ln(-Q/P)/2); each positive part is integrated in closed form.
    """
    pts = sorted({-a, ctx.zero, a, sigma - a, sigma, sigma + a})
    total = ctx.zero
    for left, right in zip(pts, pts[1:]):
        mid = (left + right) / 2
        f_on = abs(mid) <= a
        g_on = log_gamma is not None and abs(mid - sigma) <= a
        if not f_on:
            continue  # the integrand is max(0, -gamma g) = 0
        x_neg = mid < 0
        y_neg = mid < sigma
        if not g_on:
            P, Q = (ctx.one, ctx.zero) if x_neg else (ctx.zero, ctx.one)
        elif x_neg:  # then y < 0 too: (1 - e^{lg - sigma}) e^x
            P, Q = -ctx.expm1(log_gamma - sigma), ctx.zero
        elif y_neg:  # e^{-x} - e^{lg - sigma} e^{x}
            P, Q = -ctx.exp(log_gamma - sigma), ctx.one
        else:  # (1 - e^{lg + sigma}) e^{-x}
            P, Q = ctx.zero, -ctx.expm1(log_gamma + sigma)
        cuts = [left, right]
        if P != 0 and Q != 0 and (P > 0) != (Q > 0):
            x0 = ctx.log(-Q / P) / 2
            if left < x0 < right:
                cuts = [left, x0, right]
        for lo, hi in zip(cuts, cuts[1:]):
            m = (lo + hi) / 2
            if P * ctx.exp(m) + Q * ctx.exp(-m) > 0:
                total += P * (ctx.exp(hi) - ctx.exp(lo)) - Q * (ctx.exp(-hi) - ctx.exp(-lo))
    return total


def hockey_stick(shift, eps_prime, sensitivity, eps, delta, *, prec=None):
    """sup_S P[Z in S] - e^{eps'} P[Z + shift in S] for Z ~ TLap(Delta, eps, delta), exactly.

    Equals ``int max(0, f(z) - e^{eps'} f(z - shift)) dz`` (the supremum is attained at
    S = {f > e^{eps'} f(. - shift)}), evaluated in closed form piece by piece. It depends on
    |shift| only. Facts checked in the tests and proved in
    ``proofs_notes/03-tlap-privacy-tightness.md``: for |shift| <= Delta and eps' = eps it equals
    :func:`uncovered_mass` (= delta exactly at |shift| = Delta: the mechanism is (eps, delta)-DP
    and the delta is tight); for |shift| > Delta it exceeds delta.
    ``eps_prime`` may be any finite real (eps' >= 0 is the DP quantity).
    Paper: Lemma (TLap mechanism) (v2 §2 / App. B); spec PAPER.md §2.1.
    """
    law = _law(sensitivity, eps, delta, prec)
    ctx = law.ctx
    s = abs(_check_real("shift", shift, ctx))
    lg = _check_real("eps_prime", eps_prime, ctx)
    sigma = (s / law.Delta) * law.eps  # shift / b, exact eps when shift == Delta
    return law.Bb * _pieces_integral(ctx, law.a, sigma, lg)


def uncovered_mass(shift, sensitivity, eps, delta, *, prec=None):
    """P[Z not in supp(Z + shift)] = delta (e^{eps |shift|/Delta} - 1)/(e^eps - 1) for |shift| <= 2A.

    The mass of the region reachable from D but not from D' (DESIGN §6 white-box check); for
    |shift| >= 2A the supports are disjoint and it is 1. Convex in |shift| and equal to delta
    at |shift| = Delta, hence <= delta |shift|/Delta for |shift| <= Delta.
    Paper: Lemma (TLap mechanism), tightness (v2 §2 / App. B); spec PAPER.md
    §2.1. Proof note: ``proofs_notes/03-tlap-privacy-tightness.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    ctx = law.ctx
    s = abs(_check_real("shift", shift, ctx))
    sigma = (s / law.Delta) * law.eps
    if sigma >= 2 * law.a:
        return ctx.one
    return law.delta * ctx.expm1(sigma) / law.c


def vector_extension_delta(shifts, sensitivity, eps, delta, *, prec=None):
    """sum_i delta (e^{eps D_i/Delta} - 1)/(e^eps - 1) with D_i = |shifts_i|: the vector bound.

    For iid TLap(Delta, eps, delta) noise on every coordinate of a vector whose two neighbouring
    values differ by ``shifts`` with sum_i |shifts_i| <= Delta (l1 sensitivity), this bounds the
    probability that some coordinate leaves the overlap of the supports; on the overlap the
    likelihood ratio is <= e^{eps sum D_i/Delta} <= e^eps. So the noisy vector is
    (eps, result)-DP for this pair, and result <= delta (convexity). Shifts with l1 norm above
    Delta raise :class:`ParameterError` (the lemma does not apply).
    Paper: vector extension of the TLap lemma (used by DPTree; v2 §4 / App. D);
    spec PAPER.md §2.1. Proof note: ``proofs_notes/04-vector-extension.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    ctx = law.ctx
    items = _as_list(shifts)
    ds = [abs(_check_real(f"shifts[{i}]", s, ctx)) for i, s in enumerate(items)]
    l1 = sum((abs(to_fraction(s, f"shifts[{i}]")) for i, s in enumerate(items)), Fraction(0))
    if l1 > to_fraction(sensitivity, "sensitivity"):  # decided exactly, in rationals
        raise ParameterError("shifts", "must have l1 norm <= sensitivity (vector extension)",
                             hint=f"l1 norm {float(l1)!r} > {float(to_fraction(sensitivity))!r}")
    return sum((law.delta * ctx.expm1(law.eps * (d / law.Delta)) / law.c for d in ds), ctx.zero)


def _as_list(x) -> list:
    if isinstance(x, np.ndarray):
        if x.ndim != 1:
            raise ParameterError("shifts", "must be a 1-D array", f"shape {x.shape}")
        return list(x)
    if not hasattr(x, "__len__") or isinstance(x, str) or len(x) == 0:
        raise ParameterError("shifts", "must be a non-empty 1-D sequence", x)
    return list(x)


def _phi_mass(ctx, lo, hi):
    """int_lo^hi e^{-|x|} dx for lo <= hi on one side of 0 (closed form)."""
    if hi <= 0:
        return ctx.exp(hi) - ctx.exp(lo)
    return ctx.exp(-lo) - ctx.exp(-hi)


def _hs2_constant_loss(law, sig1, lg, J2):
    """The x-integral (dimensionless, without the factor (B b)^2) over the regions where the
    first coordinate's loss l1 is constant, accumulated in this order from zero:

    * uncovered, x in [-a, sigma1 - a) (f(x - s1) = 0): H1 = 1, i.e. J2(None) = 1/(B b);
    * overlap, x <= 0: l1 = sigma1, the mass times J2(eps' - sigma1);
    * overlap, x >= sigma1: l1 = -sigma1, the mass times J2(eps' + sigma1).
    """
    ctx, a = law.ctx, law.a
    total = ctx.zero
    inv_Bb = 2 * law.one_m_em_a  # J2(None) = int phi = 1/(B b)
    # uncovered region: x in [-a, sigma1 - a) (f(x - s1) = 0): H1 = 1
    lo, hi = -a, min(sig1 - a, a)
    if hi > lo:
        cut = min(max(ctx.zero, lo), hi)
        total += (_phi_mass(ctx, lo, cut) + _phi_mass(ctx, cut, hi)) * inv_Bb
    # overlap, x <= 0: l1 = sigma1
    lo, hi = max(sig1 - a, -a), min(ctx.zero, a)
    if hi > lo:
        total += _phi_mass(ctx, lo, hi) * J2(lg - sig1)
    # overlap, x >= sigma1: l1 = -sigma1
    lo, hi = sig1, a
    if hi > lo:
        total += _phi_mass(ctx, lo, hi) * J2(lg + sig1)
    return total


def _hs2_linear_loss(law, sig1, sig2, lg, J2):
    """The x-integral over the overlap 0 < x < sigma1, where l1 = sigma1 - 2x: the integrand
    e^{-x} J2(eps' - sigma1 + 2x) by tanh-sinh quadrature, split at every kink of H1 (where
    eps' - sigma1 + 2x meets +-sigma2 or +-(2a - sigma2)) so each piece is analytic.

    Returns ``(value, quadrature error estimate)``, or None when the interval is empty.
    """
    ctx, a = law.ctx, law.a
    lo, hi = max(ctx.zero, sig1 - a), min(sig1, a)
    if not hi > lo:
        return None
    pts = {lo, hi}
    for kink in (sig2, -sig2, 2 * a - sig2, sig2 - 2 * a):
        x = (kink - lg + sig1) / 2
        if lo < x < hi:
            pts.add(x)
    return ctx.quad(lambda x: ctx.exp(-x) * J2(lg - sig1 + 2 * x), sorted(pts), error=True)


def hockey_stick_2d(shifts, eps_prime, sensitivity, eps, delta, *, prec=None, error=False):
    """Hockey-stick divergence of Z and Z + (s1, s2) for Z = two iid TLap(Delta, eps, delta).

    sup_S P[Z in S] - e^{eps'} P[Z + s in S] = int max(0, f(x) f(y) - e^{eps'} f(x - s1) f(y - s2)).
    Computed as ``int f(x) H1(eps' - l1(x); s2) dx`` where ``l1(x) = ln f(x)/f(x - s1)`` is the
    first coordinate's privacy loss and H1 the exact one-dimensional divergence
    (:func:`hockey_stick` with a general eps'); the x-integral is closed form where l1 is
    constant (and 1 on the uncovered region, where f(x - s1) = 0), and mpmath tanh-sinh
    quadrature on the interval where l1 is linear, split at every kink of H1 so each piece is
    analytic (full precision). With ``error=True`` returns ``(value, quadrature error estimate)``.
    Used by the vector-extension test (split shifts stay below delta; a full shift on one
    coordinate gives exactly delta).
    Paper: vector extension of the TLap lemma (v2 §4 / App. D); spec
    PAPER.md §2.1. Proof note: ``proofs_notes/04-vector-extension.md``.
    """
    law = _law(sensitivity, eps, delta, prec)
    ctx = law.ctx
    pair = _as_list(shifts)
    if len(pair) != 2:
        raise ParameterError("shifts", "must have exactly two entries", shifts)
    s1, s2 = (abs(_check_real(f"shifts[{i}]", s, ctx)) for i, s in enumerate(pair))
    lg = _check_real("eps_prime", eps_prime, ctx)
    a = law.a
    sig1 = (s1 / law.Delta) * law.eps
    sig2 = (s2 / law.Delta) * law.eps

    def J2(log_gamma):
        return _pieces_integral(ctx, a, sig2, log_gamma)

    total = _hs2_constant_loss(law, sig1, lg, J2)
    err = ctx.zero
    linear = _hs2_linear_loss(law, sig1, sig2, lg, J2)
    if linear is not None:
        value, e = linear
        total += value
        err += e
    result = law.Bb**2 * total
    return (result, law.Bb**2 * err) if error else result
