"""The streaming build: an exact accumulator of the ``direct`` statistic, released once.

Not in the paper (corpus scale; PAPER §5 items 8 and 18). Proof note
``proofs_notes/30-exact-accumulation.md``.

    acc = Accumulator(mechanism="direct", d=8, d_v=8, degree=3, R=1.0, R_w=1.0)
    acc.add(K_chunk, V_chunk)          # any number of chunks of any size, validated like build's
    acc.merge(other)                   # exact, order-independent; same public parameters
    att = acc.release(eps=1.0, delta=1e-6, law="tlap")   # noise added once; consumes acc

The sums are exact integers on public lattices (:mod:`dpxattn.fast.exact_sum`), so any
chunking, order or shard layout gives the same statistic bit for bit, and the noise is
calibrated to the sensitivity of that rounded statistic, which does not grow with n
(:mod:`dpxattn.reference.exact_accumulation`): at n = 1e9 it is within 1e-6 of its value at
n = 1e3, where ``build``'s float64 allowance is 119x. The released structure is a
:class:`dpxattn.fast.DPCrossAttention` like ``build``'s (same queries, envelopes, plan; the plan
says how S was accumulated). Inputs: torch tensors, numpy arrays or memory-mapped ``.npy``
arrays (read chunk by chunk: nothing but the exact integer sums is kept). Only ``direct`` so far.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from dpxattn.accounting import NUMERICS_FLOAT, NUMERICS_FLOAT_GAUSSIAN, feature_dimension, plan_direct
from dpxattn.errors import ParameterError
from dpxattn.params import check_build_arguments, check_degree, check_positive_int

__all__ = ["Accumulator", "AccumulatorError", "exact_constants"]

#: rows validated and accumulated at a time from a large (e.g. memory-mapped) input
ADD_CHUNK_ROWS = 1 << 16


class AccumulatorError(ParameterError):
    """A misuse of an :class:`Accumulator` (a second release, a merge of unlike ones, ...)."""


@lru_cache(maxsize=128)
def _exact_constants(n, d, degree, R, R_w, d_v, scale, domain, norm):
    from dpxattn.fast.sensitivities import round_up
    from dpxattn.reference import ball, ball_sensitivity, kernel, sensitivity
    from dpxattn.reference import exact_accumulation as ea

    if domain == "ball":
        M = ball.ball_feature_bounds(d, degree, R, scale=scale)
        analytic = (ball_sensitivity.ball_direct_statistic_l2 if norm == "l2"
                    else ball_sensitivity.ball_direct_statistic)(d, degree, R, R_w, d_v, scale=scale)
    else:
        M = kernel.feature_bounds(d, degree, R, scale=scale)
        analytic = (sensitivity.direct_statistic_l2 if norm == "l2"
                    else sensitivity.direct_statistic)(d, degree, R, R_w, d_v, scale=scale)
    a, b = ea.lattice_exponents(max(float(m) for m in M) * (1 + 2.0**-40), R_w)
    errors = ea.term_error_bounds(M, R_w, d_v, degree, a, b)
    sens = ea.rounded_statistic_sensitivity(analytic, errors, norm)
    sens_released = sens + ea.conversion_error(n, M, R_w, d_v, errors, norm)
    value_bound = n * (max(M) * max(float(R_w), 1.0) + max(e for row in errors for e in row))
    return (a, b, round_up(sens_released, "exact-accumulation sensitivity"),
            round_up(value_bound * (1 + 2.0**-40), "exact-accumulation value bound"),
            float(analytic))


def exact_constants(*, n: int, d: int, degree: int, R, R_w, d_v: int, scale=None,
                    domain: str = "box", norm: str = "l1") -> tuple:
    """``(a, b, sensitivity, value_bound, analytic)`` of an accumulator's release: the lattice
    exponents, the ``norm`` ("l1" TLap, "l2" Gaussian) sensitivity of the released float64 S~
    (analytic + the rounding allowance + the conversion's, rounded up), a public bound on every
    |S~ entry|, and the analytic sensitivity for comparison. Memoised (public parameters).
    Proof note ``proofs_notes/30-exact-accumulation.md``."""
    from dpxattn.fast.sensitivities import _key

    return _exact_constants(int(n), int(d), int(degree), _key(R), _key(R_w), int(d_v),
                            _key(scale), domain, norm)


def _chunk(X, start: int) -> torch.Tensor:
    """Rows start:start + ADD_CHUNK_ROWS of a tensor, an array or a memory map, as a float64
    tensor of its own (a copy for numpy inputs: memory maps are read-only)."""
    part = X[start:start + ADD_CHUNK_ROWS]
    if isinstance(part, torch.Tensor):
        return part.detach().to(torch.float64)
    return torch.from_numpy(np.array(part, dtype=np.float64, copy=True))


class Accumulator:
    """An exact, mergeable accumulator of the ``direct`` statistic (module docstring).

    Public parameters as :meth:`dpxattn.fast.DPCrossAttention.build`'s (``domain`` "box" or
    "ball"; ``clip`` as there). Holds only the exact int64 sums (2, r, d_v + 1), canonical (``exact_sum.carry``), and n.
    """

    def __init__(self, *, mechanism: str = "direct", d: int, d_v: int, degree: int, R, R_w,
                 scale=None, clip: bool = False, domain: str = "box") -> None:
        if mechanism != "direct":
            raise AccumulatorError("mechanism", "the streaming accumulator offers 'direct' only "
                                   "so far (the tree's grid-cell sums do not stream yet)",
                                   mechanism, hint="use DPCrossAttention.build for the tree")
        check_build_arguments(mechanism="direct", eps=1.0, delta=1e-6, R=R, R_w=R_w,
                              degree=degree, scale=scale, copies=1, grid_size=None, clip=clip,
                              domain=domain)
        self.d = check_positive_int("d", d)
        self.d_v = check_positive_int("d_v", d_v)
        self.degree = check_degree(degree)
        self.R, self.R_w, self.clip, self.domain = R, R_w, clip, domain
        if domain == "ball":
            from dpxattn.fast.ball import check_ball_degree, resolve_ball_scale

            scale = resolve_ball_scale(scale)
            check_ball_degree(degree=self.degree, R=R, scale=scale)  # as build: odd s needs T_s(-a) > 0
        self.scale = scale
        self.r = feature_dimension(self.d, self.degree)
        from dpxattn.memory import check_build_memory

        check_build_memory(mechanism="direct", n=1, d=self.d, d_v=self.d_v, degree=self.degree,
                           copies=1, grid_size=None)
        a, b = exact_constants(n=1, d=self.d, degree=self.degree, R=R, R_w=R_w, d_v=self.d_v,
                               scale=scale, domain=domain)[:2]
        self.a, self.b = a, b
        self.n = 0
        from dpxattn.fast.exact_sum import new_state

        self._state = new_state(self.r, self.d_v)
        self._released = False

    def _public(self) -> tuple:
        return (self.d, self.d_v, self.degree, self.R, self.R_w, self.scale, self.clip,
                self.domain, self.a, self.b)

    def _check_open(self, what: str) -> None:
        if self._released:
            raise AccumulatorError("accumulator", f"was already released: it cannot {what} "
                                   "(a second release would spend the budget twice)")

    def add(self, K, V) -> "Accumulator":
        """Add rows: K (m, d), V (m, d_v) (torch, numpy, or memory-mapped ``.npy``), validated
        like ``build``'s input (bounds, shapes, finiteness), in chunks of ``ADD_CHUNK_ROWS``."""
        from dpxattn.fast.exact_sum import add_rows
        from dpxattn.fast.validation import check_keys_values
        from dpxattn.reference.exact_accumulation import MAX_ROWS

        self._check_open("add rows")
        m = len(K)
        if len(V) != m:
            raise ParameterError("V", f"must have as many rows as K ({m})", len(V))
        if self.n + m > MAX_ROWS:
            raise AccumulatorError("n", f"must stay <= {MAX_ROWS} rows per accumulator (the bound "
                                   "under which its int64 sums are exact, proofs_notes/30)",
                                   self.n + m)
        for start in range(0, m, ADD_CHUNK_ROWS):
            Kc = _chunk(K, start)
            Vc = _chunk(V, start)
            if Kc.ndim != 2 or Kc.shape[1] != self.d:
                raise ParameterError("K", f"must have d = {self.d} columns", tuple(Kc.shape))
            if Vc.ndim != 2 or Vc.shape[1] != self.d_v:
                raise ParameterError("V", f"must have d_v = {self.d_v} columns", tuple(Vc.shape))
            Kc, Vc = check_keys_values(Kc, Vc, R=self.R, R_w=self.R_w, clip=self.clip,
                                       domain=self.domain)
            with torch.no_grad():
                add_rows(self._state, Kc, Vc, degree=self.degree, scale=self.scale, a=self.a,
                         b=self.b)
            self.n += Kc.shape[0]
        return self

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Add another accumulator's sums (exact); it must have the same public parameters.
        ``other`` is consumed (it cannot be released afterwards)."""
        self._check_open("merge")
        if other is self:
            raise AccumulatorError("other", "is this accumulator: merging it into itself would "
                                   "count its rows twice")
        if not isinstance(other, Accumulator) or other._public() != self._public():
            raise AccumulatorError("other", "must be an Accumulator with the same public "
                                   "parameters (d, d_v, degree, R, R_w, scale, clip, domain)")
        other._check_open("be merged")
        from dpxattn.fast.exact_sum import carry

        self._state += other._state
        carry(self._state)
        self.n += other.n
        other._state = None
        other._released = True
        return self

    def release(self, *, eps, delta, law: str = "tlap", generator=None, noise=None,
                uniforms=None, public_maps=None):
        """The noisy structure (a ``DPCrossAttention``), noise added once, the accumulator
        consumed (its sums dropped). Randomness and ``noise`` as in ``build``."""
        from dpxattn.fast.ball import ball_denominator_floor, ball_feature_bounds, ball_plan_note
        from dpxattn.fast.cross_attention import (SECURE_GAUSSIAN_NUMERICS, DPCrossAttention,
                                                  _secure_note, check_law_noise, resolve_noise)
        from dpxattn.fast.direct import DirectRelease
        from dpxattn.fast.exact_sum import combine
        from dpxattn.fast.features import feature_bounds
        from dpxattn.fast.release import noise_stream
        from dpxattn.fast.secure_noise import SECURE_NUMERICS

        self._check_open("be released")
        if self.n == 0:
            raise AccumulatorError("accumulator", "holds no rows: nothing to release")
        check_build_arguments(mechanism="direct", eps=eps, delta=delta, R=self.R, R_w=self.R_w,
                              degree=self.degree, scale=self.scale, copies=1, grid_size=None,
                              clip=self.clip, law=law, domain=self.domain)
        noise_given = noise
        noise = resolve_noise(noise, generator, uniforms)
        check_law_noise(law, noise, noise_given)
        secure, gaussian, ball = noise == "secure", law == "gaussian", self.domain == "ball"
        n, d, d_v, s = self.n, self.d, self.d_v, self.degree
        a, b, sens, value_bound, analytic = exact_constants(
            n=n, d=d, degree=s, R=self.R, R_w=self.R_w, d_v=d_v, scale=self.scale,
            domain=self.domain, norm="l2" if gaussian else "l1")
        plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, law=law)
        eps_s, delta_s = plan.share("S")
        with torch.no_grad():
            S = combine(self._state, a, b)
            self._state = None
            self._released = True
            bounds = (ball_feature_bounds(d, s, self.R, scale=self.scale) if ball
                      else feature_bounds(d, s, self.R, scale=self.scale))
            stream = noise_stream(self.r * (d_v + 1), noise=noise, generator=generator,
                                  uniforms=uniforms)
            if gaussian and not secure:
                from dpxattn.fast.sensitivities import round_up
                from dpxattn.reference import gaussian as ref_gaussian

                gauss = (sens, round_up(ref_gaussian.sigma_for(sens, eps_s, delta_s), "sigma"))
            else:
                gauss = True if gaussian else None
            floor = (ball_denominator_floor(n=n, degree=s, R=self.R, scale=self.scale)
                     if ball else None)
            release = DirectRelease.build(None, None, degree=s, scale=self.scale,
                                          sensitivity=sens, eps=eps_s, delta=delta_s,
                                          bounds=bounds, stream=stream,
                                          secure=(sens, value_bound) if secure else None,
                                          gaussian=gauss, floor=floor, S=S, n=n,
                                          lattice=(a, b))
            del S
            stream.finish()
        if gaussian:
            used = ((release.law.sensitivity, release.law.sigma) if secure else gauss)
        else:
            used = (sens, float(release.law.b.max()))
        plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, law=law,
                           sensitivity=used[0], noise_scale=used[1], domain=self.domain)
        numerics = ((SECURE_GAUSSIAN_NUMERICS if gaussian else SECURE_NUMERICS) if secure else
                    NUMERICS_FLOAT_GAUSSIAN if gaussian else NUMERICS_FLOAT)
        notes = ((_secure_note(release),) if secure else ()) + (
            (ball_plan_note(self.clip),) if ball else ()) + (
            f"exact accumulation (streaming): features on the lattice 2^-{a}, values on 2^-{b}, "
            f"integer sums; the noise is calibrated to the sensitivity of that rounded statistic, "
            f"{sens:.9g} against the analytic {analytic:.9g}, which does not grow with n "
            "(proofs_notes/30-exact-accumulation.md)",)
        plan = plan.with_labels(randomness=stream.label, clip=self.clip, numerics=numerics,
                                notes=notes)
        if public_maps is not None:
            plan = plan.with_public_maps(public_maps)
        return DPCrossAttention(mechanism="direct", release=release, plan=plan, n=n, d=d,
                                d_v=d_v, degree=s, R=self.R, R_w=self.R_w, scale=self.scale,
                                clip=self.clip, copies=1, grid_size=None,
                                device=torch.device("cpu"), noise=noise, law=law,
                                domain=self.domain)
