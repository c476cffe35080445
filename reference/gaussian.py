"""The analytic Gaussian mechanism, exactly: delta(eps) for a given sigma, the smallest sigma.

Paper: none - the paper uses truncated Laplace noise only (PAPER.md §2.1); the Gaussian law is
our alternative calibration on the **l2** sensitivity of the whole released vector. The law
here is Balle & Wang 2018 ("Improving the Gaussian mechanism for differential privacy:
analytical calibration and optimal denoising", Theorem 8). Proof note:
``proofs_notes/24-analytic-gaussian.md``.

Claim. Let M(D) = f(D) + Z with Z ~ N(0, sigma^2 I_k) and sup ||f(D) - f(D')||_2 <= Delta_2 over
neighbours. M is (eps, delta)-DP if and only if

    delta >= Phi(Delta_2 / (2 sigma) - eps sigma / Delta_2)
             - e^eps Phi(-Delta_2 / (2 sigma) - eps sigma / Delta_2),

the right-hand side being exactly the hockey-stick divergence
sup_S P[Z in S] - e^eps P[Z + v in S] for any shift v with ||v||_2 = Delta_2 (rotation
invariance reduces it to one dimension; it increases with ||v||_2, so the worst neighbours are
those at the full sensitivity). The whole release is **one** such component: its k coordinates
are not composed.

Functions: :func:`delta_for_sigma` (the closed form), :func:`hockey_stick` (the same divergence
for an arbitrary shift and eps'), :func:`hockey_stick_quadrature` (the divergence by numerical
integration, independent of the closed form: the tests' check of it), :func:`sigma_for`
(the smallest sigma meeting (eps, delta), certified upward), :func:`ppf` and :func:`sample`
(the one-uniform inversion the fast path mirrors: z = sigma Phi^{-1}(u)).
"""

from __future__ import annotations

from mpmath.libmp import mpf_pos, round_ceiling

from dpxattn.errors import ParameterError, UniformsError
from dpxattn.params import check_eps, check_positive, check_real
from dpxattn.reference._mp import context, resolve_prec, to_mpf

__all__ = [
    "GUARD_BITS",
    "delta_for_sigma",
    "hockey_stick",
    "hockey_stick_quadrature",
    "sigma_for",
    "ppf",
    "sample",
]

#: extra working bits of :func:`sigma_for`'s evaluations beyond the requested precision
GUARD_BITS = 64


def _check_delta_open(delta):
    """0 < delta < 1 (the Gaussian law has no 1/2 limit, unlike the truncated Laplace)."""
    check_real("delta", delta)
    x = float(delta)
    if not (0.0 < x < 1.0):
        raise ParameterError("delta", "must satisfy 0 < delta < 1", delta)
    return delta


def _ncdf(ctx, x):
    """Phi(x) = erfc(-x / sqrt 2) / 2, accurate in both tails (no cancellation)."""
    return ctx.erfc(-x / ctx.sqrt(2)) / 2


def _divergence(ctx, shift, eps, sigma):
    """Phi(s/(2 sigma) - eps sigma/s) - e^eps Phi(-s/(2 sigma) - eps sigma/s), s = |shift| > 0."""
    a = shift / (2 * sigma)
    b = eps * sigma / shift
    return _ncdf(ctx, a - b) - ctx.exp(eps) * _ncdf(ctx, -a - b)


def delta_for_sigma(sigma, sensitivity, eps, *, prec=None):
    """The exact delta(eps) of the Gaussian mechanism N(0, sigma^2 I) on l2 sensitivity Delta_2.

    Balle & Wang 2018, Theorem 8: delta = Phi(Delta/(2 sigma) - eps sigma/Delta) - e^eps
    Phi(-Delta/(2 sigma) - eps sigma/Delta), the smallest delta for which the mechanism is
    (eps, delta)-DP. Paper: none (our Gaussian calibration; PAPER.md §2.1 has only TLap).
    Proof note: ``proofs_notes/24-analytic-gaussian.md``.
    """
    check_positive("sigma", sigma)
    check_positive("sensitivity", sensitivity)
    check_eps(eps)
    ctx = context(prec)
    return _divergence(ctx, to_mpf(sensitivity, ctx, "sensitivity"), to_mpf(eps, ctx, "eps"),
                       to_mpf(sigma, ctx, "sigma"))


def _shift_norm(shift, ctx):
    """The l2 norm of a scalar or a sequence of reals (exact inputs converted once)."""
    if hasattr(shift, "__len__") and not isinstance(shift, str):
        items = list(shift.tolist() if hasattr(shift, "tolist") else shift)
        if not items:
            raise ParameterError("shift", "must be a real number or a non-empty sequence", shift)
        vals = [to_mpf(check_real(f"shift[{i}]", v), ctx, "shift") for i, v in enumerate(items)]
    else:
        vals = [to_mpf(check_real("shift", shift), ctx, "shift")]
    if not all(ctx.isfinite(v) for v in vals):
        raise ParameterError("shift", "must be finite", shift)
    return ctx.sqrt(ctx.fsum(v * v for v in vals))


def hockey_stick(shift, eps_prime, sigma, *, prec=None):
    """sup_S P[Z in S] - e^{eps'} P[Z + shift in S] for Z ~ N(0, sigma^2 I), exactly.

    ``shift`` is a real or a vector (only its l2 norm matters). Zero shift gives
    max(0, 1 - e^{eps'}); ``eps_prime`` may be any real (negative too). At shift = Delta_2 and
    eps' = eps this is :func:`delta_for_sigma`. Paper: none (Balle & Wang 2018, Theorem 8).
    Proof note: ``proofs_notes/24-analytic-gaussian.md``.
    """
    check_positive("sigma", sigma)
    ctx = context(prec)
    lg = to_mpf(check_real("eps_prime", eps_prime), ctx, "eps_prime")
    if not ctx.isfinite(lg):
        raise ParameterError("eps_prime", "must be finite", eps_prime)
    s = _shift_norm(shift, ctx)
    if s == 0:
        return ctx.mpf(max(0, 1 - ctx.exp(lg)))
    return _divergence(ctx, s, lg, to_mpf(sigma, ctx, "sigma"))


def hockey_stick_quadrature(shift, eps_prime, sigma, *, prec=None):
    """The same divergence as :func:`hockey_stick`, by tanh-sinh quadrature of
    max(0, phi(x) - e^{eps'} phi(x - s)) over the line, split at the crossing point
    x* = s/2 - eps' sigma^2 / s (independent of the closed form; for the tests).

    Paper: none. Proof note: ``proofs_notes/24-analytic-gaussian.md``.
    """
    check_positive("sigma", sigma)
    ctx = context(prec)
    lg = to_mpf(check_real("eps_prime", eps_prime), ctx, "eps_prime")
    sg = to_mpf(sigma, ctx, "sigma")
    s = _shift_norm(shift, ctx)
    if s == 0:
        return ctx.mpf(max(0, 1 - ctx.exp(lg)))
    norm = 1 / (sg * ctx.sqrt(2 * ctx.pi))
    def phi(x):
        return norm * ctx.exp(-(x / sg) ** 2 / 2)
    def integrand(x):
        return phi(x) - ctx.exp(lg) * phi(x - s)
    # log(phi(x) / phi(x - s)) = (s^2 - 2 x s) / (2 sigma^2) >= eps' exactly for x <= cross
    cross = s / 2 - lg * sg * sg / s
    return ctx.quad(integrand, [-ctx.inf, cross - 8 * sg, cross - sg, cross])


def sigma_for(sensitivity, eps, delta, *, prec=None):
    """The smallest sigma for which N(0, sigma^2 I) on l2 sensitivity Delta_2 is (eps, delta)-DP,
    certified upward: the returned sigma (an mpf at ``prec`` bits, rounded up) satisfies
    delta_for_sigma(sigma) <= delta, and is within a relative 2^-(prec - 8) of the true minimum.

    Method: delta_for_sigma decreases strictly in sigma; bracket by doubling and bisect in
    sigma at prec + GUARD_BITS bits; the upper end is kept only if its delta is below
    delta (1 - 2^-(prec - 8)), a relative margin far above the evaluation error of mpmath's
    erfc at that precision. Paper: none (Balle & Wang 2018, Algorithm 1 solves the same
    equation). Proof note: ``proofs_notes/24-analytic-gaussian.md``.
    """
    check_positive("sensitivity", sensitivity)
    check_eps(eps)
    _check_delta_open(delta)
    p = resolve_prec(prec)
    ctx = context(p + GUARD_BITS)
    D, e, dl = (to_mpf(x, ctx, n) for x, n in ((sensitivity, "sensitivity"), (eps, "eps"),
                                              (delta, "delta")))
    target = dl * (1 - ctx.mpf(2) ** -(p - 8))
    f = lambda sg: _divergence(ctx, D, e, sg)  # noqa: E731
    hi = D
    while f(hi) > target:
        hi *= 2
    lo = hi / 2
    while f(lo) <= target:
        lo /= 2
        if lo < D * ctx.mpf(2) ** -200:
            raise ParameterError("delta", "is so large that no positive sigma is the smallest", delta)
    rel = ctx.mpf(2) ** -(p - 4)
    while hi - lo > rel * hi:
        mid = (lo + hi) / 2
        if f(mid) <= target:
            hi = mid
        else:
            lo = mid
    out = context(p)
    return out.make_mpf(mpf_pos(hi._mpf_, p, round_ceiling))


def ppf(u, sigma, *, prec=None):
    """The Gaussian draw for one uniform u in (0, 1): sigma Phi^{-1}(u) = sigma sqrt(2)
    erfinv(2u - 1) (u = 1/2 gives exactly 0; the fast path evaluates the same map in float64).

    Paper: none. Proof note: ``proofs_notes/24-analytic-gaussian.md``.
    """
    check_positive("sigma", sigma)
    p = resolve_prec(prec)
    ctx = context(p)
    x = to_mpf(check_real("u", u), ctx, "u")
    if not (0 < x < 1):
        raise UniformsError("u", "must lie strictly inside (0, 1)", u)
    # 2u - 1 must be exact: near 0 or 1 that takes about log2(1 / min(u, 1 - u)) more bits
    tail = min(x, 1 - x)
    work = context(p + GUARD_BITS + max(0, -int(ctx.floor(ctx.log(tail, 2)))))
    xw = work.mpf(x)
    z = work.mpf(to_mpf(sigma, ctx, "sigma")) * work.sqrt(2) * work.erfinv(2 * xw - 1)
    return ctx.mpf(z)


def sample(uniforms, sigma, *, prec=None) -> list:
    """Gaussian draws ``[ppf(u, sigma) for u in uniforms]`` in order (a list of mpf).

    Paper: none. Proof note: ``proofs_notes/24-analytic-gaussian.md``.
    """
    return [ppf(u, sigma, prec=prec) for u in uniforms]
