"""The streaming build: an exact accumulator of the ``direct`` or ``tree`` statistic, released once.

Not in the paper (corpus scale; PAPER §5 items 8 and 18). Proof note
``proofs_notes/30-exact-accumulation.md``.

    acc = Accumulator(mechanism="direct", d=8, d_v=8, degree=3, R=1.0, R_w=1.0)
    acc.add(K_chunk, V_chunk)          # any number of chunks of any size, validated like build's
    acc.merge(other)                   # exact, order-independent; same public parameters
    att = acc.release(eps=1.0, delta=1e-6, law="tlap")   # noise added once; consumes acc
    tree = Accumulator(mechanism="tree", d=4, d_v=8, degree=3, R=1.0, R_w=1.0, grid_size=4096)

The sums are exact integers on public lattices (:mod:`dpxattn.fast.exact_sum`; the tree's
grid-cell sums of rounded terms, :mod:`dpxattn.fast.tree_accumulation`), so any
chunking, order or shard layout gives the same statistic bit for bit, and the noise is
calibrated to the sensitivity of that rounded statistic, which does not grow with n
(:mod:`dpxattn.reference.exact_accumulation`): at n = 1e9 it is within 1e-6 of its value at
n = 1e3, where float64 sums' allowance is 126x. The released structure is a
:class:`dpxattn.fast.DPCrossAttention` like ``build``'s (same queries, envelopes, plan; the plan
says how S was accumulated). Inputs: torch tensors, numpy arrays or memory-mapped ``.npy``
arrays (read chunk by chunk: nothing but the exact integer sums is kept).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from dpxattn.accounting import NUMERICS_FLOAT, NUMERICS_FLOAT_GAUSSIAN, feature_dimension, plan_direct
from dpxattn.errors import AccumulatorError, ParameterError
from dpxattn.params import (check_accumulator_arguments, check_accumulator_merge,
                            check_accumulator_release, check_degree, check_positive_int)

__all__ = ["Accumulator", "AccumulatorError", "exact_constants"]

#: rows validated and accumulated at a time from a large (e.g. memory-mapped) input
ADD_CHUNK_ROWS = 1 << 16


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
    tensor of its own (a copy for numpy inputs: memory maps are read-only). A read-only memory
    map's rows are read from its file (:func:`_read_mapped_rows`) and any of its pages that
    were touched are given back (:func:`_drop_mapped_pages`)."""
    part = X[start:start + ADD_CHUNK_ROWS]
    if isinstance(part, torch.Tensor):
        return part.detach().to(torch.float64)
    data = _read_mapped_rows(part)
    if data is None:
        data = np.array(part, dtype=np.float64, copy=True)
    _drop_mapped_pages(part)
    return torch.from_numpy(np.asarray(data, dtype=np.float64))


def _place_in_read_only_map(part):
    """``(mmap, byte offset of part's first row in it)`` for non-empty, C-ordered rows of a
    read-only (``mode="r"``) ``np.memmap``; None for anything else."""
    mm = getattr(part, "_mmap", None)
    if (mm is None or getattr(part, "mode", None) != "r" or part.size == 0
            or not part.flags.c_contiguous):
        return None
    return mm, part.ctypes.data - np.frombuffer(mm, dtype=np.uint8).ctypes.data


def _read_mapped_rows(part):
    """The rows of a read-only (``mode="r"``), C-ordered ``np.memmap`` read from its file with
    ``os.preadv`` into an array of their own (one kernel copy: no page faults on the map, which
    cost 1.38x the in-memory ``add`` when copying through it), or None where that does not apply
    (then the caller copies through the map). The file position is the map's page-aligned start
    (numpy maps from ``offset`` rounded down to ``mmap.ALLOCATIONGRANULARITY``) plus the rows'
    place in the map; the first and last rows read are compared with the map's, byte for byte,
    and any difference (a file changed underneath, a map numpy made otherwise) falls back."""
    import mmap
    import os

    place = _place_in_read_only_map(part)
    name = getattr(part, "filename", None)
    if place is None or not name or not hasattr(os, "preadv"):
        return None
    position = part.offset - part.offset % mmap.ALLOCATIONGRANULARITY + place[1]
    out = np.empty(part.shape, dtype=part.dtype)
    view = memoryview(out).cast("B")
    try:
        with open(name, "rb", buffering=0) as f:
            done = 0
            while done < len(view):
                got = os.preadv(f.fileno(), [view[done:]], position + done)
                if got <= 0:
                    return None
                done += got
    except OSError:
        return None
    if out[:1].tobytes() != part[:1].tobytes() or out[-1:].tobytes() != part[-1:].tobytes():
        return None
    return out


def _drop_mapped_pages(part) -> None:
    """Tell the kernel that this process no longer needs the pages of ``part``, rows of a
    read-only (``mode="r"``) ``np.memmap`` that have been copied (``madvise(MADV_DONTNEED)`` on
    the whole pages inside it): the file's page cache stays, later reads fault the pages in
    again, but the process's resident set no longer grows with the file (one pass over a 9.6 GB
    map kept 8.9 GiB of file pages resident). Only mode "r": a copy-on-write map ("c") would
    lose its private changes, a writable shared one is left alone. A no-op where the platform
    has no ``madvise``."""
    import mmap

    place = _place_in_read_only_map(part)
    if place is None or not hasattr(place[0], "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    mm, lo = place
    hi = lo + part.nbytes
    page = mmap.PAGESIZE
    lo, hi = -(-lo // page) * page, hi // page * page  # whole pages inside the copied rows
    if hi > lo:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


class Accumulator:
    """An exact, mergeable accumulator of the ``direct`` or ``tree`` statistic (module docstring).

    Public parameters as :meth:`dpxattn.fast.DPCrossAttention.build`'s (``domain`` "box" or
    "ball", the tree box only; ``clip`` as there; ``grid_size`` the tree's G, required: the grid
    is fixed before the rows are seen). Holds only the exact int64 sums, canonical
    (``exact_sum.carry``): (2, r, d_v + 1) for ``direct``, (2, G, r, d_v + 1, 3) grid-cell sums
    for the tree; and n.
    """

    def __init__(self, *, mechanism: str = "direct", d: int, d_v: int, degree: int, R, R_w,
                 scale=None, clip: bool = False, domain: str = "box",
                 grid_size: int | None = None) -> None:
        mechanism, degree, grid_size, clip = check_accumulator_arguments(
            mechanism=mechanism, R=R, R_w=R_w, degree=degree, scale=scale, grid_size=grid_size,
            clip=clip, domain=domain)
        self.mechanism = mechanism
        self.d = check_positive_int("d", d)
        self.d_v = check_positive_int("d_v", d_v)
        self.degree = check_degree(degree)
        self.R, self.R_w, self.clip, self.domain = R, R_w, clip, domain
        self.grid_size = grid_size
        if domain == "ball":
            from dpxattn.fast.ball import check_ball_degree, resolve_ball_scale

            scale = resolve_ball_scale(scale)
            check_ball_degree(degree=self.degree, R=R, scale=scale)  # as build: odd s needs T_s(-a) > 0
        self.scale = scale
        self.r = feature_dimension(self.d, self.degree)
        from dpxattn.memory import check_build_memory

        check_build_memory(mechanism=mechanism, n=1, d=self.d, d_v=self.d_v, degree=self.degree,
                           copies=1, grid_size=grid_size,
                           implementation="stream" if mechanism == "tree" else "fast")
        if mechanism == "tree":
            from dpxattn.fast.tree_accumulation import new_tree_state, tree_exact_constants

            self.exponents = tree_exact_constants(n=1, d=self.d, degree=self.degree, R=R,
                                                  R_w=R_w, d_v=self.d_v, grid=grid_size,
                                                  scale=scale)[0]
            self.a = self.b = None
            self._state = new_tree_state(grid_size, self.r, self.d_v)
        else:
            from dpxattn.fast.exact_sum import new_state

            self.a, self.b = exact_constants(n=1, d=self.d, degree=self.degree, R=R, R_w=R_w,
                                             d_v=self.d_v, scale=scale, domain=domain)[:2]
            self.exponents = None
            self._state = new_state(self.r, self.d_v)
        self.n = 0
        self._released = False

    @property
    def max_rows(self) -> int:
        """The most rows one accumulator may hold: 2^48 (``direct``: its int64 sums stay exact)
        or 2^44 (the tree: every node's high part stays below 2^53, so it is converted once)."""
        from dpxattn.reference.exact_accumulation import MAX_ROWS
        from dpxattn.reference.tree_accumulation import TREE_MAX_ROWS

        return TREE_MAX_ROWS if self.mechanism == "tree" else MAX_ROWS

    def check_rows(self, n: int) -> None:
        """Raise :class:`AccumulatorError` if ``n`` rows exceed :attr:`max_rows`."""
        if n > self.max_rows:
            raise AccumulatorError("n", f"must stay <= {self.max_rows} rows per accumulator (the "
                                   "bound under which its int64 sums are exact, proofs_notes/30)",
                                   n)

    def _public(self) -> tuple:
        return (self.mechanism, self.d, self.d_v, self.degree, self.R, self.R_w, self.scale,
                self.clip, self.domain, self.grid_size, self.a, self.b, self.exponents)

    def _check_open(self, what: str) -> None:
        if self._released:
            raise AccumulatorError("accumulator", f"was already released: it cannot {what} "
                                   "(a second release would spend the budget twice)")

    def add(self, K, V) -> "Accumulator":
        """Add rows: K (m, d), V (m, d_v) (torch, numpy, or memory-mapped ``.npy``), validated
        like ``build``'s input (bounds, shapes, finiteness), in chunks of ``ADD_CHUNK_ROWS``. If a
        chunk is refused, the chunks before it stay added (``n`` counts exactly the rows in the
        sums) and the error is raised."""
        return self._add(K, V, validate=True)

    def _add(self, K, V, *, validate: bool) -> "Accumulator":
        """:meth:`add`'s body; ``validate=False`` only for rows ``build`` has already validated
        (and clipped) with the same public parameters (its exact route, secure mode)."""
        from dpxattn.fast.validation import check_keys_values

        self._check_open("add rows")
        m = len(K)
        if len(V) != m:
            raise ParameterError("V", f"must have as many rows as K ({m})", len(V))
        scatter = None
        if self.mechanism == "tree":
            from dpxattn.fast.features import feature_bounds
            from dpxattn.fast.tree_accumulation import TreeScatter

            scatter = TreeScatter(self._state, degree=self.degree, scale=self.scale,
                                  bounds=feature_bounds(self.d, self.degree, self.R,
                                                        scale=self.scale),
                                  exponents=self.exponents, rows=max(1, m))
            add = scatter.add
        else:
            from dpxattn.fast.exact_sum import add_rows

            def add(Kc, Vc):
                add_rows(self._state, Kc, Vc, degree=self.degree, scale=self.scale, a=self.a,
                         b=self.b)
        self.check_rows(self.n + m)
        try:
            for start in range(0, m, ADD_CHUNK_ROWS):
                Kc = _chunk(K, start)
                Vc = _chunk(V, start)
                if Kc.ndim != 2 or Kc.shape[1] != self.d:
                    raise ParameterError("K", f"must have d = {self.d} columns", tuple(Kc.shape))
                if Vc.ndim != 2 or Vc.shape[1] != self.d_v:
                    raise ParameterError("V", f"must have d_v = {self.d_v} columns",
                                         tuple(Vc.shape))
                if validate:
                    Kc, Vc = check_keys_values(Kc, Vc, R=self.R, R_w=self.R_w, clip=self.clip,
                                               domain=self.domain)
                with torch.no_grad():
                    add(Kc, Vc)
                self.n += Kc.shape[0]
        finally:
            if scatter is not None:  # the chunks counted in n are in the state, canonical
                with torch.no_grad():
                    scatter.flush()
        return self

    def merge(self, other: "Accumulator") -> "Accumulator":
        """Add another accumulator's sums (exact); it must have the same public parameters.
        ``other`` is consumed (it cannot be released afterwards)."""
        check_accumulator_merge(self, other, Accumulator, "an Accumulator")
        self.check_rows(self.n + other.n)
        from dpxattn.fast.exact_sum import carry

        self._state += other._state
        carry(self._state)
        self.n += other.n
        other._state = None
        other._released = True
        return self

    def release(self, *, eps, delta, law: str = "tlap", generator=None, noise=None,
                uniforms=None, public_maps=None, copies: int = 1, composition: str = "basic"):
        """The noisy structure (a ``DPCrossAttention``), noise added once, the accumulator
        consumed (its sums dropped). Randomness and ``noise`` as in ``build``; ``copies`` and
        ``composition`` as there (the tree only)."""
        from dpxattn.fast.ball import ball_plan_note
        from dpxattn.fast.cross_attention import (SECURE_GAUSSIAN_NUMERICS, DPCrossAttention,
                                                  _secure_note, check_law_noise, resolve_noise)
        from dpxattn.fast.release import noise_stream
        from dpxattn.fast.secure_noise import SECURE_NUMERICS

        self._check_open("be released")
        copies = check_accumulator_release(self, eps=eps, delta=delta, law=law, copies=copies,
                                           composition=composition)
        tree = self.mechanism == "tree"
        noise_given = noise
        noise = resolve_noise(noise, generator, uniforms)
        check_law_noise(law, noise, noise_given)
        secure, gaussian = noise == "secure", law == "gaussian"
        if tree:
            from dpxattn.memory import check_build_memory
            from dpxattn.fast.tree_mechanism import tree_noise_count

            check_build_memory(mechanism="tree", n=self.n, d=self.d, d_v=self.d_v,
                               degree=self.degree, copies=copies, grid_size=self.grid_size,
                               implementation="stream")
            count = tree_noise_count(r=self.r, d_v=self.d_v, copies=copies, grid=self.grid_size)
        else:
            count = self.r * (self.d_v + 1)
        with torch.no_grad():
            stream = noise_stream(count, noise=noise, generator=generator, uniforms=uniforms)
            state, self._state, self._released = self._state, None, True
            if tree:
                release, plan, note = self._release_tree(state, eps, delta, law, stream, secure,
                                                         copies, composition)
            else:
                release, plan, note = self._release_direct(state, eps, delta, law, stream,
                                                           secure)
            del state
            stream.finish()
        numerics = ((SECURE_GAUSSIAN_NUMERICS if gaussian else SECURE_NUMERICS) if secure else
                    NUMERICS_FLOAT_GAUSSIAN if gaussian else NUMERICS_FLOAT)
        notes = ((_secure_note(release),) if secure else ()) + (
            (ball_plan_note(self.clip),) if self.domain == "ball" else ()) + (note,)
        plan = plan.with_labels(randomness=stream.label, clip=self.clip, numerics=numerics,
                                notes=notes)
        if public_maps is not None:
            plan = plan.with_public_maps(public_maps)
        return DPCrossAttention(mechanism=self.mechanism, release=release, plan=plan, n=self.n,
                                d=self.d, d_v=self.d_v, degree=self.degree, R=self.R,
                                R_w=self.R_w, scale=self.scale, clip=self.clip, copies=copies,
                                grid_size=self.grid_size, device=torch.device("cpu"),
                                noise=noise, law=law, domain=self.domain)

    def _release_direct(self, state, eps, delta, law, stream, secure):
        """(DirectRelease, plan, note) of the exact S~ (``release``'s body for ``direct``)."""
        from dpxattn.fast.ball import ball_denominator_floor, ball_feature_bounds
        from dpxattn.fast.direct import DirectRelease
        from dpxattn.fast.exact_sum import combine
        from dpxattn.fast.features import feature_bounds

        gaussian, ball = law == "gaussian", self.domain == "ball"
        n, d, d_v, s = self.n, self.d, self.d_v, self.degree
        a, b, sens, value_bound, analytic = exact_constants(
            n=n, d=d, degree=s, R=self.R, R_w=self.R_w, d_v=d_v, scale=self.scale,
            domain=self.domain, norm="l2" if gaussian else "l1")
        eps_s, delta_s = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s,
                                     law=law).share("S")
        S = combine(state, a, b)
        bounds = (ball_feature_bounds(d, s, self.R, scale=self.scale) if ball
                  else feature_bounds(d, s, self.R, scale=self.scale))
        gauss = (sens, _sigma(sens, eps_s, delta_s)) if gaussian and not secure else (
            True if gaussian else None)
        floor = (ball_denominator_floor(n=n, degree=s, R=self.R, scale=self.scale)
                 if ball else None)
        release = DirectRelease.build(None, None, degree=s, scale=self.scale,
                                      sensitivity=sens, eps=eps_s, delta=delta_s,
                                      bounds=bounds, stream=stream,
                                      secure=(sens, value_bound) if secure else None,
                                      gaussian=gauss, floor=floor, S=S, n=n, lattice=(a, b))
        if gaussian:
            used = ((release.law.sensitivity, release.law.sigma) if secure else gauss)
        else:
            used = (sens, float(release.law.b.max()))
        plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, law=law,
                           sensitivity=used[0], noise_scale=used[1], domain=self.domain)
        note = (f"exact accumulation: features on the lattice 2^-{a}, values on "
                f"2^-{b}, integer sums; the noise is calibrated to the sensitivity of that "
                f"rounded statistic, {sens:.9g} against the analytic {analytic:.9g}, which does "
                "not grow with n (proofs_notes/30-exact-accumulation.md)")
        return release, plan, note

    def _release_tree(self, state, eps, delta, law, stream, secure, copies, composition):
        """(TreeRelease, plan, note) of the exact grid-cell sums (``release``'s body for the
        tree): the sensitivities of the rounded, once-converted sums
        (:func:`dpxattn.fast.tree_accumulation.tree_exact_constants`) in place of build's."""
        from dpxattn.accounting import plan_tree
        from dpxattn.fast.cross_attention import _norm_bound, _public_float_up
        from dpxattn.fast.features import feature_bounds
        from dpxattn.fast.sensitivities import tree_sensitivities
        from dpxattn.fast.tree_accumulation import tree_exact_constants, tree_sums
        from dpxattn.fast.tree_mechanism import TreeRelease, tlap_plan_records

        n, d, d_v, s, G = self.n, self.d, self.d_v, self.degree, self.grid_size
        ex, s_sens, n_sens, s_bound, n_bound, l2 = tree_exact_constants(
            n=n, d=d, degree=s, R=self.R, R_w=self.R_w, d_v=d_v, grid=G, copies=copies,
            scale=self.scale)
        sums = tree_sums(state, ex)
        args = dict(degree=s, scale=self.scale, grid=G, copies=copies,
                    bounds=feature_bounds(d, s, self.R, scale=self.scale),
                    norm_bound=_norm_bound(d, s, self.R, self.scale),
                    R_w=_public_float_up(self.R_w, "R_w"), stream=stream, sums=sums, n=n,
                    lattice=ex)
        if law == "gaussian":
            plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, copies=copies,
                             grid_size=G, law="gaussian")
            eps_g, delta_g = plan.share("tree")
            if secure:
                gauss, extra = True, (eps_g, delta_g, l2, float(max(s_bound.max(),
                                                                     n_bound.max())))
            else:
                gauss, extra = (_sigma(l2, eps_g, delta_g), l2), None
            from dpxattn.reference.tree_noise_weights import tree_noise_weights

            release = TreeRelease.build(None, None, scalar_sens=None, node_sens=None,
                                        shares=None, secure=extra, gaussian=gauss,
                                        noise_weights=tree_noise_weights(
                                            d, s, self.R, grid_size=G, scale=self.scale),
                                        **args)
            sens, sigma = ((release.node_law.sensitivity, release.node_law.sigma) if secure
                           else (l2, gauss[0]))
            plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, copies=copies,
                             grid_size=G, law="gaussian", sensitivity=sens, noise_scale=sigma)
            used = f"the l2 sensitivity {sens:.9g}"
        else:
            plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, copies=copies,
                             grid_size=G, composition=composition)
            release = TreeRelease.build(
                None, None, scalar_sens=s_sens, node_sens=n_sens,
                shares={key: plan.share(key) for key in ("c0", "c1", "tree_level")},
                secure=(s_sens, n_sens, s_bound, n_bound) if secure else None, **args)
            sens, scale = tlap_plan_records(s_sens, n_sens, release)
            plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=s, copies=copies,
                             grid_size=G, composition=composition, sensitivity=sens,
                             noise_scale=scale)
            ratio = float(np.max(n_sens / tree_sensitivities(
                d=d, degree=s, R=self.R, R_w=self.R_w, d_v=d_v, scale=self.scale)[1]))
            used = f"per-level sensitivities at most {ratio:.9g}x the analytic ones"
        note = (f"exact accumulation: every term on the lattice 2^-{ex[0]}, "
                f"2^-{ex[1]}, 2^-{ex[2]} (moments 0, 1, 2), integer grid-cell sums, each "
                f"released number converted once; the noise is calibrated to the rounded sums' "
                f"sensitivity, {used}, which does not grow with n "
                "(proofs_notes/30-exact-accumulation.md)")
        return release, plan, note


def _sigma(sensitivity: float, eps, delta) -> float:
    """sigma of the analytic Gaussian for an l2 ``sensitivity`` at (eps, delta), rounded up."""
    from dpxattn.fast.sensitivities import round_up
    from dpxattn.reference import gaussian as ref_gaussian

    return round_up(ref_gaussian.sigma_for(sensitivity, eps, delta), "sigma")
