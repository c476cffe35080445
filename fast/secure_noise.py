"""Hardened noise: the lattice release with exact discrete truncated Laplace noise, vectorised.

TLap, hardened release -- paper: truncated Laplace mechanism (v2 §2 / App. B);
spec PAPER.md §2.1 and §5 item 18; proofs_notes/23-hardened-noise.md.

:func:`secure_release` is the release path of ``noise="secure"``: it rounds every coordinate of
a float64 vector to the public lattice ``g Z`` (integer operations on the float's bits, ties to
even), adds integer noise drawn exactly from the discrete truncated Laplace of
``dpxattn.reference.discrete_laplace`` and returns ``(round(x/g) + Z) g``, exact float64 lattice
points. The constants (g, Delta_int, t, K, the certified delta) come from
:func:`dpxattn.reference.discrete_laplace.lattice_parameters`: one exact computation shared by
both implementations.

The sampler (:func:`sample_noise_units`) follows the reference's word-consumption rule element
by element (module docstring of ``dpxattn.reference.discrete_laplace``), vectorised over the
elements still pending with numpy integer arrays: given the same (n, T) uint64 tape it returns
the same integers as :func:`dpxattn.reference.discrete_laplace.sample_from_tape`. Without a tape
the words come from the OS CSPRNG (``os.urandom``, default) or, for tests and audits only, from a
seeded ``numpy.random.Generator`` / ``torch.Generator`` (labelled so).

Timing: the sampler never reads the private values; its running time is a function of its
random words and the public shape only. Requests smaller than :data:`MIN_BLOCK` draws are
padded to it so the running time reflects many draws, not one. The rounding is a fixed sequence
of elementwise integer operations (no float arithmetic on private values, so no subnormal
slow path). What remains is documented in proofs_notes/23-hardened-noise.md.

Shapes: ``values`` any shape (torch tensor or array-like), flattened in C order; the tape has
one row per flattened element; the output has the input's shape.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from dpxattn.errors import BoundError, ShapeError, UniformsError
from dpxattn.randomness import LABEL_GIVEN, LABEL_SECURE, LABEL_SEEDED
from dpxattn.reference.discrete_laplace import (
    MAX_EXACT_UNITS,
    RANGE_LIMIT,
    LatticeParameters,
    bernoulli_ratio_from_prefix,
    block_exponent,
    lattice_parameters,
    threshold_count,
    threshold_first_digits,
)

__all__ = [
    "MIN_BLOCK",
    "CHUNK",
    "ROUND_BLOCK",
    "WORDS_PER_DRAW",
    "SECURE_NUMERICS",
    "SecureRelease",
    "secure_release",
    "secure_release_flat",
    "secure_support_bound",
    "secure_parameters",
    "sample_noise_units",
    "round_to_lattice_units",
    "secure_words_label",
]

#: stream requests are padded to at least this many draws (timing reflects many draws)
MIN_BLOCK = 4096
#: random words one draw consumes on average (about 2): sizes the buffered OS reads
WORDS_PER_DRAW = 3
#: elements processed together (bounds memory: a few int64 arrays of this length)
CHUNK = 1 << 18

#: the privacy plan's numerics label for this path
SECURE_NUMERICS = (
    "hardened: every released number is a lattice point (round to a public 2^k, ties to even) "
    "plus exact discrete truncated Laplace noise from CSPRNG words; sensitivity includes the "
    "rounding; delta certified by interval arithmetic (proofs_notes/23-hardened-noise.md)"
)

_U64 = np.uint64
_ONE = _U64(1)
_TWO = _U64(2)


# ---------------------------------------------------------------------------------------------
# word sources: one 64-bit word per (element, attempt)
# ---------------------------------------------------------------------------------------------

class _TapeWords:
    """Words from a given (n, T) uint64 tape: element i's j-th request reads tape[i, j]."""

    label = LABEL_GIVEN.replace("given uniforms", "given tape of random words")

    def __init__(self, tape) -> None:
        arr = np.asarray(tape)
        if arr.ndim != 2:
            raise ShapeError("tape", "must be a 2-D array (draws x words)", f"shape {arr.shape}")
        if arr.dtype != np.uint64:
            raise UniformsError("tape", "must have dtype uint64 (64-bit random words)", str(arr.dtype))
        self.tape = arr
        self.used = np.zeros(arr.shape[0], dtype=np.int64)

    def take(self, idx: np.ndarray) -> np.ndarray:
        col = self.used[idx]
        if col.size and int(col.max()) >= self.tape.shape[1]:
            raise UniformsError("tape", "has too few random words for this draw",
                                hint="give a longer tape (more columns)")
        self.used[idx] = col + 1
        return self.tape[idx, col]


class _StreamWords:
    """Fresh words from a fill function, buffered (every word is used once)."""

    def __init__(self, fill: Callable[[int], np.ndarray], label: str, block: int = 1 << 17) -> None:
        self.fill = fill
        self.label = label
        self.block = block
        self.buf = np.empty(0, dtype=np.uint64)
        self.pos = 0

    def take(self, idx: np.ndarray) -> np.ndarray:
        n = len(idx)
        if n > len(self.buf) - self.pos:
            rest = self.buf[self.pos:]
            self.buf = np.concatenate([rest, self.fill(max(n - len(rest), self.block))])
            self.pos = 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def _secure_fill(n: int) -> np.ndarray:
    return np.frombuffer(os.urandom(8 * n), dtype=np.uint64)


_SECURE_WORDS_LABEL = LABEL_SECURE.replace("uniforms (k + 1/2) 2^-52 strictly inside (0, 1)",
                                           "64-bit words")


def secure_words_label(generator=None) -> str:
    """The randomness label of the words a release with ``generator`` uses (None: the OS
    CSPRNG; a numpy / torch generator: seeded). Raises for any other type."""
    if generator is None:
        return _SECURE_WORDS_LABEL
    if isinstance(generator, (np.random.Generator, torch.Generator)):
        return LABEL_SEEDED
    raise UniformsError("generator", "must be None (secure), a numpy.random.Generator or a torch.Generator",
                        type(generator).__name__)


def _source(generator, tape, expected_words: int = 1 << 17):
    if tape is not None:
        if generator is not None:
            raise UniformsError("tape", "cannot be combined with a generator")
        return _TapeWords(tape)
    if generator is None:
        return _StreamWords(_secure_fill, _SECURE_WORDS_LABEL, expected_words)
    if isinstance(generator, np.random.Generator):
        def fill(n: int, g=generator) -> np.ndarray:
            return g.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
        return _StreamWords(fill, LABEL_SEEDED, expected_words)
    if isinstance(generator, torch.Generator):
        def fill(n: int, g=generator) -> np.ndarray:
            halves = torch.randint(0, 1 << 32, (2, n), generator=g, dtype=torch.int64,
                                   device=g.device).cpu().numpy()
            return (halves[0].astype(np.uint64) << _U64(32)) | halves[1].astype(np.uint64)
        return _StreamWords(fill, LABEL_SEEDED, expected_words)
    raise UniformsError("generator", "must be None (secure), a numpy.random.Generator or a torch.Generator",
                        type(generator).__name__)


# ---------------------------------------------------------------------------------------------
# vectorised primitives (each mirrors the reference function of the same name, per element)
# ---------------------------------------------------------------------------------------------

_MAX_WORD = np.iinfo(np.uint64).max


def _uniform_below(src, ids: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Uniform integers in {0..n_i - 1} per element: ``w mod n_i`` of the first word below
    ``2^64 - (2^64 mod n_i)`` (n_i = 1 uses no word)."""
    out = np.zeros(len(ids), dtype=np.uint64)
    todo = np.flatnonzero(n > _ONE)
    if not todo.size:
        return out
    nn = n[todo]
    # 2^64 mod n = ((2^64 - 1) mod n + 1) mod n; accept w <= 2^64 - 1 - (2^64 mod n)
    accept_max = _U64(_MAX_WORD) - ((_U64(_MAX_WORD) % nn + _ONE) % nn)
    while todo.size:
        w = src.take(ids[todo])
        ok = w <= accept_max
        out[todo[ok]] = w[ok] % nn[ok]
        keep = ~ok
        todo, nn, accept_max = todo[keep], nn[keep], accept_max[keep]
    return out


def _bernoulli_step(src, ids, num, den, k, range_limit: int) -> np.ndarray:
    """Bernoulli(num / (den k)) per element (num = 0: false, no word); den k above the range
    limit is split in two."""
    out = np.zeros(len(ids), dtype=bool)
    live = num > 0
    single = live & (den <= _U64(range_limit) // k)
    a = np.flatnonzero(single)
    if a.size:
        out[a] = _uniform_below(src, ids[a], den[a] * k[a]) < num[a]
    b = np.flatnonzero(live & ~single)
    if b.size:
        first = _uniform_below(src, ids[b], den[b]) < num[b]
        b2 = b[first]
        if b2.size:
            out[b2] = _uniform_below(src, ids[b2], k[b2]) == 0
    return out


def _bernoulli_exp(src, ids, num, den, range_limit: int, start: int = 1) -> np.ndarray:
    """Bernoulli(exp(-num/den)) per element (CKS20 Algorithm 1, alternating series), its steps
    taken from k = ``start`` on (``start`` = 2 when step 1 is already known to be true)."""
    n = len(ids)
    result = np.zeros(n, dtype=bool)
    k = np.full(n, start, dtype=np.uint64)
    alive = np.arange(n)
    while alive.size:
        step = _bernoulli_step(src, ids[alive], num[alive], den[alive], k[alive], range_limit)
        stopped = alive[~step]
        result[stopped] = (k[stopped] & _ONE) == _ONE
        alive = alive[step]
        k[alive] += _ONE
    return result


@dataclass(frozen=True)
class _BlockTable:
    """Public constants of X = A 2^m + B for one law (t, K): the block 2^m, the number of
    thresholds, the nonzero first digits of exp(-a 2^m / t), a = 1, 2, ... (non-increasing), and
    a 2^16-bucket index of them: ``above[h]`` = how many first digits have top 16 bits > h,
    ``mixed[h]`` = whether some first digit has top 16 bits == h."""

    step: int
    a_stop: int
    first: np.ndarray
    ascending: np.ndarray
    padded: np.ndarray
    above: np.ndarray
    mixed: np.ndarray


_BUCKET_SHIFT = 48
#: buckets indexed per slice while a table is built (its temporaries stay 2 x 64 KiB, not
#: 2 x 512 KiB: the table is built inside a timed, memory-gated build)
_TABLE_SLICE = 1 << 13


@functools.lru_cache(maxsize=128)
def _block_table(t: int, K: int) -> _BlockTable:
    step = 1 << block_exponent(t, K)
    a_stop = K // step + 1
    first = np.array(threshold_first_digits(step, t, a_stop), dtype=np.uint64)
    ascending = first[::-1].copy()
    top = np.sort((first >> _U64(_BUCKET_SHIFT)).astype(np.int64))
    n_buckets = 1 << (64 - _BUCKET_SHIFT)
    above = np.empty(n_buckets, dtype=np.int16 if len(top) < (1 << 15) else np.int32)  # 128 KiB
    for lo in range(0, n_buckets, _TABLE_SLICE):  # in slices: no full-size int64 temporaries
        buckets = np.arange(lo, lo + _TABLE_SLICE, dtype=np.int64)
        above[lo:lo + _TABLE_SLICE] = len(top) - np.searchsorted(top, buckets, side="right")
    mixed = np.zeros(n_buckets, dtype=bool)
    mixed[top] = True
    mixed[0] = True  # w1 < 2^48 may tie with the zero digit past the last threshold
    padded = np.concatenate([first, np.zeros(1, dtype=np.uint64)])
    return _BlockTable(step, a_stop, first, ascending, padded, above, mixed)


def _element_words(src, gid: int):
    """The further words of one element, one at a time (the rare paths)."""
    one = np.array([gid])
    while True:
        yield int(src.take(one)[0])


def _threshold_counts(src, gid: np.ndarray, table: _BlockTable, t: int) -> np.ndarray:
    """min(A, a_stop) per element, P(A >= a) = exp(-a 2^m / t): one word each, except on a tie
    of the word with a threshold's first digit (then the reference, word by word).

    Only words in a "mixed" bucket (one sharing its top 16 bits with a first digit, or bucket 0)
    are counted exactly and can tie: a tie ``w1 == first[j]`` shares w1's top 16 bits, and a tie
    with the zero digit past the last threshold needs ``w1 == 0`` (bucket 0)."""
    w1 = src.take(gid)
    bucket = (w1 >> _U64(_BUCKET_SHIFT)).view(np.int64)  # < 2^16: the same values as int64
    count = table.above[bucket].astype(np.int64)  # digits certainly above w1 (their top 16 bits are larger)
    np.minimum(count, table.a_stop, out=count)
    mixed = np.flatnonzero(table.mixed[bucket])
    if mixed.size:  # a digit shares w1's top 16 bits (or w1 < 2^48): count exactly
        wm = w1[mixed]
        exact = len(table.first) - np.searchsorted(table.ascending, wm, side="right")
        np.minimum(exact, table.a_stop, out=exact)
        count[mixed] = exact
        tie = (exact < table.a_stop) & (table.padded[np.minimum(exact, len(table.first))] == wm)
        for i in mixed[np.flatnonzero(tie)]:  # probability <= 2^-64 per draw
            words = itertools.chain([int(w1[i])], _element_words(src, gid[i]))
            count[i] = threshold_count(table.a_stop, table.step, t, words)
    return count.view(np.uint64)


def _blocks_accepted(src, gid, b, prefix, t: int, spare: int, range_limit: int) -> np.ndarray:
    """Bernoulli(exp(-b/t)) per element, step k = 1 read from the ``spare``-bit prefix."""
    T = _U64(t)
    c = (b << _U64(spare)) // T  # floor(b 2^spare / t), exact: b 2^spare < 2^63
    first = prefix < c
    undecided = np.flatnonzero((b > 0) & (prefix == c))
    for i in undecided:  # probability <= 2^-spare: the reference, word by word
        first[i] = bernoulli_ratio_from_prefix(int(b[i]), t, int(prefix[i]), spare,
                                               _element_words(src, gid[i]))
    accepted = ~first  # stopped at k = 1 (odd)
    go = np.flatnonzero(first)
    if go.size:
        accepted[go] = _bernoulli_exp(src, gid[go], b[go], np.full(go.size, T, dtype=np.uint64),
                                      range_limit, start=2)
    return accepted


def _sample_block(src, ids: np.ndarray, t: int, K: int, range_limit: int) -> np.ndarray:
    """One draw per element of ``ids`` (global element indices, for the tape's rows).

    Index arrays that would be the identity (every element still pending, every candidate
    accepted) are not materialised: the first pass over a block reads ``ids`` directly. The
    words requested, and their order, are those of the plain loop (same ``take`` calls)."""
    table = _block_table(t, K)
    m = table.step.bit_length() - 1
    step, spare = _U64(table.step), 63 - m
    spare_mask = _U64((1 << spare) - 1)
    Kk = _U64(K)
    n = len(ids)
    out = np.zeros(n, dtype=np.int64)
    pending = None  # positions in ids still to draw; None = all of them
    while pending is None or pending.size:
        gid = ids if pending is None else ids[pending]
        a = _threshold_counts(src, gid, table, t)
        rejected = a >= _U64(table.a_stop)
        if rejected.any():
            positions = np.arange(n) if pending is None else pending
            retry = [positions[rejected]]
            keep = ~rejected
            cand, a, cgid = positions[keep], a[keep], gid[keep]
        else:
            retry, cand, cgid = [], pending, gid
        # B uniform on [0, 2^m) accepted with probability exp(-B/t); the sign is bit 63
        todo = None  # positions in cgid still to accept; None = all of them (the first pass)
        while todo is None or todo.size:
            tid = cgid if todo is None else cgid[todo]
            w = src.take(tid)
            bb = w & (step - _ONE)
            ok = _blocks_accepted(src, tid, bb, (w >> _U64(m)) & spare_mask, t, spare, range_limit)
            if todo is None:  # first pass: keep every entry; the rejected ones are
                # overwritten by the pass that accepts them (each position's last write wins)
                b, negative = bb, (w >> _U64(63)) == _ONE
                todo = np.flatnonzero(~ok)
                continue
            b[todo[ok]] = bb[ok]
            negative[todo[ok]] = (w[ok] >> _U64(63)) == _ONE
            todo = todo[~ok]
        x = a * step + b
        bad = (x > Kk) | (negative & (x == 0))
        value = x.view(np.int64)
        signed = np.where(negative, -value, value)
        if bad.any():
            positions = np.arange(n) if cand is None else cand
            good = ~bad
            out[positions[good]] = signed[good]
            retry.append(positions[bad])
        elif cand is None:
            out[:] = signed
        else:
            out[cand] = signed
        pending = np.concatenate(retry) if retry else np.zeros(0, dtype=np.int64)
    return out


def sample_noise_units(count: int, params: LatticeParameters, *, generator=None, tape=None,
                       range_limit: int = RANGE_LIMIT) -> tuple[np.ndarray, str]:
    """``count`` iid draws of the discrete truncated Laplace of ``params`` (int64, lattice units).

    Exact law ``P(z) = exp(-|z|/t) / N`` on ``|z| <= K`` (t = ``params.scale_units``,
    K = ``params.support_units``). Sources: ``tape`` (a (count, T) uint64 array; conformance:
    identical integers to the reference), ``generator`` (seeded, tests/audits only) or, by
    default, ``os.urandom``. Returns the draws and the randomness label.
    """
    count = int(count)
    if count < 0:
        raise ShapeError("count", "must be >= 0", count)
    total = count if tape is not None else max(count, MIN_BLOCK if count else 0)
    src = _source(generator, tape, min(max(WORDS_PER_DRAW * total, 1024), 1 << 17))
    if tape is not None and src.tape.shape[0] != count:
        raise ShapeError("tape", f"must have one row per draw ({count})", f"{src.tape.shape[0]} rows")
    out = np.empty(total, dtype=np.int64)
    for start in range(0, total, CHUNK):
        ids = np.arange(start, min(start + CHUNK, total))
        out[start:start + len(ids)] = _sample_block(src, ids, params.scale_units,
                                                    params.support_units, range_limit)
    return out[:count], src.label


# ---------------------------------------------------------------------------------------------
# rounding to the lattice with integer operations on the float's bits
# ---------------------------------------------------------------------------------------------

_MANT_BITS = 52
_EXP_MASK = 0x7FF
_FRAC_MASK = (1 << _MANT_BITS) - 1


#: elements rounded together (the temporaries of one block stay in cache)
ROUND_BLOCK = 1 << 15


def _lattice_magnitudes(bits: np.ndarray, exponent: int) -> np.ndarray:
    """|round(x / 2^k)|, ties to even, of the float64 bit patterns ``bits`` (uint64, 1-D), as
    uint64; an entry whose magnitude exceeds 2^53 (or whose shift exceeds 10) gets a value
    >= 2^63. A fixed sequence of elementwise integer operations (no data-dependent branch).

    With x = mant 2^e2 and shift = e2 - k: right = clip(-shift, 0, 60), left = clip(shift, 0,
    11); M = 2 mant and r = right + 1 >= 1 give round-half-even of M / 2^r = mant / 2^right as
    (M + 2^(r-1) - 1 + bit_r(M)) >> r (no overflow: M < 2^54, the addend < 2^61), then << left
    (right = 0 whenever left > 0). shift >= 11 only happens for normals (mant >= 2^52), where
    mant << 11 >= 2^63 marks the entry as not fitting.
    """
    biased = (bits >> _U64(_MANT_BITS)) & _U64(_EXP_MASK)
    normal = (biased != _U64(0)).astype(np.uint64)
    twice = ((bits & _U64(_FRAC_MASK)) | (normal << _U64(_MANT_BITS))) << _ONE   # M = 2 mant
    shift = (biased | (_ONE - normal)).view(np.int64) - (1075 + int(exponent))   # e2 - k
    right = np.clip(-shift, 0, 60).view(np.uint64) + _ONE                       # r
    left = np.clip(shift, 0, 11).view(np.uint64)
    twice += (_ONE << (right - _ONE)) - _ONE + ((twice >> right) & _ONE)
    twice >>= right
    twice <<= left
    return twice


def round_to_lattice_units(x: np.ndarray, exponent: int) -> tuple[np.ndarray, np.ndarray]:
    """round(x / 2^k), ties to even, for finite float64 ``x`` (any shape), by integer operations.

    Returns ``(units, fits)``: int64 lattice integers and a bool mask of the entries whose
    |units| <= 2^53 (entries where ``fits`` is False hold 0). The same fixed sequence of
    elementwise integer operations runs for every entry (no data-dependent branch, no float
    arithmetic on x), block by block (:data:`ROUND_BLOCK`). Matches
    ``dpxattn.reference.discrete_laplace.round_to_lattice_units``.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    bits = x.reshape(-1).view(np.uint64)
    units = np.empty(bits.size, dtype=np.int64)
    fits = np.empty(bits.size, dtype=bool)
    for lo in range(0, bits.size, ROUND_BLOCK):
        chunk = bits[lo:lo + ROUND_BLOCK]
        mag = _lattice_magnitudes(chunk, exponent)
        ok = mag <= _U64(MAX_EXACT_UNITS)
        mag *= ok
        sign = (chunk >> _U64(63)).view(np.int64)                                # 0 or 1
        units[lo:lo + ROUND_BLOCK] = (mag.view(np.int64) ^ -sign) + sign
        fits[lo:lo + ROUND_BLOCK] = ok
    return units.reshape(x.shape), fits.reshape(x.shape)


def _checked_units(flat: np.ndarray, params: LatticeParameters) -> np.ndarray:
    """round(flat / g) (int64) after the public range checks of :func:`secure_release`, in its
    order (finite, then |x| <= value_bound, then |units| <= max_value_units), one block at a
    time; raises :class:`BoundError`."""
    bits = flat.view(np.uint64)
    units = np.empty(flat.size, dtype=np.int64)
    bound = None if params.value_bound is None else float(params.value_bound)
    finite = within = fit = True
    limit = _U64(min(params.max_value_units, MAX_EXACT_UNITS))
    for lo in range(0, flat.size, ROUND_BLOCK):
        chunk = flat[lo:lo + ROUND_BLOCK]
        finite &= bool(np.isfinite(chunk).all())
        if bound is not None:
            within &= bool((np.abs(chunk) <= bound).all())
        word = bits[lo:lo + ROUND_BLOCK]
        mag = _lattice_magnitudes(word, params.exponent)
        fit &= bool((mag <= limit).all())  # max_value_units <= 2^53: also says it fits
        sign = (word >> _U64(63)).view(np.int64)
        units[lo:lo + ROUND_BLOCK] = (mag.view(np.int64) ^ -sign) + sign
    if not finite:
        raise BoundError("values entries", "must be finite (no NaN or inf)")
    if not within:
        raise BoundError("values", f"must satisfy |x| <= value_bound = {bound!r}")
    if not fit:
        raise BoundError(
            "values", f"must round to at most {params.max_value_units} lattice units "
            f"(|x| <= {params.max_value_units * params.granularity!r} at g = 2^{params.exponent})",
            hint="pass a public value_bound so the lattice is chosen to fit")
    return units


# ---------------------------------------------------------------------------------------------
# the release
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecureRelease:
    """A hardened release: ``values`` (float64 tensor, the input's shape and device), every
    public constant used (``parameters``) and the randomness label for the privacy plan."""

    values: torch.Tensor
    parameters: LatticeParameters
    randomness: str

    def __iter__(self):  # allows ``values, params, label = secure_release(...)``
        return iter((self.values, self.parameters, self.randomness))


def secure_parameters(*, sensitivity, eps, delta, changed: int, value_bound=None) -> LatticeParameters:
    """The public constants of a release (cached exact computation; see ``lattice_parameters``)."""
    return lattice_parameters(sensitivity, eps, delta, changed, value_bound=value_bound)


def secure_support_bound(*, sensitivity, eps, delta, changed: int, value_bound=None) -> float:
    """Sure per-coordinate bound |released - exact input| <= K g + g/2 (exact float64), for
    envelopes: the rounding moves by at most g/2 and the noise by at most K lattice units."""
    return secure_parameters(sensitivity=sensitivity, eps=eps, delta=delta, changed=changed,
                             value_bound=value_bound).support_bound()


def _to_numpy(values) -> tuple[np.ndarray, torch.device | None]:
    if isinstance(values, torch.Tensor):
        return values.detach().to(device="cpu", dtype=torch.float64).numpy(), values.device
    return np.asarray(values, dtype=np.float64), None


def secure_release_flat(flat: np.ndarray, params: LatticeParameters, generator=None,
                        tape=None) -> tuple[np.ndarray, str]:
    """The release of a contiguous float64 vector under ``params``: (round(x/g) + Z) g as float64
    (exact: |round(x/g) + Z| <= 2^53, and m 2^k is a double for such m and k >= -1074, so the
    product by the double 2^k is exact) and the randomness label."""
    units = _checked_units(flat, params)
    noise, label = sample_noise_units(flat.size, params, generator=generator, tape=tape)
    units += noise
    released = np.empty(flat.size, dtype=np.float64)
    np.multiply(units, math.ldexp(1.0, params.exponent), out=released)
    return released, label


def secure_release(values, *, sensitivity, eps, delta, changed: int, generator=None,
                   value_bound=None, tape=None) -> SecureRelease:
    """Release ``values`` (l1 sensitivity ``sensitivity`` over at most ``changed`` coordinates)
    as lattice points plus exact discrete truncated Laplace noise: (eps, delta)-DP, exactly.

    ``sensitivity`` must bound the l1 distance between the float64 vectors actually passed on
    neighbouring inputs (floating-point error of their computation included). ``value_bound``
    (public, optional) bounds every |value|; it makes the range check public and coarsens g when
    needed. Raises :class:`BoundError` for NaN/inf, |value| > value_bound, or (without
    value_bound) a value beyond the exact float64 lattice range. ``generator``: None (secure,
    ``os.urandom``), a seeded numpy/torch generator (tests, audits), or ``tape`` (conformance).

    Returns :class:`SecureRelease` (``values`` float64 tensor of the input's shape and device,
    ``parameters``, ``randomness``); ``parameters.delta_achieved <= delta``.
    """
    params = secure_parameters(sensitivity=sensitivity, eps=eps, delta=delta, changed=changed,
                               value_bound=value_bound)
    x, device = _to_numpy(values)
    shape = x.shape
    released, label = secure_release_flat(np.ascontiguousarray(x.reshape(-1)), params, generator, tape)
    released = released.reshape(shape)
    out = torch.from_numpy(released)
    if device is not None and device.type != "cpu":
        out = out.to(device)
    return SecureRelease(out, params, label)
