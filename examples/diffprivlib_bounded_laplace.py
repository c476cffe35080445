"""An outside sampler audited through the target protocol: IBM diffprivlib's bounded-domain
Laplace (``diffprivlib.mechanisms.LaplaceBoundedDomain``, Holohan et al. 2018) wrapped as a
degree-0 ``direct`` target.

    pip install diffprivlib     # (0.6.6 needs scikit-learn < 1.6 to import)
    dpxattn verify --target examples/diffprivlib_bounded_laplace.py:BoundedLaplaceDirect

At degree 0 the feature map is P(x) = [1], so S = [sum_i v_i (d_v columns), n] (1 x (d_v + 1)).
Its exact l1 sensitivity under replace-one-row is 2 d_v R_w (the ones entry, n, never changes);
the wrapper, as written for the older entrywise count Delta_S = 2 d_v R_w + 1, spends the budget
by basic composition over the d_v + 1 entries in proportion to their entrywise sensitivities
(value entries 2 R_w, the ones entry 1: sound, slightly wasteful): entry j gets
``eps Delta_j / Delta_S`` and ``delta Delta_j / Delta_S``, so the whole S claims (eps, delta).
Domains: a value sum lies in [-n R_w, n R_w]; the ones entry is n, given the domain [n - 1, n + 1].

diffprivlib draws its own randomness, so ``build(uniforms=...)`` only accepts the all-1/2
uniforms (zero noise: the exact statistic, which the harness's sensitivity search and noise
recovery use) and refuses others; ``rng`` seeds diffprivlib's ``random_state`` (once per
parameter setting; later builds continue that stream, independent of the data). The law is the
bounded Laplace, not the truncated Laplace the harness expects of a dpxattn ``direct``: the
conformance and noise-law checks are expected to fail; the sensitivity search and the empirical
eps audit are the informative ones. Imports nothing from dpxattn.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BoundedLaplaceDirect"]


class _Built:
    def __init__(self, S, n):
        self.S, self.n = S, n

    def released(self):
        return {"S": self.S.copy()}

    def query(self, Q):
        Q = np.asarray(Q, dtype=np.float64)
        D = max(float(self.S[0, -1]), float(self.n))  # degree 0: every weight is 1
        return np.repeat(self.S[:, :-1] / D, Q.shape[0], axis=0)


class BoundedLaplaceDirect:
    """Degree-0 ``direct`` with diffprivlib's LaplaceBoundedDomain on each entry of S."""

    mechanisms = ("direct",)
    degrees = (0,)
    _mechanisms: dict = {}

    @staticmethod
    def noise_count(*, n, d, d_v, degree, mechanism) -> int:
        return d_v + 1

    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, mechanism, uniforms=None, rng=None):
        from diffprivlib.mechanisms import LaplaceBoundedDomain

        if mechanism != "direct" or degree != 0:
            raise ValueError("only mechanism='direct' at degree 0")
        K, V = np.asarray(K, dtype=np.float64), np.asarray(V, dtype=np.float64)
        if np.any(K < 0) or np.any(K > R) or np.any(np.abs(V) > R_w):
            raise ValueError("K must lie in [0, R] and V in [-R_w, R_w]")
        n, d_v = V.shape
        exact = np.append(V.sum(axis=0), float(n))
        if uniforms is not None:
            if not np.all(np.asarray(uniforms) == 0.5):
                raise ValueError("diffprivlib cannot replay given uniforms (only all-1/2: zero noise)")
            return _Built(exact[None, :], n)
        sens = np.append(np.full(d_v, 2.0 * R_w), 1.0)
        total = sens.sum()
        out = np.empty(d_v + 1)
        for j in range(d_v + 1):
            lo, hi = ((-n * R_w, n * R_w) if j < d_v else (n - 1.0, n + 1.0))
            key = (float(eps * sens[j] / total), float(delta * sens[j] / total), float(sens[j]), lo, hi)
            mech = cls._mechanisms.get(key)
            if mech is None:  # solving for the bounded scale is slow: one mechanism per setting,
                # its stream seeded from the first rng that needs it, continued by later builds
                mech = LaplaceBoundedDomain(epsilon=key[0], delta=key[1], sensitivity=key[2],
                                            lower=lo, upper=hi,
                                            random_state=int(rng.integers(0, 2**32 - 1)))
                cls._mechanisms[key] = mech
            out[j] = mech.randomise(float(exact[j]))
        return _Built(out[None, :], n)
