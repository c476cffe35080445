"""Hardened Gaussian noise: the lattice release with exact discrete Gaussian noise, vectorised.

Discrete Gaussian, hardened release -- paper: none (not in arXiv 2407.14717); Canonne, Kamath &
Steinke 2020 (CKS20) Algorithm 3; proofs_notes/25-discrete-gaussian.md.

:func:`sample_gaussian_units` draws iid N_Z(0, sigma^2) integers exactly, following the
reference's word-consumption rule element by element (module docstring of
``dpxattn.reference.discrete_gaussian``), vectorised over the pending elements with numpy
integer arrays on the primitives of ``dpxattn.fast.secure_noise`` (the word sources, the
vectorised ``bernoulli_exp``, the threshold counts of the geometric part and the block
acceptance): given the same (n, T) uint64 tape it returns the same integers as
:func:`dpxattn.reference.discrete_gaussian.sample_from_tape`.

:func:`secure_gaussian_release` rounds every coordinate of a float64 vector to the public
lattice ``g Z`` (``dpxattn.fast.secure_noise``'s integer rounding, ties to even), adds iid
N_Z(0, t (t - 1)) lattice units and returns ``(round(x/g) + Y) g``; the constants come from
:func:`dpxattn.reference.discrete_gaussian.lattice_gaussian_parameters` (one exact computation
shared by both implementations).

Timing (proofs_notes/23-hardened-noise.md, "Threat model", applies unchanged): the sampler never
reads the private values; its running time is a function of its random words and the public
shape only; requests are padded to :data:`dpxattn.fast.secure_noise.MIN_BLOCK` draws; the
rounding is the same fixed sequence of integer operations. The few elements whose acceptance
exponent needs more than 64 bits (``|b X - a| >= 2^32``, at most 0.7 % of the proposals on the
release grid, 0.05 % at the canonical t) are computed with Python integers: a function of the random words only.

Shapes: ``values`` any shape (torch tensor or array-like), flattened in C order; the tape has
one row per flattened element; the output has the input's shape.
"""

from __future__ import annotations

import numpy as np
import torch

from dpxattn.errors import ShapeError
from dpxattn.fast.secure_noise import (
    CHUNK,
    MIN_BLOCK,
    SecureRelease,
    _bernoulli_exp,
    _block_table,
    _blocks_accepted,
    _checked_units,
    _element_words,
    _source,
    _threshold_counts,
    _to_numpy,
)
from dpxattn.reference.discrete_gaussian import (
    A_STOP,
    GaussianLatticeParameters,
    _check_sampler_range,
    check_sigma2,
    lattice_gaussian_parameters,
    sample_from_words,
)
from dpxattn.reference.discrete_laplace import RANGE_LIMIT

__all__ = [
    "WORDS_PER_GAUSSIAN_DRAW",
    "SCALAR_TAIL",
    "SECURE_GAUSSIAN_NUMERICS",
    "sample_gaussian_units",
    "secure_gaussian_parameters",
    "secure_gaussian_release",
    "secure_gaussian_release_flat",
]

#: random words one draw consumes on average (about 6.5): sizes the buffered OS reads
WORDS_PER_GAUSSIAN_DRAW = 8

#: the privacy plan's numerics label for this path
SECURE_GAUSSIAN_NUMERICS = (
    "hardened: every released number is a lattice point (round to a public 2^k, ties to even) "
    "plus exact discrete Gaussian noise N_Z(0, t (t - 1)) from CSPRNG words (CKS20 Algorithm 3); "
    "l2 sensitivity includes the rounding; delta certified with interval arithmetic "
    "(proofs_notes/25-discrete-gaussian.md)"
)

_U64 = np.uint64
_ONE = _U64(1)
#: pending elements finished one by one by the reference sampler (on their own words)
SCALAR_TAIL = 32
#: |b X - a| below this is squared in uint64 (u^2 < 2^64)
_SMALL = _U64(1 << 32)


def _virtual_support(t: int) -> int:
    """The K whose TLap block table has the block 2^m <= t (m = t.bit_length() - 1) and
    a_stop = 1024 thresholds: K = 2^(m + 10) - 1 (``discrete_laplace.block_exponent``)."""
    return (1 << (t.bit_length() + 9)) - 1


def _geometric_counts(src, gid: np.ndarray, table, t: int) -> np.ndarray:
    """A per element, untruncated: threshold counts (min(A, a_stop)) continued while they reach
    a_stop (memorylessness; the reference's ``laplace_from_words``)."""
    a = _threshold_counts(src, gid, table, t)
    over = np.flatnonzero(a >= _U64(table.a_stop))
    while over.size:
        c = _threshold_counts(src, gid[over], table, t)
        a[over] += c
        over = over[c >= _U64(table.a_stop)]
    return a


def _laplace_block(src, gid: np.ndarray, t: int, range_limit: int) -> np.ndarray:
    """One untruncated discrete Laplace draw P(y) prop. e^(-|y|/t) per element (int64)."""
    table = _block_table(t, _virtual_support(t))
    if table.a_stop != A_STOP:  # the reference's rule; a change there must be mirrored here
        raise RuntimeError("secure_gaussian: block table a_stop differs from the reference's A_STOP")
    m = table.step.bit_length() - 1
    step, spare = _U64(table.step), 63 - m
    spare_mask = _U64((1 << spare) - 1)
    limit = _U64((1 << (62 - m)) - 1)  # A 2^m + B < 2^62: fits int64
    n = len(gid)
    out = np.empty(n, dtype=np.int64)
    pending = np.arange(n)
    while pending.size:
        g = gid[pending]
        a = _geometric_counts(src, g, table, t)
        if a.size and a.max() >= limit:  # needs > 2^22 words on one element: unreachable
            raise RuntimeError("secure_gaussian: geometric count beyond the int64 range")
        b = np.empty(len(g), dtype=np.uint64)
        negative = np.empty(len(g), dtype=bool)
        todo = np.arange(len(g))
        while todo.size:
            tid = g[todo]
            w = src.take(tid)
            bb = w & (step - _ONE)
            ok = _blocks_accepted(src, tid, bb, (w >> _U64(m)) & spare_mask, t, spare, range_limit)
            b[todo[ok]] = bb[ok]
            negative[todo[ok]] = (w[ok] >> _U64(63)) == _ONE
            todo = todo[~ok]
        x = a * step + b
        bad = negative & (x == 0)
        value = x.view(np.int64)
        signed = np.where(negative, -value, value)
        good = ~bad
        out[pending[good]] = signed[good]
        pending = pending[bad]
    return out


def _exponents(magnitude: np.ndarray, a: int, b: int, D: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, r) = divmod((b X - a)^2, D) per element: uint64 arithmetic where |b X - a| < 2^32,
    Python integers elsewhere (exact in both). n is returned as int64, capped at 2^62 (a count
    of Bernoulli(e^-1) successes no tape can reach)."""
    size = len(magnitude)
    n = np.empty(size, dtype=np.int64)
    r = np.empty(size, dtype=np.uint64)
    fits = magnitude <= _U64(((1 << 63) - 1) // b)  # b X < 2^63: b X - a fits int64
    bx = magnitude * _U64(b)  # wraps where it does not fit; those entries are redone below
    diff = bx.view(np.int64) - np.int64(a)
    small = fits & (np.abs(diff) < np.int64(1 << 32))
    s = np.flatnonzero(small)
    if s.size:
        u = np.abs(diff[s]).view(np.uint64)
        uu = u * u
        n[s] = (uu // _U64(D)).view(np.int64)
        r[s] = uu % _U64(D)
    for i in np.flatnonzero(~small):  # <= 0.7 % of proposals on the release grid (t <= 2^30)
        q, rem = divmod((b * int(magnitude[i]) - a) ** 2, D)
        n[i] = min(q, 1 << 62)
        r[i] = rem
    return n, r


def _accepted(src, gid: np.ndarray, magnitude: np.ndarray, a: int, b: int, D: int,
              range_limit: int) -> np.ndarray:
    """Bernoulli(exp(-(b X - a)^2 / D)) per element: n steps of Bernoulli(e^-1), stopping at the
    first false, then Bernoulli(exp(-r/D)) (``discrete_gaussian.bernoulli_exp_rational``)."""
    n, r = _exponents(magnitude, a, b, D)
    accepted = np.ones(len(gid), dtype=bool)
    alive = np.flatnonzero(n > 0)
    while alive.size:
        ones = np.ones(alive.size, dtype=np.uint64)
        ok = _bernoulli_exp(src, gid[alive], ones, ones, range_limit)
        accepted[alive[~ok]] = False
        alive = alive[ok]
        n[alive] -= 1
        alive = alive[n[alive] > 0]
    f = np.flatnonzero(accepted)
    if f.size:
        accepted[f] = _bernoulli_exp(src, gid[f], r[f], np.full(f.size, D, dtype=np.uint64), range_limit)
    return accepted


def _sample_block(src, ids: np.ndarray, s2, t: int, a: int, b: int, D: int,
                  range_limit: int) -> np.ndarray:
    """One discrete Gaussian draw per element of ``ids`` (global element indices, the tape's rows).

    Rejected elements restart their draw in the next pass; once at most :data:`SCALAR_TAIL`
    remain they are finished one by one by the reference sampler on their own words (the same
    rule, so the same integers; the last passes' fixed numpy overhead is not worth paying for a
    handful of elements)."""
    out = np.empty(len(ids), dtype=np.int64)
    pending = np.arange(len(ids))
    while pending.size:
        if pending.size <= SCALAR_TAIL:
            for i in pending:
                out[i] = sample_from_words(s2, _element_words(src, int(ids[i])), range_limit=range_limit)
            break
        gid = ids[pending]
        y = _laplace_block(src, gid, t, range_limit)
        ok = _accepted(src, gid, np.abs(y).view(np.uint64), a, b, D, range_limit)
        out[pending[ok]] = y[ok]
        pending = pending[~ok]
    return out


def sample_gaussian_units(count: int, sigma2, *, generator=None, tape=None,
                          range_limit: int = RANGE_LIMIT) -> tuple[np.ndarray, str]:
    """``count`` iid draws of N_Z(0, sigma^2) (int64), exactly (CKS20 Algorithm 3).

    ``sigma2``: a public rational with acceptance denominator D <= 2^62 (e.g. the grid
    t (t - 1), ``dpxattn.reference.discrete_gaussian.grid_sigma2``). Sources: ``tape`` (a
    (count, T) uint64 array; conformance: identical integers to the reference), ``generator``
    (seeded numpy / torch, tests and audits only) or, by default, ``os.urandom``. Requests are
    padded to ``MIN_BLOCK`` draws (not with a tape). Returns the draws and the randomness label.
    """
    s2 = check_sigma2(sigma2)
    t, a, b, D = _check_sampler_range(s2, range_limit)
    count = int(count)
    if count < 0:
        raise ShapeError("count", "must be >= 0", count)
    total = count if tape is not None else max(count, MIN_BLOCK if count else 0)
    src = _source(generator, tape, min(max(WORDS_PER_GAUSSIAN_DRAW * total, 1024), 1 << 17))
    if tape is not None and src.tape.shape[0] != count:
        raise ShapeError("tape", f"must have one row per draw ({count})", f"{src.tape.shape[0]} rows")
    out = np.empty(total, dtype=np.int64)
    for start in range(0, total, CHUNK):
        ids = np.arange(start, min(start + CHUNK, total))
        out[start:start + len(ids)] = _sample_block(src, ids, s2, t, a, b, D, range_limit)
    return out[:count], src.label


# ---------------------------------------------------------------------------------------------
# the release
# ---------------------------------------------------------------------------------------------

def secure_gaussian_parameters(*, sensitivity, eps, delta, changed: int, value_bound=None
                               ) -> GaussianLatticeParameters:
    """The public constants of a release (cached exact computation; see
    ``dpxattn.reference.discrete_gaussian.lattice_gaussian_parameters``)."""
    return lattice_gaussian_parameters(sensitivity, eps, delta, changed, value_bound=value_bound)


def secure_gaussian_release_flat(flat: np.ndarray, params: GaussianLatticeParameters, generator=None,
                                 tape=None) -> tuple[np.ndarray, str]:
    """The release of a contiguous float64 vector under ``params``: (round(x/g) + Y) g as float64
    and the randomness label. Exact lattice points while |round(x/g) + Y| <= 2^53 (the lattice
    leaves 64 t of room, so beyond happens with probability < e^-2000); beyond, the float64
    conversion of the integer rounds, a function of the released integer alone
    (post-processing)."""
    units = _checked_units(flat, params)
    noise, label = sample_gaussian_units(flat.size, params.sigma2_units, generator=generator, tape=tape)
    units += noise
    released = np.empty(flat.size, dtype=np.float64)
    np.multiply(units, params.granularity, out=released)
    return released, label


def secure_gaussian_release(values, *, sensitivity, eps, delta, changed: int, generator=None,
                            value_bound=None, tape=None) -> SecureRelease:
    """Release ``values`` (l2 sensitivity ``sensitivity`` over at most ``changed`` coordinates) as
    lattice points plus exact discrete Gaussian noise: (eps, delta)-DP with the certified delta
    of ``parameters.delta_upper <= delta`` (proofs_notes/25-discrete-gaussian.md).

    ``sensitivity`` must bound the l2 distance between the float64 vectors actually passed on
    neighbouring inputs (floating-point error of their computation included). ``value_bound``
    (public, optional) bounds every |value|. Raises :class:`BoundError` for NaN/inf,
    |value| > value_bound, or a value beyond the lattice range. ``generator``: None (secure,
    ``os.urandom``), a seeded numpy/torch generator (tests, audits), or ``tape`` (conformance).

    Returns ``dpxattn.fast.secure_noise.SecureRelease`` (``values`` float64 tensor of the input's
    shape and device, ``parameters`` a ``GaussianLatticeParameters``, ``randomness``).
    """
    params = secure_gaussian_parameters(sensitivity=sensitivity, eps=eps, delta=delta,
                                        changed=changed, value_bound=value_bound)
    x, device = _to_numpy(values)
    shape = x.shape
    released, label = secure_gaussian_release_flat(np.ascontiguousarray(x.reshape(-1)), params,
                                                   generator, tape)
    out = torch.from_numpy(released.reshape(shape))
    if device is not None and device.type != "cpu":
        out = out.to(device)
    return SecureRelease(out, params, label)
