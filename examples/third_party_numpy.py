"""An independent numpy implementation of the ``direct`` mechanism, through the target protocol.

Written from dpxattn's documentation alone (DESIGN §4's contract, ``proofs_notes/01-conventions.md``,
``proofs_notes/15-direct-mechanism.md``, ``proofs_notes/16-certified-envelope.md``,
``proofs_notes/02-tlap-law.md``); it imports nothing from dpxattn, so the harness audits it as it
would audit anyone's code:

    dpxattn verify --target examples/third_party_numpy.py:Correct --level quick

Three targets:

* :class:`Correct`: S~ = P(K)^T [V, 1] + Z, Z iid TLap(Delta_S, eps, delta) on every entry;
* :class:`NoiseTimes07`: the same with every draw multiplied by 0.7 (under-noised: not
  (eps, delta)-DP at the claimed eps);
* :class:`NoiselessDenominator`: the ones column (the softmax denominator) released without
  noise (not DP at all).

Definitions used (numbers from the documentation, shapes in brackets):

* features P(x) [r]: for degree k = 0..s and each multiset alpha of k coordinates in the order of
  ``itertools.combinations_with_replacement(range(d), k)``, ``sqrt(scale^k / alpha!) x^alpha``;
  scale = 1/d; r = C(d + s, s); on [0, R]^d feature alpha is at most
  M_alpha = sqrt(scale^k / alpha!) R^k;
* S [r, d_v + 1] = sum_i P(k_i) [v_i, 1]; l1 sensitivity under replace-one-row
  Delta_S = 2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) sum_{alpha != 0} M_alpha (the exact sup;
  alpha = 0 is the constant feature, the first);
* TLap(Delta, eps, delta): b = Delta / eps, A = b ln(1 + (e^eps - 1) / (2 delta)); inverse CDF of
  one uniform u: sign(u - 1/2) (-b) ln(1 - |2u - 1| (1 - e^{-A/b})); u = 1/2 gives 0;
* uniform order: S row-major (entry (t, k) takes uniform t (d_v + 1) + k);
* query q: u = P(q), N_k = u . S~[:, k], D = max(u . S~[:, d_v], n), answer N_k / D;
* sure envelope: |answer - Taylor attention| <= (1 + R_w) A ||u||_1 / D (note 16), here with a
  relative float allowance of 1e-9 on top.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["Correct", "NoiseTimes07", "NoiselessDenominator"]


def _multi_indices(d: int, s: int) -> list[tuple[int, ...]]:
    out = []
    for k in range(s + 1):
        for combo in itertools.combinations_with_replacement(range(d), k):
            out.append(tuple(combo.count(i) for i in range(d)))
    return out


def _coefficients(d: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """(exponents [r, d], coefficients [r]) of the Taylor features with scale 1/d."""
    alphas = _multi_indices(d, s)
    scale = 1.0 / d
    coef = [math.sqrt(scale ** sum(a) / math.prod(math.factorial(x) for x in a)) for a in alphas]
    return np.array(alphas, dtype=np.float64), np.array(coef)


def _features(X: np.ndarray, s: int) -> np.ndarray:
    """P(X) [m, r]."""
    exps, coef = _coefficients(X.shape[1], s)
    return np.prod(X[:, None, :] ** exps[None, :, :], axis=2) * coef


def _check(name: str, X, lo: float, hi: float, width: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array (got shape {X.shape})")
    if width is not None and X.shape[1] != width:
        raise ValueError(f"{name} must have {width} columns (got {X.shape[1]})")
    if not np.all(np.isfinite(X)) or np.any(X < lo) or np.any(X > hi):
        raise ValueError(f"{name} entries must lie in [{lo}, {hi}]")
    return X


class _Built:
    """The released S~ [r, d_v + 1] and public constants; nothing private."""

    def __init__(self, S, *, n, degree, d, R, R_w, A):
        self.S = S
        self.n, self.degree, self.d, self.R, self.R_w, self.A = n, degree, d, R, R_w, A

    def released(self) -> dict[str, np.ndarray]:
        return {"S": self.S.copy()}

    def _parts(self, Q):
        Q = _check("Q", Q, 0.0, self.R, self.d)
        U = _features(Q, self.degree)
        N = U @ self.S[:, :-1]
        D = np.maximum(U @ self.S[:, -1], float(self.n))
        return U, N, D

    def query(self, Q) -> np.ndarray:
        _, N, D = self._parts(Q)
        return N / D[:, None]

    def error_bound(self, Q) -> np.ndarray:
        U, N, D = self._parts(Q)
        e = (1.0 + self.R_w) * self.A * np.abs(U).sum(axis=1) / D * (1.0 + 1e-9)
        return np.repeat(e[:, None], N.shape[1], axis=1)


class Correct:
    """``direct`` with truncated Laplace noise, as documented (module docstring)."""

    mechanisms = ("direct",)
    #: the multiplier of every draw (1 for the correct implementation)
    noise_factor = 1.0
    #: whether the ones column (denominator) gets its noise
    noisy_denominator = True

    @staticmethod
    def noise_count(*, n, d, d_v, degree, mechanism) -> int:
        if mechanism != "direct":
            raise ValueError(f"mechanism must be 'direct' (got {mechanism!r})")
        return math.comb(d + degree, degree) * (d_v + 1)

    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, mechanism, uniforms=None, rng=None):
        if mechanism != "direct":
            raise ValueError(f"mechanism must be 'direct' (got {mechanism!r})")
        if not (eps > 0 and 0 < delta < 1 and R > 0 and R_w > 0 and degree >= 0):
            raise ValueError("need eps > 0, 0 < delta < 1, R > 0, R_w > 0, degree >= 0")
        K = _check("K", K, 0.0, R)
        V = _check("V", V, -R_w, R_w)
        if V.shape[0] != K.shape[0]:
            raise ValueError("V must have as many rows as K")
        n, d = K.shape
        d_v = V.shape[1]
        count = cls.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism)
        if (uniforms is None) == (rng is None):
            raise ValueError("give exactly one of uniforms and rng")
        if uniforms is None:  # 53-bit uniforms strictly inside (0, 1)
            u = (rng.integers(0, 2**53, size=count).astype(np.float64) + 0.5) * 2.0**-53
        else:
            u = np.asarray(uniforms, dtype=np.float64)
            if u.shape != (count,) or not np.all((u > 0) & (u < 1)):
                raise ValueError(f"uniforms must be {count} numbers in (0, 1)")
        exps, coef = _coefficients(d, degree)
        M = coef * R ** exps.sum(axis=1)
        sens = 2 * d_v * R_w + max(2 * d_v * R_w, d_v * R_w + 1) * M[1:].sum()
        b = sens / eps
        a = math.log1p(math.expm1(eps) / (2 * delta))  # A / b
        A = b * a
        w = np.abs(2 * u - 1)
        z = np.sign(u - 0.5) * (-b) * np.log1p(-w * (-math.expm1(-a)))
        z = (z * cls.noise_factor).reshape(-1, d_v + 1)
        if not cls.noisy_denominator:
            z[:, -1] = 0.0
        P = _features(K, degree)
        S = P.T @ np.hstack([V, np.ones((n, 1))]) + z
        return _Built(S, n=n, degree=degree, d=d, R=R, R_w=R_w, A=A)


class NoiseTimes07(Correct):
    """Wrong on purpose: every draw x0.7 (the claimed eps is not met)."""

    noise_factor = 0.7


class NoiselessDenominator(Correct):
    """Wrong on purpose: the ones column (the denominator) is released exactly."""

    noisy_denominator = False
