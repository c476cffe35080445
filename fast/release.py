"""The one place where the fast path adds noise to private sums (PAPER.md §2.1, DESIGN §5).

Every noisy number a fast structure releases goes through :func:`release_`: the ``direct``
statistic ``S``, the tree's scalars ``c0, c1`` and every tree node. It adds iid truncated Laplace
noise, in place, to a tensor whose **row-major order is the documented uniform order** of the
mechanism (``proofs_notes/01-conventions.md``), consuming the :class:`UniformStream` chunk by
chunk along the first dimension. Sensitivities (and budgets) may differ per trailing entry: they
are given as arrays broadcastable to ``values.shape[1:]`` (e.g. one sensitivity per tree column);
each distinct (sensitivity, eps, delta) gets its constants from
:func:`dpxattn.fast.noise.tlap_constants` (sensitivity rounded up, eps and delta down).

Two noise modes (``DPCrossAttention.build(noise=...)``; proofs_notes/23-hardened-noise.md), both through :func:`release_`:

* ``"float"`` (:func:`noise_law`): the float64 inversion above, idealised real arithmetic
  (``NUMERICS_FLOAT``); reproducible from a seeded generator or given uniforms (conformance with
  the exact reference);
* ``"secure"`` (:func:`secure_law`): every entry goes through
  :func:`dpxattn.fast.secure_noise.secure_release` (round to a public lattice, add exact discrete
  truncated Laplace noise from 64-bit words, release lattice points;
  ``proofs_notes/23-hardened-noise.md``) with the law's per-entry public constants: the l1
  sensitivity of the vector **as computed** (for ``build`` and the accumulator, the exactly
  accumulated statistic's, its rounding included, ``proofs_notes/30``; for float64 sums it
  would be analytic + 2 x their float error bound,
  ``dpxattn.reference.sensitivity.secure_sensitivity``), ``changed`` and ``value_bound``.
  Entries that share those constants are released together, a chunk of rows at a time: one
  ``secure_release`` call on a batch of independent vectors with identical public constants is
  the same mechanism as one call per vector (the rounding is per coordinate and the noise iid
  per coordinate given the constants), so each vector (a component of the privacy plan) gets
  exactly the lattice release its constants define.

Gaussian law (``law="gaussian"``), float mode (:func:`gaussian_law`): iid N(0, sigma^2) on
every entry, ``sigma Phi^-1(u)`` from the same stream of uniforms in the same row-major order
and the same chunks (:func:`dpxattn.fast.noise.gaussian_ppf`); sigma is the reference's, for the
l2 sensitivity of the whole released group, rounded up (one Gaussian component). Secure mode
(:func:`secure_gaussian_law`): the whole group is one lattice release with exact discrete
Gaussian noise (:func:`dpxattn.fast.secure_gaussian.secure_gaussian_release_flat`;
``proofs_notes/25-discrete-gaussian.md``), its constants from the l2 sensitivity of the
**computed** float64 group; released a chunk of rows at a time on one thread (the noise is iid
per coordinate given the public constants, so the chunking is not part of the mechanism). Not
yet offered by the builds (``DPCrossAttention.build`` refuses ``law="gaussian"`` in secure mode).

Privacy unit: replace one row of (K, V); the caller passes the l1 sensitivity of each released
group under that adjacency, taken from ``dpxattn.reference.sensitivity``.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from dpxattn.errors import ParameterError
from dpxattn.fast.noise import (NOISE_CHUNK, TLapConstants, gaussian_ppf, ppf_from_constants,
                                tlap_constants)
from dpxattn.fast.secure_gaussian import secure_gaussian_parameters, secure_gaussian_release_flat
from dpxattn.fast.secure_noise import secure_release_flat, secure_parameters, secure_words_label
from dpxattn.fast.uniforms import uniform_stream

__all__ = ["NoiseLaw", "GaussianLaw", "gaussian_law", "noise_law", "secure_law", "SecureWords",
           "SecureGaussianLaw", "secure_gaussian_law",
           "noise_stream", "release_",
           "SECURE_CHUNK", "SECURE_PARALLEL_MIN", "NOISE_MODES", "secure_workers"]

#: the two noise modes of the fast mechanisms
NOISE_MODES = ("secure", "float")
#: entries released per ``secure_release`` call at most (bounds the temporaries: a few arrays of
#: this many 8-byte numbers)
SECURE_CHUNK = 1 << 21
#: a secure release with OS words is split over worker threads only above this many entries per
#: worker (below it the thread start-up costs more than it saves)
SECURE_PARALLEL_MIN = 1 << 16


def secure_workers(words: "SecureWords") -> int:
    """Threads for a secure release: 1 with a seeded generator (its words are consumed in one
    documented order, so seeded structures stay reproducible), else ``torch.get_num_threads()``
    capped by the CPU count. With OS words each chunk draws its own fresh words; numpy and
    ``os.urandom`` release the GIL, so the chunks' sampling runs on separate cores."""
    if words.generator is not None:
        return 1
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


@dataclass(frozen=True)
class NoiseLaw:
    """Per-entry TLap constants of one released group, as tensors over the trailing shape.

    ``b``, ``support_down``, ``support_up``, ``variance_bound``: float64 tensors of the trailing
    shape (broadcast); ``e_minus_a``, ``one_minus_e_minus_a``: likewise (they depend on
    (eps, delta) only); ``constants``: the distinct :class:`TLapConstants`, for reports.

    ``kind == "secure"`` (:func:`secure_law`): ``constants`` are the distinct
    :class:`dpxattn.reference.discrete_laplace.LatticeParameters` and ``index`` (int64, the
    trailing shape) says which one each entry uses; ``support_up = K g + g/2`` (sure bound on
    |released - computed sum|), ``support_down = K g`` (bound on the zero-mean noise alone),
    ``rounding = g/2`` (the deterministic rounding's bound), ``b = t g`` (the discrete law's
    scale), ``variance = 2 (t g)^2`` (>= the exact variance), ``e_minus_a`` and
    ``one_minus_e_minus_a`` unused (zeros).
    """

    shape: tuple
    b: torch.Tensor
    e_minus_a: torch.Tensor
    one_minus_e_minus_a: torch.Tensor
    support_down: torch.Tensor
    support_up: torch.Tensor
    variance: torch.Tensor
    constants: tuple
    kind: str = "float"
    index: torch.Tensor | None = None
    rounding: torch.Tensor | None = None

    @property
    def secure(self) -> bool:
        return self.kind == "secure"

    def noise_support(self) -> torch.Tensor:
        """Per-entry bound on |zero-mean noise| for the concentration bounds (float: A, rounded
        up; secure: K g, the rounding being covered separately by :attr:`rounding`)."""
        return self.support_down if self.secure else self.support_up

    def to(self, device) -> "NoiseLaw":
        """The same law with its tensors on ``device``."""
        return NoiseLaw(self.shape, *(getattr(self, f).to(device) for f in (
            "b", "e_minus_a", "one_minus_e_minus_a", "support_down", "support_up", "variance")),
            self.constants, self.kind, self.index,
            None if self.rounding is None else self.rounding.to(device))

    def expand(self, lead: int) -> "NoiseLaw":
        """The same per-entry law repeated over a new leading axis of size ``lead``."""
        def e(t):
            return None if t is None else t.unsqueeze(0).expand(lead, *t.shape)
        return NoiseLaw((lead, *self.shape), e(self.b), e(self.e_minus_a),
                        e(self.one_minus_e_minus_a), e(self.support_down), e(self.support_up),
                        e(self.variance), self.constants, self.kind, e(self.index),
                        e(self.rounding))


@dataclass(frozen=True)
class GaussianLaw:
    """iid N(0, sigma^2) on every entry of one released group (``law="gaussian"``, float mode).

    ``shape``: the trailing shape of the group's rows; ``sigma``: the float64 standard deviation
    (the reference's, rounded up); ``sensitivity``: the group's l2 sensitivity (rounded up), for
    reports; ``variance``: sigma^2 rounded up. There is no support bound (unbounded noise).
    """

    shape: tuple
    sigma: float
    sensitivity: float
    kind: str = "gaussian"

    @property
    def secure(self) -> bool:
        return False

    @property
    def variance(self) -> float:
        return math.nextafter(self.sigma * self.sigma, math.inf)

    @property
    def constants(self) -> tuple:
        return ((self.sensitivity, self.sigma),)

    def to(self, device) -> "GaussianLaw":
        """The same law (it holds no tensors)."""
        return self


def gaussian_law(shape, sigma: float, sensitivity: float) -> GaussianLaw:
    """The :class:`GaussianLaw` of a group of trailing ``shape`` (sigma, sensitivity: float64,
    already rounded up by the caller, ``dpxattn.fast.sensitivities.direct_gaussian_constants``)."""
    sigma, sensitivity = float(sigma), float(sensitivity)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ParameterError("sigma", "must be finite and > 0", sigma)
    return GaussianLaw(tuple(int(x) for x in shape), sigma, sensitivity)


@dataclass(frozen=True)
class SecureGaussianLaw:
    """One lattice release with exact discrete Gaussian noise on every entry of a released group
    (``law="gaussian"``, secure mode; ``proofs_notes/25-discrete-gaussian.md``).

    ``shape``: the trailing shape of the group's rows; ``parameters``: the
    :class:`dpxattn.reference.discrete_gaussian.GaussianLatticeParameters` of the whole group.
    Per entry: ``sigma`` (g sqrt(t (t - 1)), rounded up; the discrete law's variance is below
    sigma^2), ``rounding`` = g/2 (the deterministic rounding's bound) and ``coupling`` = g (note
    25 Lemma 5: the noise is within one lattice unit of an N(0, sigma^2) draw coupled to it, surely).
    There is no support bound (unbounded noise).
    """

    shape: tuple
    parameters: object
    kind: str = "secure_gaussian"

    @property
    def secure(self) -> bool:
        return True

    @property
    def sigma(self) -> float:
        return self.parameters.sigma

    @property
    def sensitivity(self) -> float:
        return _float_up(self.parameters.sensitivity)

    @property
    def variance(self) -> float:
        return math.nextafter(self.sigma * self.sigma, math.inf)

    @property
    def rounding(self) -> float:
        return self.parameters.granularity / 2

    @property
    def coupling(self) -> float:
        return self.parameters.granularity

    @property
    def constants(self) -> tuple:
        return (self.parameters,)

    def to(self, device) -> "SecureGaussianLaw":
        """The same law (it holds no tensors)."""
        return self


def _float_up(x) -> float:
    from fractions import Fraction

    f = float(x)
    return f if Fraction(f) >= Fraction(x) else math.nextafter(f, math.inf)


def secure_gaussian_law(shape, sensitivity, eps, delta, *, changed: int, value_bound) -> SecureGaussianLaw:
    """The :class:`SecureGaussianLaw` of a group of trailing ``shape``: ``sensitivity`` is the l2
    sensitivity of the released group as computed (for build and the accumulator: the exactly
    accumulated statistic's, ``dpxattn.fast.accumulator.exact_constants``), ``changed`` how many of its
    coordinates can differ on neighbours, ``value_bound`` a public bound on |entry|; the constants
    come from :func:`dpxattn.fast.secure_gaussian.secure_gaussian_parameters` (cached)."""
    params = secure_gaussian_parameters(sensitivity=sensitivity, eps=eps, delta=delta,
                                        changed=int(changed), value_bound=value_bound)
    return SecureGaussianLaw(tuple(int(x) for x in shape), params)


def _exact_variance(k: TLapConstants) -> float:
    """Var TLap = 2 b^2 (1 - delta (a^2 + 2a)/(e^eps - 1)) (PAPER §2.1), rounded up a little."""
    factor = 1.0 - k.delta * (k.a * k.a + 2.0 * k.a) / math.expm1(k.eps)
    return min(2.0 * k.b * k.b, 2.0 * k.b * k.b * factor * (1.0 + 1e-12))


def _is_scalar(x) -> bool:
    """A single number (int, float, Fraction, mpf, numpy scalar), not an array or tensor."""
    return not isinstance(x, (np.ndarray, torch.Tensor, list, tuple)) and np.ndim(x) == 0


def noise_law(shape, sensitivity, eps, delta, *, device=None) -> NoiseLaw:
    """The constants of TLap(sensitivity, eps, delta) per entry of ``shape``.

    ``sensitivity``, ``eps``, ``delta``: scalars or nested sequences / arrays broadcastable to
    ``shape`` (exact values allowed: ``Fraction``, ``mpf``; they are rounded safely once).
    """
    shape = tuple(int(s) for s in shape)
    if all(_is_scalar(x) for x in (sensitivity, eps, delta)):  # one law for every entry
        k = tlap_constants(sensitivity, eps, delta)
        row = torch.tensor((k.b, k.e_minus_a, k.one_minus_e_minus_a, k.support_down,
                            k.support_up, _exact_variance(k)), dtype=torch.float64)
        t = row[:, None].expand(6, math.prod(shape)).contiguous().to(device)
        return NoiseLaw(shape, *(t[i].reshape(shape) for i in range(6)), constants=(k,))
    arrays = [np.asarray(x, dtype=object) for x in (sensitivity, eps, delta)]
    bs = np.broadcast_arrays(*[np.broadcast_to(a, shape) for a in arrays]) if shape else arrays
    flat = [a.reshape(-1) for a in bs]
    size = int(np.prod(shape)) if shape else 1
    cache: dict = {}
    fields = np.empty((6, size), dtype=np.float64)
    for idx in range(size):
        key = (flat[0][idx], flat[1][idx], flat[2][idx])
        k = cache.get(key)
        if k is None:
            k = tlap_constants(*key)
            cache[key] = k
        fields[:, idx] = (k.b, k.e_minus_a, k.one_minus_e_minus_a, k.support_down,
                          k.support_up, _exact_variance(k))
    t = torch.from_numpy(fields).to(device)
    views = [t[i].reshape(shape) for i in range(6)]
    return NoiseLaw(shape, *views, constants=tuple(dict.fromkeys(cache.values())))


def _broadcast(x, shape) -> np.ndarray:
    a = np.asarray(x, dtype=object)
    return np.broadcast_to(a, shape).reshape(-1) if shape else a.reshape(-1)


def secure_law(shape, sensitivity, eps, delta, *, changed, value_bound, device=None) -> NoiseLaw:
    """The hardened release's public constants per entry of ``shape``.

    ``sensitivity``: the l1 sensitivity of the vector the entry belongs to, as computed (the
    exactly accumulated statistic's, its rounding included); ``changed``: how many coordinates
    of that vector can differ on neighbours (an upper bound suffices);
    ``value_bound``: a public bound on |entry|. Each argument a scalar or broadcastable to
    ``shape``. Each distinct tuple gets :func:`dpxattn.fast.secure_noise.secure_parameters`.
    """
    shape = tuple(int(s) for s in shape)
    size = int(np.prod(shape)) if shape else 1
    flat = [_broadcast(x, shape) for x in (sensitivity, eps, delta, changed, value_bound)]
    keys: dict = {}
    index = np.empty(size, dtype=np.int64)
    fields = np.empty((5, size), dtype=np.float64)
    params = []
    for i in range(size):
        key = tuple(f[i] for f in flat)
        j = keys.get(key)
        if j is None:
            p = secure_parameters(sensitivity=key[0], eps=key[1], delta=key[2],
                                  changed=int(key[3]), value_bound=key[4])
            j = keys[key] = len(params)
            params.append(p)
        index[i] = j
    for j, p in enumerate(params):
        g = p.granularity
        tg = math.ldexp(float(p.scale_units), p.exponent)  # t g (t < 2^62: rounded once)
        row = (math.ldexp(float(p.support_units), p.exponent), p.support_bound(), g / 2,
               math.nextafter(tg, math.inf), math.nextafter(2.0 * tg * tg, math.inf) * (1 + 2.0**-50))
        fields[:, index == j] = np.array(row)[:, None]
    t = torch.from_numpy(fields).to(device)
    down, up, rounding, b, var = (t[i].reshape(shape) for i in range(5))
    zeros = torch.zeros(shape, dtype=torch.float64, device=device)
    return NoiseLaw(shape, b, zeros, zeros, down, up, var, tuple(params), "secure",
                    torch.from_numpy(index).reshape(shape), rounding)


class SecureWords:
    """The randomness of a secure-mode build: the OS CSPRNG (``generator=None``) or a seeded
    numpy / torch generator (reproducible hardened release; labelled seeded). ``label`` is the
    privacy plan's randomness label; ``finish()`` mirrors :class:`UniformStream`'s."""

    def __init__(self, generator=None) -> None:
        self.generator = generator
        self.label = secure_words_label(generator)
        self.released = 0

    def finish(self) -> None:
        return None


def noise_stream(count: int, *, noise: str, generator=None, uniforms=None, device=None):
    """The randomness of one build: a :class:`UniformStream` of ``count`` uniforms (``"float"``)
    or :class:`SecureWords` (``"secure"``; ``uniforms`` not allowed: they define float
    inversion draws)."""
    if noise == "float":
        return uniform_stream(count, generator=generator, uniforms=uniforms, device=device)
    if noise != "secure":
        raise ParameterError("noise", f"must be one of {NOISE_MODES}", noise)
    if uniforms is not None:
        raise ParameterError("uniforms", "must be None with noise='secure' (uniforms define "
                             "float64 inversion draws; the hardened release uses 64-bit words)",
                             "given", hint="use noise='float' for conformance with given uniforms")
    return SecureWords(generator)


def _secure_release_(values: torch.Tensor, law: NoiseLaw, words: SecureWords) -> torch.Tensor:
    if not isinstance(words, SecureWords):
        raise ValueError("release_: a secure law needs SecureWords randomness")
    width = max(1, int(np.prod(law.shape)) if law.shape else 1)
    rows = max(1, SECURE_CHUNK // width)
    index = law.index.reshape(-1).cpu().numpy()
    # per law: its public constants (``secure_law`` computed them with ``secure_parameters``, as
    # ``secure_release`` would) and the flattened trailing positions it covers, ascending
    # (block[:, mask] order); a single law covering everything releases the block as is
    groups = []
    for j, params in enumerate(law.constants):
        cols = np.flatnonzero(index == j)
        if cols.size:
            groups.append((params, None if cols.size == width else cols))
    total = values.shape[0]
    workers = secure_workers(words)
    if workers > 1:  # at least one chunk per worker when each still gets enough entries
        per_worker = -(-total // workers)
        if per_worker * width >= SECURE_PARALLEL_MIN:
            rows = min(rows, per_worker)
        else:
            workers = 1

    def release_rows(start: int) -> tuple[int, str]:
        stop = min(total, start + rows)
        block = values[start:stop]
        table = np.ascontiguousarray(
            block.detach().to(device="cpu", dtype=torch.float64).reshape(stop - start, width).numpy())
        label, count = words.label, 0
        for params, cols in groups:
            part = table if cols is None else table[:, cols]
            released, label = secure_release_flat(np.ascontiguousarray(part).reshape(-1), params,
                                                  words.generator)
            if cols is None:
                table = released.reshape(stop - start, width)
            else:
                table[:, cols] = released.reshape(stop - start, cols.size)
            count += released.size
        block.copy_(torch.from_numpy(table).view(block.shape))
        return count, label

    starts = range(0, total, rows)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(starts))) as pool:
            done = list(pool.map(release_rows, starts))
    else:
        done = [release_rows(start) for start in starts]
    for count, label in done:
        words.released += count
        words.label = label
    return values


def _secure_gaussian_release_(values: torch.Tensor, law: SecureGaussianLaw, words: SecureWords) -> torch.Tensor:
    if not isinstance(words, SecureWords):
        raise ValueError("release_: a secure law needs SecureWords randomness")
    width = max(1, int(np.prod(law.shape)) if law.shape else 1)
    rows = max(1, SECURE_CHUNK // width)
    for start in range(0, values.shape[0], rows):
        stop = min(values.shape[0], start + rows)
        block = values[start:stop]
        flat = np.ascontiguousarray(
            block.detach().to(device="cpu", dtype=torch.float64).reshape(-1).numpy())
        released, label = secure_gaussian_release_flat(flat, law.parameters, words.generator)
        block.copy_(torch.from_numpy(released).view(block.shape))
        words.released += released.size
        words.label = label
    return values


def release_(values: torch.Tensor, law: NoiseLaw, stream) -> torch.Tensor:
    """Add noise in place to ``values`` (float64, any strides), in row-major uniform order.

    ``values``: shape (rows, *law.shape). Float law: the uniforms for row i are the next
    ``prod(law.shape)`` of ``stream`` (a :class:`UniformStream`), consumed row by row in chunks
    of about :data:`dpxattn.fast.noise.NOISE_CHUNK` entries. Secure laws (:func:`secure_law`,
    :func:`secure_gaussian_law`): ``stream`` is :class:`SecureWords`; every entry is replaced by
    its hardened release (see the module docstring). Returns ``values``.
    """
    if tuple(values.shape[1:]) != law.shape:
        raise ValueError(f"release_: values {tuple(values.shape)} vs law {law.shape}")
    if isinstance(law, SecureGaussianLaw):
        return _secure_gaussian_release_(values, law, stream)
    if law.secure:
        return _secure_release_(values, law, stream)
    if isinstance(stream, SecureWords):
        raise ValueError("release_: a float law needs a stream of uniforms, not SecureWords")
    width = max(1, math.prod(law.shape))
    rows = max(1, NOISE_CHUNK // width)
    if isinstance(law, GaussianLaw):
        def draw(u):
            return gaussian_ppf(u, law.sigma)
    else:
        args = (law.b, law.support_down, law.e_minus_a, law.one_minus_e_minus_a)

        def draw(u):
            return ppf_from_constants(u, *args)
    if values.shape[0] <= rows:  # one chunk: no slicing
        u = stream.take(values.shape[0] * width).view(values.shape[0], *law.shape)
        values += draw(u)
        return values
    for start in range(0, values.shape[0], rows):
        stop = min(values.shape[0], start + rows)
        u = stream.take((stop - start) * width).view(stop - start, *law.shape)
        values[start:stop] += draw(u)
    return values

