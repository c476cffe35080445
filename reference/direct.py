"""The ``direct`` mechanism: one noisy release of the sufficient statistic S = P(K)^T [V, 1].

Not in the paper: it is the sufficient-statistics baseline that the paper's law-of-cosines
reduction collapses to (PAPER.md §3.4 "Important collapse", §5 item 8; DESIGN §2).
Proof note: ``proofs_notes/15-direct-mechanism.md``.

Conventions (``proofs_notes/01-conventions.md``, mechanism ``direct``):

* ``S = P(K)^T [V, 1]``, r x (d_v + 1): ``S[t][k] = sum_i P(k_i)_t V[i][k]`` for k < d_v and
  ``S[t][d_v] = sum_i P(k_i)_t`` (the ones column), P the Taylor feature map (feature order of
  :func:`dpxattn.reference.kernel.multi_indices`).
* Released: ``S~ = S + Z``, Z iid ``TLap(Delta_S, eps, delta)``, with the l1 sensitivity
  ``Delta_S = 2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) sum_{alpha != 0} M_alpha`` (the exact sup) under replace-one-row
  (:func:`dpxattn.reference.sensitivity.direct_statistic`), budget
  ``plan_direct(...).share("S")`` (the whole matrix is one component: vector extension).
* ``law="gaussian"``: Z iid ``N(0, sigma^2)`` instead, ``sigma = sigma_for(Delta_2, eps,
  delta)`` (the analytic Gaussian mechanism, :func:`dpxattn.reference.gaussian.sigma_for`) on
  the l2 (Frobenius) sensitivity ``Delta_2`` of the whole S
  (:func:`dpxattn.reference.sensitivity.direct_statistic_l2`, certified upward): ONE Gaussian
  component, nothing composed over entries (:func:`gaussian_constants`;
  ``proofs_notes/24-analytic-gaussian.md``).
* Uniform order (both laws): S row-major, feature index major, columns ``[V columns..., ones]``:
  the draw of entry (t, k) is ``ppf(u[t (d_v + 1) + k])`` (TLap's ppf, or ``sigma Phi^-1(u)``);
  ``noise_count = r (d_v + 1)``.
* Query at q: ``u = P(q)``, ``N_k = u . S~[:, k]``, ``D~ = max(u . S~[:, d_v], n)``, answer
  ``N_k / D~``. The noise of N_k is ``sum_t u_t Z[t][k]``, that of the unclamped denominator
  ``sum_t u_t Z[t][d_v]``: coefficients are the features of q.

Shapes: K (n x d), V (n x d_v), q (d,), S (r x (d_v + 1)), answer (d_v,).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache, partial

from dpxattn.accounting import feature_dimension, plan_direct
from dpxattn.params import check_law
from dpxattn.randomness import check_uniforms
from dpxattn.reference import ball, ball_sensitivity, gaussian, kernel, sensitivity
from dpxattn.reference import truncated_laplace as tl
from dpxattn.reference._mp import context, resolve_prec, to_mpf
from dpxattn.reference.dptree import certified_upper
from dpxattn.reference.envelope import (CopyErrorTerms, GaussianNoiseGroup, NoiseGroup,
                                        OffsetGroup)

__all__ = [
    "direct_noise_count",
    "noise_index",
    "gaussian_constants",
    "DirectRelease",
]


def gaussian_constants(d: int, degree: int, R, R_w, d_v: int, eps, delta, *, scale=None,
                       prec=None, domain: str = "box"):
    """``(Delta_2, sigma)`` of the Gaussian ``direct`` release, both certified upward (mpf).

    ``Delta_2``: :func:`dpxattn.reference.sensitivity.direct_statistic_l2` (the Frobenius
    sensitivity of S under replace-one-row) through :func:`dpxattn.reference.dptree.certified_upper`
    (evaluated 32 bits deeper, multiplied by 1 + 2^-prec upward); ``sigma``:
    :func:`dpxattn.reference.gaussian.sigma_for` (Delta_2, eps, delta), the smallest sigma for
    which N(0, sigma^2 I) on the whole S is (eps, delta)-DP, rounded up. The fast path takes
    both from here (rounded up to float64). ``domain="ball"``: Delta_2 is
    :func:`dpxattn.reference.ball_sensitivity.ball_direct_statistic_l2` (``proofs_notes/27``).
    Paper: none (Balle & Wang 2018, Thm 8; PAPER.md §5
    item 8). Proof note ``proofs_notes/24-analytic-gaussian.md``.
    """
    p = resolve_prec(prec)
    args = (d, degree, R, R_w, d_v, eps, delta, scale)
    if all(x is None or type(x) in (int, float, Fraction) for x in args):
        return _gaussian_constants_memo(*args, p, domain)  # public parameters only: memoised
    return _gaussian_constants(*args, p, domain)


def _gaussian_constants(d, degree, R, R_w, d_v, eps, delta, scale, p, domain="box"):
    l2 = (ball_sensitivity.ball_direct_statistic_l2 if domain == "ball"
          else sensitivity.direct_statistic_l2)
    Delta2 = certified_upper(partial(l2, scale=scale), d, degree, R, R_w, d_v, prec=p)
    return Delta2, gaussian.sigma_for(Delta2, eps, delta, prec=p)


#: keyed by argument type and value (1, 1.0 and Fraction(1) apart); the values are mpf, immutable
_gaussian_constants_memo = lru_cache(maxsize=256, typed=True)(_gaussian_constants)



def direct_noise_count(*, d: int, d_v: int, degree: int) -> int:
    """r (d_v + 1): one uniform per entry of S, r = C(d + s, s).

    Paper: not in the paper (spec PAPER.md §5 item 8; DESIGN §2, §4 ``noise_count``).
    """
    return feature_dimension(d, degree) * (d_v + 1)


def noise_index(t: int, k: int, d_v: int) -> int:
    """Position in the uniforms of the draw added to S[t][k]: t (d_v + 1) + k (row-major).

    ``proofs_notes/01-conventions.md`` (uniform order of ``direct``); DESIGN §4.

    Paper: none (the `direct` mechanism is ours); spec PAPER.md §5 item 8; proofs_notes/15-direct-mechanism.md.
    """
    return t * (d_v + 1) + k


class DirectRelease:
    """The released ``direct`` structure: the noisy S~ and public parameters, nothing else.

    Attributes: ``noisy`` (tuple of r tuples of d_v + 1 mpf), ``n``, ``d``, ``d_v``, ``r``,
    ``degree``, ``scale`` (as given; None means 1/d), ``R``, ``R_w`` (mpf), ``sensitivity``
    (Delta_S, mpf), ``eps``/``delta`` (the exact Fraction budget of the one component),
    ``support_bound`` (A_S, certified upward), ``variance`` (sigma_S^2, certified upward),
    ``laplace_scale`` (b = Delta_S/eps), ``prec``, ``law`` ("tlap" or "gaussian"), ``sigma``
    (None for TLap). With ``law == "gaussian"``: ``sensitivity`` is the l2 sensitivity Delta_2,
    ``sigma`` the Gaussian standard deviation, ``variance`` sigma^2 (rounded up), and
    ``support_bound`` and ``laplace_scale`` are None (the noise is unbounded).
    Paper: not in the paper (spec PAPER.md §3.4 collapse, §5 item 8; DESIGN §2).
    """

    __slots__ = ("noisy", "n", "d", "d_v", "r", "degree", "scale", "R", "R_w", "sensitivity",
                 "eps", "delta", "support_bound", "variance", "laplace_scale", "prec", "law",
                 "sigma", "domain", "floor", "rounding")

    def __init__(self, *, noisy, n, d, d_v, degree, scale, R, R_w, sensitivity, eps, delta,
                 support_bound, variance, laplace_scale, prec, law="tlap", sigma=None,
                 domain="box", floor=None, rounding=None):
        self.noisy = tuple(tuple(row) for row in noisy)
        self.n = n
        self.d = d
        self.d_v = d_v
        self.r = len(self.noisy)
        self.degree = degree
        self.scale = scale
        self.R = R
        self.R_w = R_w
        self.sensitivity = sensitivity
        self.eps = eps
        self.delta = delta
        self.support_bound = support_bound
        self.variance = variance
        self.laplace_scale = laplace_scale
        self.prec = prec
        self.law = law
        self.sigma = sigma
        self.domain = domain
        #: the public lower bound of the Taylor denominator: n (box), n tau (ball)
        self.floor = context(prec).mpf(n) if floor is None else floor
        #: None (S computed exactly), or e[t][k]: per row, |rounded term - exact term| <= e[t][k]
        #: (the streaming accumulator's lattices, ``proofs_notes/30-exact-accumulation.md``)
        self.rounding = None if rounding is None else tuple(tuple(row) for row in rounding)

    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, scale=None, uniforms, prec=None,
              law="tlap", domain="box"):
        """Release S~ = P(K)^T [V, 1] + Z from validated inputs.

        ``K``: n rows of d mpf in [0, R]; ``V``: n rows of d_v mpf in [-R_w, R_w] (validated by
        the caller, :class:`dpxattn.reference.cross_attention.DPCrossAttention`);
        ``uniforms``: ``direct_noise_count(...)`` uniforms in the conventions' order (checked).
        Budget: ``plan_direct(...).share("S")``. (eps, delta)-DP under replace-one-row by the
        vector extension (PAPER §2.1): the l1 change of S is at most Delta_S.
        ``law="gaussian"``: iid N(0, sigma^2) from the same uniforms in the same order
        (:func:`gaussian_constants`); (eps, delta)-DP by the analytic Gaussian mechanism on the
        l2 change of S, at most Delta_2 (``proofs_notes/24-analytic-gaussian.md``).
        ``domain="ball"`` (keys with ||k||_2 <= R, validated by the caller; ``scale`` given, not
        None): the ball's sensitivities (:mod:`dpxattn.reference.ball_sensitivity`) and the
        denominator floor n tau (:func:`dpxattn.reference.ball.ball_denominator_floor`;
        ``proofs_notes/27-ball-domain.md``).
        Paper: not in the paper (spec PAPER.md §5 item 8; ``proofs_notes/15-direct-mechanism.md``).
        """
        p = resolve_prec(prec)
        ctx = context(p)
        n, d, d_v = len(K), len(K[0]), len(V[0])
        plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree,
                           law=check_law(law, "direct"))
        eps_s, delta_s = plan.share("S")
        u = check_uniforms(uniforms, direct_noise_count(d=d, d_v=d_v, degree=degree))
        sigma = None
        if law == "gaussian":
            Delta, sigma = gaussian_constants(d, degree, R, R_w, d_v, eps_s, delta_s,
                                              scale=scale, prec=p, domain=domain)
        else:
            l1 = (ball_sensitivity.ball_direct_statistic if domain == "ball"
                  else sensitivity.direct_statistic)
            Delta = to_mpf(l1(d, degree, R, R_w, d_v, scale=scale, prec=p), ctx, "Delta_S")
        exact = sensitivity.released_S(K, V, degree=degree, scale=scale, prec=p)  # private
        cols = d_v + 1
        rows = [[exact[noise_index(t, k, d_v)] for k in range(cols)]
                for t in range(len(exact) // cols)]
        return cls._noised(rows, u=u, law=law, Delta=Delta, sigma=sigma, eps_s=eps_s,
                           delta_s=delta_s, n=n, d=d, d_v=d_v, degree=degree, scale=scale, R=R,
                           R_w=R_w, prec=p, domain=domain)

    @classmethod
    def _noised(cls, rows, *, u, law, Delta, sigma, eps_s, delta_s, n, d, d_v, degree, scale,
                R, R_w, prec, domain, rounding=None) -> "DirectRelease":
        """The release of ``rows`` (r rows of d_v + 1 mpf: the statistic) plus the noise of
        ``law`` drawn from the uniforms ``u`` in the conventions' order (:func:`noise_index`):
        TLap(Delta, eps_s, delta_s), or N(0, sigma^2) with ``sigma`` (``Delta`` then the l2
        sensitivity, recorded); the floor n (box) or the ball's n tau. Shared by :meth:`build`
        and :meth:`from_statistic`."""
        p = prec
        ctx = context(p)
        if law == "gaussian":
            noise = gaussian.sample(u, sigma, prec=p)
        else:
            noise = tl.sample(u, Delta, eps_s, delta_s, prec=p)
        floor = (ball.ball_denominator_floor(n, degree, R, scale=scale, prec=p)
                 if domain == "ball" else None)
        noisy = [[ctx.fadd(x, noise[noise_index(t, k, d_v)]) for k, x in enumerate(row)]
                 for t, row in enumerate(rows)]
        common = dict(noisy=noisy, n=n, d=d, d_v=d_v, degree=degree, scale=scale,
                      R=to_mpf(R, ctx, "R"), R_w=to_mpf(R_w, ctx, "R_w"), sensitivity=Delta,
                      eps=Fraction(eps_s), delta=Fraction(delta_s), prec=p, domain=domain,
                      floor=floor, rounding=rounding)
        if law == "gaussian":
            return cls(**common, support_bound=None,
                       variance=ctx.fmul(sigma, sigma, rounding="u"), laplace_scale=None,
                       law="gaussian", sigma=sigma)
        return cls(**common,
                   support_bound=certified_upper(tl.support_bound, Delta, eps_s, delta_s, prec=p),
                   variance=certified_upper(tl.variance, Delta, eps_s, delta_s, prec=p),
                   laplace_scale=tl.scale(Delta, eps_s, delta_s, prec=p))

    @classmethod
    def from_statistic(cls, S, *, n, d, eps, delta, R, R_w, degree, sensitivity, scale=None,
                       uniforms, prec=None, law="tlap", domain="box", rounding=None):
        """Release ``S~ = S + Z`` for a statistic ``S`` computed by the caller: r rows of
        d_v + 1 exact numbers (Fraction, int, float or mpf; converted by ``to_mpf``, exact
        when dyadic), the statistic of ``n`` rows of d-dimensional keys, e.g. the rounded sums
        of :class:`dpxattn.reference.accumulator.Accumulator`. ``sensitivity`` is the caller's
        bound on S's change under replace-one-row (l1 for ``law="tlap"``, l2 for
        ``law="gaussian"``); it is used as given, and the release is (eps, delta)-DP only if it
        bounds that change. The noise is :meth:`build`'s: budget ``plan_direct(...).share("S")``,
        TLap(sensitivity, eps_s, delta_s) or N(0, sigma^2) with sigma =
        :func:`dpxattn.reference.gaussian.sigma_for` (sensitivity, eps_s, delta_s), drawn from
        ``uniforms`` (``direct_noise_count(...)`` of them) in the same order (:func:`noise_index`),
        the same floor (n, or the ball's n tau). ``rounding``: None, or e[t][k] with
        |S - exact S|_(t,k) <= n e[t][k] (the accumulator's
        :func:`dpxattn.reference.exact_accumulation.rounding_error_bounds`): the envelopes add
        n sum_t |u_t| e[t][k] to column k (an :class:`dpxattn.reference.envelope.OffsetGroup`).
        :meth:`build` is unchanged.
        Paper: not in the paper (spec PAPER.md §5 items 8 and 18;
        ``proofs_notes/15-direct-mechanism.md``, ``proofs_notes/30-exact-accumulation.md``).
        """
        p = resolve_prec(prec)
        ctx = context(p)
        d_v = len(S[0]) - 1
        if len(S) != feature_dimension(d, degree) or any(len(row) != d_v + 1 for row in S):
            raise ValueError("DirectRelease.from_statistic: S must have r = C(d + s, s) rows "
                             "of d_v + 1 entries")
        plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree,
                           law=check_law(law, "direct"))
        eps_s, delta_s = plan.share("S")
        u = check_uniforms(uniforms, direct_noise_count(d=d, d_v=d_v, degree=degree))
        Delta = to_mpf(sensitivity, ctx, "sensitivity")
        sigma = gaussian.sigma_for(Delta, eps_s, delta_s, prec=p) if law == "gaussian" else None
        rows = [[to_mpf(x, ctx, "S") for x in row] for row in S]
        return cls._noised(rows, u=u, law=law, Delta=Delta, sigma=sigma, eps_s=eps_s,
                           delta_s=delta_s, n=n, d=d, d_v=d_v, degree=degree, scale=scale, R=R,
                           R_w=R_w, prec=p, domain=domain, rounding=rounding)

    # -- queries: post-processing of S~ only -----------------------------------------------------

    def query_features(self, q) -> list:
        """u = P(q), length r (q: d mpf in [0, R], validated by the caller)."""
        return kernel.features(q, self.degree, scale=self.scale, prec=self.prec)

    def numerators(self, u) -> list:
        """N~_k = sum_t u_t S~[t][k] for k = 0..d_v - 1 (d_v mpf)."""
        ctx = context(self.prec)
        return [ctx.fsum(ut * row[k] for ut, row in zip(u, self.noisy)) for k in range(self.d_v)]

    def raw_denominator(self, u):
        """u . S~[:, d_v], before clamping (the noisy Taylor denominator)."""
        ctx = context(self.prec)
        return ctx.fsum(ut * row[self.d_v] for ut, row in zip(u, self.noisy))

    def denominator(self, u):
        """D~ = max(u . S~[:, d_v], floor): clamped below by its public bound (post-processing):
        n on the box (T_s(t) >= 1 for t >= 0), n tau on the ball (T_s >= tau on [-a, a])."""
        return max(self.raw_denominator(u), self.floor)

    def answer(self, u) -> list:
        """The private answer row: N~_k / D~ for k = 0..d_v - 1 (d_v mpf)."""
        D = self.denominator(u)
        return [N / D for N in self.numerators(u)]

    def error_coefficients(self, u, k: int) -> dict[int, object]:
        """uniform index -> coefficient: column k's (numerator for k < d_v, unclamped
        denominator for k = d_v) released value minus its exact value is
        ``sum coef[i] * ppf(uniforms[i])``; the coefficient of S~[t][k] is u_t."""
        return {noise_index(t, k, self.d_v): ut for t, ut in enumerate(u)}

    def error_terms(self, u) -> tuple[CopyErrorTerms]:
        """The noise structure at u for :mod:`dpxattn.reference.envelope` (one copy).

        Every column's noise is ``sum_t u_t Z[t][k]`` with Z iid TLap(Delta_S, eps, delta): one
        :class:`NoiseGroup` with coefficients u (``law="gaussian"``: one
        :class:`GaussianNoiseGroup`, Z iid N(0, sigma^2), so the column's noise is exactly
        N(0, sigma^2 ||u||_2^2)). A release from rounded sums (``rounding`` set) adds to column
        k the deterministic :class:`OffsetGroup` n sum_t |u_t| e[t][k], rounded up
        (``proofs_notes/30-exact-accumulation.md``). Proof note
        ``proofs_notes/16-certified-envelope.md``.
        """
        if self.law == "gaussian":
            group = GaussianNoiseGroup(coefficients=tuple(u), sigma=self.sigma)
        else:
            group = NoiseGroup(coefficients=tuple(u), support_bound=self.support_bound,
                               variance=self.variance, laplace_scale=self.laplace_scale)
        columns = [(group,) for _ in range(self.d_v + 1)]
        if self.rounding is not None:  # the accumulator's lattice rounding: not noise
            ctx = context(self.prec)
            for k in range(self.d_v + 1):
                off = ctx.fsum(ctx.fmul(abs(ut), self.rounding[t][k], rounding="u")
                               for t, ut in enumerate(u))
                off = ctx.fmul(ctx.fmul(off, 1 + ctx.ldexp(1, 8 - self.prec), rounding="u"),
                               self.n, rounding="u")
                columns[k] = (group, OffsetGroup(bound=off))
        return (CopyErrorTerms(numerators=tuple(columns[:self.d_v]),
                               denominator=columns[self.d_v],
                               released_denominator=self.denominator(u),
                               answers=tuple(self.answer(u))),)
