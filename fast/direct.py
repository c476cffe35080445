"""The ``direct`` mechanism in torch: one noisy release of S = P(K)^T [V, 1].

Not in the paper: the sufficient-statistics mechanism the paper's law-of-cosines reduction
collapses to (spec PAPER.md §3.4 "Important collapse", §5 item 8; DESIGN §2). Mirrors
``dpxattn.reference.direct`` (proof note ``proofs_notes/15-direct-mechanism.md``); conventions
``proofs_notes/01-conventions.md`` (mechanism ``direct``); fast-path numerics
``proofs_notes/19-fast-path.md``.

Build: ``S`` (r, d_v + 1) is accumulated in float64 over chunks of keys, one GEMM per chunk
(``S += P(K_chunk)^T [V_chunk, 1]``, features feature-major; :func:`statistic`), then released by
:func:`dpxattn.fast.release.release_`: float mode, iid TLap(Delta_S, eps, delta) per entry,
uniforms in row-major order of S; secure mode (``secure=``), the whole S as ONE lattice release
(``proofs_notes/23-hardened-noise.md``) with the sensitivity of the computed S (Delta_S + 2 x its
float64 error bound), ``changed`` = every one of its r (d_v + 1) coordinates and a public value
bound. Only the noisy ``S~`` is kept. Gaussian law (``gaussian=``), float mode: iid
N(0, sigma^2) per entry from the same uniforms in the same order
(:func:`dpxattn.fast.release.gaussian_law`), sigma the reference's analytic-Gaussian sigma on
the l2 sensitivity of the whole S (``proofs_notes/24-analytic-gaussian.md``); secure mode: the
whole S as ONE lattice release with exact discrete Gaussian noise
(:func:`dpxattn.fast.release.secure_gaussian_law`, ``proofs_notes/25-discrete-gaussian.md``) on
the l2 sensitivity of the exactly accumulated S~ (:func:`dpxattn.fast.accumulator.exact_constants`;
build's secure mode goes through the accumulator, ``proofs_notes/30``).

Query (m tokens at once): ``U = P(Q)`` (m, r); ``NS = U S~`` (m, d_v + 1);
``D~ = max(NS[:, d_v], n)``; answer ``NS[:, :d_v] / D~``. O(r (d_v + 1)) per token, independent of n.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dpxattn.errors import no_sure_envelope
from dpxattn.fast.envelope import (DirectEnvelopeTerms, gamma, gaussian_noise_bound,
                                   hp_noise_bound, unit_roundoff)
from dpxattn.fast.features import chunk_rows, feature_chunks, feature_plan, features_t
from dpxattn.fast.release import (GaussianLaw, NoiseLaw, SecureGaussianLaw, gaussian_law,
                                  noise_law, release_, secure_gaussian_law, secure_law)

#: relative error allowed for one float64 Gaussian draw sigma Phi^-1(u) (ndtri, measured within
#: 5 ulps over (0, 1), one product with sigma, sigma's own rounding): 16 ulps
GAUSSIAN_DRAW_ULPS = 16

__all__ = ["DirectRelease", "direct_noise_count", "statistic"]


def direct_noise_count(r: int, d_v: int) -> int:
    """r (d_v + 1) uniforms: one per entry of S."""
    return r * (d_v + 1)


@dataclass
class DirectRelease:
    """The released part of ``direct``: the noisy statistic and public constants only.

    ``S`` (r, d_v + 1) float64 noisy; ``law``: the TLap constants of its entries (one group),
    a :class:`dpxattn.fast.release.GaussianLaw` (``law="gaussian"``, float mode) or a
    :class:`dpxattn.fast.release.SecureGaussianLaw` (``law="gaussian"``, secure mode);
    ``bounds`` (r,) float64 feature bounds M (public); ``n``, ``degree``, ``scale``;
    ``floor``: the denominator's public lower bound (None: n, the box; ``domain="ball"``:
    n tau rounded down, ``proofs_notes/27-ball-domain.md``).
    """

    S: torch.Tensor
    law: NoiseLaw | GaussianLaw | SecureGaussianLaw
    bounds: torch.Tensor
    n: int
    degree: int
    scale: object
    _cast: dict
    floor: float | None = None
    lattice: tuple | None = None

    @classmethod
    def build(cls, K: torch.Tensor, V: torch.Tensor, *, degree: int, scale, sensitivity: float,
              eps, delta, bounds: torch.Tensor, stream, secure=None,
              gaussian=None, floor: float | None = None, S=None, n=None,
              lattice: tuple | None = None) -> "DirectRelease":
        """K (n, d), V (n, d_v): validated float64 private data (not kept).

        ``secure``: None (float mode: ``stream`` a UniformStream) or ``(sensitivity,
        value_bound)`` of the computed S (secure mode: ``stream`` is SecureWords).
        ``gaussian``: None (TLap) or ``(Delta_2, sigma)`` (float64, rounded up): the Gaussian law
        in float mode (``sensitivity``, ``eps``, ``delta`` are then not used: sigma carries the
        calibration). Gaussian law in secure mode: ``gaussian`` is ``True`` and ``secure`` is
        ``(l2 sensitivity, value_bound)`` of the released S
        (:func:`dpxattn.fast.accumulator.exact_constants` for the exact S~); the whole S is one
        discrete Gaussian lattice release at ``eps``, ``delta`` with ``changed`` = r (d_v + 1)
        (``proofs_notes/25-discrete-gaussian.md``, "The lattice release").
        ``S`` (r, d_v + 1) and ``n`` given (``K``, ``V`` None): release that statistic instead
        of computing it (the streaming accumulator's exact S~, ``proofs_notes/30``); the
        sensitivities passed must then be those of S~."""
        r = bounds.shape[0]
        if S is None:
            n, d_v = V.shape
            S = statistic(K, V, degree=degree, scale=scale, r=r)
        else:
            d_v = S.shape[1] - 1
        if gaussian is not None and secure is not None:
            if gaussian is not True:
                raise ValueError("DirectRelease.build: secure Gaussian mode takes gaussian=True "
                                 "(the calibration comes from secure's l2 sensitivity)")
            sens, value_bound = secure
            law = secure_gaussian_law((d_v + 1,), sens, eps, delta, changed=r * (d_v + 1),
                                      value_bound=value_bound)
        elif gaussian is not None:
            l2, sigma = gaussian
            law = gaussian_law((d_v + 1,), sigma, l2)
        elif secure is None:
            law = noise_law((d_v + 1,), sensitivity, eps, delta, device=S.device)
        else:
            sens, value_bound = secure
            law = secure_law((d_v + 1,), sens, eps, delta, changed=r * (d_v + 1),
                             value_bound=value_bound, device=S.device)
        release_(S, law, stream)
        return cls(S=S, law=law, bounds=bounds, n=n, degree=degree, scale=scale, _cast={},
                   floor=floor, lattice=lattice)

    def to(self, device) -> "DirectRelease":
        """The same release on ``device`` (a copy of the public tensors)."""
        return DirectRelease(S=self.S.to(device), law=self.law.to(device),
                             bounds=self.bounds.to(device), n=self.n, degree=self.degree,
                             scale=self.scale, _cast={}, floor=self.floor,
                             lattice=self.lattice)

    @property
    def secure(self) -> bool:
        return self.law.secure

    @property
    def gaussian(self) -> bool:
        """Either Gaussian law: float (GaussianLaw) or secure (SecureGaussianLaw)."""
        return isinstance(self.law, (GaussianLaw, SecureGaussianLaw))

    def noise_magnitude(self) -> float:
        """A bound on |noise| per entry for the floating-point allowance: TLap's sure A; for the
        Gaussian law, max |S~| over the released matrix (public; cached), which bounds every
        released magnitude the rounding steps act on (``proofs_notes/16-certified-envelope.md``,
        "Gaussian law")."""
        if not self.gaussian:
            return float(self.law.support_up.max())
        m = self._cast.get("absmax")
        if m is None:
            m = float(self.S.abs().max()) if self.S.numel() else 0.0
            self._cast["absmax"] = m
        return m

    # -- queries ---------------------------------------------------------------------------------

    def _S_as(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype == torch.float64:
            return self.S
        t = self._cast.get(dtype)
        if t is None:
            t = self.S.to(dtype)
            self._cast[dtype] = t
        return t

    def answer(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(answers (m, d_v), released clamped denominators D~ (m,)) in Q's dtype.

        Computed transposed, ``NS^T = S~^T P(Q)^T`` ((d_v + 1, r) times the feature-major
        (r, m) block): one GEMM with a long inner stride, much faster than ``P(Q) S~`` from
        the transposed view."""
        plan = self._cast.get("plan")
        if plan is None:
            plan = feature_plan(Q.shape[1], self.degree, self.scale)
            self._cast["plan"] = plan
        U = features_t(Q, self.degree, scale=self.scale, plan=plan)  # (r, m), Q's dtype
        NS = self._S_as(Q.dtype).t() @ U  # (d_v + 1, m)
        D = torch.clamp(NS[-1], min=float(self.n) if self.floor is None else self.floor)
        # plain division (no out=): the answer must also work under torch.func.vmap, which the
        # privacy audit's batched sampler uses and which has no batching rule for div.out
        return (NS[:-1] / D).t().contiguous(), D

    def envelope_terms(self, Q: torch.Tensor) -> DirectEnvelopeTerms:
        """The public quantities the envelopes need at Q (float64, no gradient). The sums are of
        |P(q)| (signed features on the ball; the identity on the box, where P(q) >= 0)."""
        with torch.no_grad():
            F = features_t(Q.detach().to(torch.float64), self.degree, scale=self.scale)  # (r, m)
            if self.floor is not None:
                F = F.abs()
        return DirectEnvelopeTerms(U=F.t(), l1=F.sum(dim=0), l2sq=(F * F).sum(dim=0),
                                   linf=F.amax(dim=0), uM=self.bounds @ F)

    def fp_allowance(self, terms: DirectEnvelopeTerms, weight: float, dtype: torch.dtype,
                     r: int, *, denominator: bool = False) -> torch.Tensor:
        """Floating-point allowance on |N_f - N_T - noise| of a column with weight bound ``weight``
        (R_w, or 1 for the ``denominator`` column), (m,) float64: see
        ``proofs_notes/19-fast-path.md`` ("direct"). A release of the streaming accumulator's
        rounded sums (``lattice`` = (a, b)) adds their deviation from the exact S: per row and
        feature, |P~ W~ - fl(P) W| <= 2^-(a+1) (W + 2^-(b+1)) + M_t 2^-(b+1) for a value
        column and 2^-(a+1) for the denominator (its weight 1 is not rounded), times n sum_t
        |u_t|; the float error of fl(P) itself is inside the build's gamma, and its product with
        2^-(b+1) inside the factor 1 + 2^-40 (``proofs_notes/30-exact-accumulation.md``,
        "Envelopes")."""
        u64 = unit_roundoff(torch.float64)
        uq = unit_roundoff(dtype)
        s = self.degree
        g_build = gamma(self.n + s + 3, u64)
        g_q = gamma(r + s + 5, uq) + 2 * u64
        A = self.noise_magnitude()
        if isinstance(self.law, GaussianLaw):  # the float draws' own error, relative to the
            g_q = g_q + GAUSSIAN_DRAW_ULPS * u64  # released magnitudes (secure: exact lattice points)
        out = (g_build + 2 * g_q) * self.n * weight * terms.uM + g_q * A * terms.l1
        if self.lattice is not None:
            fa, fb = 2.0 ** -(self.lattice[0] + 1), 2.0 ** -(self.lattice[1] + 1)
            rounding = (fa * terms.l1 if denominator
                        else (weight + fb) * fa * terms.l1 + (1 + 2.0 ** -40) * fb * terms.uM)
            out = out + (1 + 2.0 ** -40) * self.n * rounding
        return out

    def noise_bounds(self, terms: DirectEnvelopeTerms, failure: float | None):
        """Bound on |noise of N_k| (= on |noise of D|: same law, same coefficients), (m,):
        sure (failure None) or min(sure, Hoeffding, Bernstein, Chernoff) at ``failure``.

        Secure mode: sure with the lattice bound K g + g/2; at ``failure``
        ``min(sure, (g/2) ||U||_1 + min(Hoeffding, Bernstein))`` with the zero-mean noise bounded
        by K g and its variance by 2 (t g)^2 (no Chernoff: the TLap MGF is not the discrete law's).

        Gaussian law: no sure bound (failure None raises
        :class:`dpxattn.errors.NoSureEnvelopeError`); at ``failure`` the exact normal threshold
        :func:`dpxattn.fast.envelope.gaussian_noise_bound` (the noise is N(0, sigma^2 ||U||_2^2)).

        Secure Gaussian law (``proofs_notes/25-discrete-gaussian.md``, "Deviations and limits",
        the hp envelope; Lemma 5): the released noise of a column is
        ``sum_j U_j ((round_g(S_j) - S_j) + g Y_j)`` with ``Y_j ~ N_Z(0, t (t - 1))`` iid; the
        quantile coupling puts every ``Y_j`` within 1 of an ``N(0, t (t - 1))`` draw ``G_j``
        (iid), surely, so the noise is within ``g ||U||_1`` (coupling) ``+ (g/2) ||U||_1``
        (rounding) of ``g U . G ~ N(0, g^2 t (t - 1) ||U||_2^2)``, ``g sqrt(t (t - 1)) <=
        law.sigma``: the float Gaussian bound at ``law.sigma`` plus ``1.5 g ||U||_1`` (U >= 0).
        Also no sure bound.
        """
        if self.gaussian:
            if failure is None:
                raise no_sure_envelope("error_bound")
            t = gaussian_noise_bound(self.law.sigma, terms.l2sq, self.bounds.shape[0], failure)
            if isinstance(self.law, SecureGaussianLaw):
                # (g + g/2) ||U||_1: exact in binary (g a power of two), l1 rounded up a little
                c = self.law.coupling + self.law.rounding
                t = t + c * terms.l1 * (1.0 + gamma(self.bounds.shape[0] + 2,
                                                    unit_roundoff(torch.float64)))
            return t
        A = float(self.law.support_up.max())
        var = float(self.law.variance.max())
        sure = A * terms.l1
        if failure is None:
            return sure
        if self.law.secure:
            An = float(self.law.noise_support().max())
            return hp_noise_bound(sure=sure, sum_c2_A2=An * An * terms.l2sq,
                                  sum_c2_var=var * terms.l2sq, max_cA=An * terms.linf,
                                  coef=None, count=None, b=None, A=None, failure=failure,
                                  offset=float(self.law.rounding.max()) * terms.l1)
        b = self.law.b.max().reshape(1)
        return hp_noise_bound(sure=sure, sum_c2_A2=A * A * terms.l2sq,
                              sum_c2_var=var * terms.l2sq, max_cA=A * terms.linf,
                              coef=terms.U, count=torch.ones_like(terms.U), b=b,
                              A=self.law.support_up.max().reshape(1), failure=failure)


def statistic(K: torch.Tensor, V: torch.Tensor, *, degree: int, scale, r: int) -> torch.Tensor:
    """The computed (noiseless) S = P(K)^T [V, 1], (r, d_v + 1) float64: one GEMM per chunk of
    keys. Its float64 error is bounded by
    ``dpxattn.reference.sensitivity.direct_statistic_float_error`` (``proofs_notes/17``), whatever
    the chunking.

    Temporaries: the (r, rows) feature chunk and one reused (rows, d_v + 1) ``[V_chunk, 1]``
    buffer, with rows chosen so that the two together hold ``FEATURE_CHUNK_ELEMENTS`` entries
    (2 MiB): at small r the value buffer is not negligible (r = 15, d_v = 8: sizing the chunk by
    r alone put the build's peak 10 % over benchmark target G10's "1.3 x payload + one chunk")."""
    n, d_v = V.shape
    S = torch.zeros((r, d_v + 1), dtype=torch.float64, device=K.device)
    W = None
    rows = chunk_rows(r + d_v + 1)
    for start, stop, F in feature_chunks(K, degree, scale=scale, rows=rows):
        if W is None:
            W = torch.empty((stop - start, d_v + 1), dtype=torch.float64, device=K.device)
            W[:, d_v] = 1.0
        Wc = W[: stop - start]
        Wc[:, :d_v] = V[start:stop]
        S.addmm_(F, Wc)
    return S
