"""DPCrossAttention in torch: build once from private (K, V), answer any queries, certify them.

Paper: DPTreeCrossAttention (v2 §3, App. D-I); spec PAPER.md §3.5-3.7 (the
``tree`` mechanism, sound reading) and §5 item 8 (the ``direct`` mechanism); DESIGN §2 and §4 (the
public contract); conventions ``proofs_notes/01-conventions.md``; how the fast path mirrors the
exact reference (``dpxattn.reference.DPCrossAttention``), its dtypes, tolerances and the
floating-point allowance of its envelopes: ``proofs_notes/19-fast-path.md``.

Shapes: K (n, d) in [0, R]^d, V (n, d_v) in [-R_w, R_w], Q (m, d) in [0, R]^d; ``query(Q)``,
``error_bound(Q)`` and ``hp_error_bound(Q, p)`` are (m, d_v).

Privacy unit: replace one row of (K, V) (entries inside the public bounds). The whole released
structure (every value column, the denominator, every copy, coordinate, moment and tree level)
is (eps, delta)-DP end to end (``privacy``). Noise modes (``build(noise=...)``; proofs_notes/23-hardened-noise.md):

* ``"secure"`` (the default when neither a generator nor uniforms is given): every released
  number is a lattice point, the exact float sum rounded to a public power of two plus exact
  discrete truncated Laplace noise from OS CSPRNG words (``fast/secure_noise.py``), with the
  sensitivity of the exactly accumulated sums (``build`` in secure mode is one
  :class:`dpxattn.fast.Accumulator` add and release: integer sums on public lattices, their
  rounding charged once, ``proofs_notes/30-exact-accumulation.md``); the plan's numerics is
  ``SECURE_NUMERICS`` (``proofs_notes/23-hardened-noise.md``);
* ``"float"`` (the default with a seeded generator or given uniforms): float64 inversion of the
  exact TLap CDF, proven in idealised real arithmetic only, NOT hardened against floating-point
  attacks (DESIGN §5); reproducible and in conformance with the exact reference.

Noise laws (``build(law=...)``): ``"tlap"`` (default, both mechanisms, both modes) and
``"gaussian"`` (``direct`` only, one component). Float mode: iid N(0, sigma^2) on S, sigma the
reference's analytic-Gaussian sigma on the l2 sensitivity (``proofs_notes/24-analytic-gaussian.md``).
Secure mode (the default without a generator or uniforms): the whole S as one lattice release
with exact discrete Gaussian noise from CSPRNG words on the l2 sensitivity of the computed S,
certified (eps, delta) of ``proofs_notes/25-discrete-gaussian.md``; numerics
``SECURE_GAUSSIAN_NUMERICS``. Gaussian noise is unbounded: ``error_bound`` raises :class:`dpxattn.errors.NoSureEnvelopeError`;
``hp_error_bound`` is exact in law (normal quantiles) plus the float allowance.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from dpxattn.accounting import check_public_maps
from dpxattn.accounting import (NUMERICS_FLOAT, NUMERICS_FLOAT_GAUSSIAN, feature_dimension,
                                plan_direct, plan_tree)
from dpxattn.errors import ParameterError, no_sure_envelope
from dpxattn.memory import check_build_memory
from dpxattn.fast.ball import (ball_denominator_floor, ball_direct_sensitivity,
                               ball_feature_bounds, ball_gaussian_constants,
                               ball_plan_note, check_ball_degree, resolve_ball_scale)
from dpxattn.fast.direct import DirectRelease, direct_noise_count
from dpxattn.fast.directed import float_up, memo_safe
from dpxattn.fast.envelope import finalize, hp_ratio_bound, median_copy_failure, ratio_bound
from dpxattn.fast.features import feature_bounds
from dpxattn.fast.release import NOISE_MODES, SecureGaussianLaw, noise_stream
from dpxattn.fast.sensitivities import (direct_gaussian_constants, direct_sensitivity,
                                        round_up, tree_gaussian_constants, tree_sensitivities)
from dpxattn.fast.tree_mechanism import (TreeRelease, median_over_copies, tlap_plan_records,
                                         tree_noise_count)
from dpxattn.fast.validation import check_failure_prob, check_keys_values, check_queries
from dpxattn.params import (check_build_arguments, check_clip, check_degree, check_law,
                            check_mechanism, check_mechanism_options, check_positive_int)

__all__ = ["DPCrossAttention", "resolve_noise", "check_law_noise", "Tolerance", "TOLERANCES",
           "ATOL_F64", "RTOL_F64", "ATOL_F32", "RTOL_F32", "SECURE_GAUSSIAN_NUMERICS"]

#: numerics label of a secure ``law="gaussian"`` build (``proofs_notes/25-discrete-gaussian.md``)
SECURE_GAUSSIAN_NUMERICS = (
    "hardened: lattice release with exact discrete Gaussian noise from CSPRNG words: every "
    "released number is a lattice point (round to a public 2^k, ties to even) plus g times an "
    "exact N_Z(0, t (t - 1)) integer; the l2 sensitivity is that of the exactly accumulated "
    "statistic, its lattice rounding and the release's rounding included; certified (eps, delta) of proofs_notes/25-discrete-gaussian.md (coupling and "
    "concentrated-DP bounds, interval arithmetic)"
)


@dataclass(frozen=True)
class Tolerance:
    """|answer_dtype - answer_exact| <= atol * R_w + rtol * |answer_exact|, entrywise."""

    atol: float
    rtol: float


#: float64 answers vs the exact reference built from the same uniforms (DESIGN §6: 1e-10 relative)
RTOL_F64 = 1e-10
#: absolute part (in units of R_w) for entries that cancel to ~0
ATOL_F64 = 1e-12
#: float32 queries vs the float64 answer of the same structure at the same query values
#: (``query(Q32)`` vs ``query(Q32.double())``; benchmark target G11e: <= 1e-4 relative); measured, not proven
#: (the certified envelope is what is proven, in every dtype). Rounding the queries themselves to
#: float32 is an input change, not an evaluation error: the tree's answer is ill-conditioned in Q
#: (measured ~1e-2 relative at n = 1e5; ``proofs_notes/19-fast-path.md``)
RTOL_F32 = 1e-4
#: absolute part for float32 (in units of R_w), for entries that cancel to ~0
ATOL_F32 = 1e-4

TOLERANCES = {torch.float64: Tolerance(ATOL_F64, RTOL_F64),
              torch.float32: Tolerance(ATOL_F32, RTOL_F32)}


def resolve_noise(noise, generator, uniforms) -> str:
    """The noise mode of a build: ``noise`` None gives "secure" when ``generator is None and
    uniforms is None``, else "float"; "secure" with ``uniforms`` raises (uniforms define float
    inversion draws); anything but None, "secure", "float" raises."""
    if noise is None:
        return "secure" if generator is None and uniforms is None else "float"
    if not isinstance(noise, str) or noise not in NOISE_MODES:
        raise ParameterError("noise", "must be None, 'secure' or 'float'", noise)
    if noise == "secure" and uniforms is not None:
        raise ParameterError("uniforms", "must be None with noise='secure' (given uniforms define "
                             "float64 inversion draws; the hardened release uses 64-bit words)",
                             "given", hint="use noise='float' (or leave noise=None) with uniforms")
    return noise


def check_law_noise(law: str, noise: str, noise_given) -> None:
    """The rule for noise laws and modes: every law takes both modes.

    ``law="gaussian"`` with ``noise="secure"`` (or ``noise=None`` without a generator or
    uniforms) is the exact discrete Gaussian lattice release (``proofs_notes/25-discrete-gaussian.md``);
    with ``noise="float"`` the float64 inversion (idealised real arithmetic). Secure mode with
    ``uniforms`` is refused for every law by :func:`resolve_noise` (uniforms define float64
    inversion draws), before this check. Kept as the one place for the rule (no combination of
    an accepted ``law`` and a resolved ``noise`` is refused today)."""
    return None


class DPCrossAttention:
    """A built private cross-attention structure (torch; float64 released numbers).

    DESIGN §4 contract: :meth:`build`, :meth:`query`, :meth:`error_bound`,
    :meth:`hp_error_bound`, :attr:`privacy`, :meth:`noise_count`. Public attributes:
    ``mechanism``, ``n``, ``d``, ``d_v``, ``degree``, ``r``, ``R``, ``R_w``, ``scale``, ``clip``,
    ``copies``, ``grid_size``, ``device``, ``noise`` (the mode), ``law`` (the noise law),
    ``release`` (the noisy structure: ``S`` for direct,
    ``payload``/``scalars`` for tree). Nothing private is kept: not K, V, a row, a feature or an
    exact sum. Paper: DPTreeCrossAttention (v2 §3); PAPER.md §3.5-3.7.

    Dtypes: released numbers are float64; ``query`` accepts float64 (default) or float32
    queries and answers in the query's dtype within :data:`TOLERANCES` of the exact answer
    (``ATOL``/``RTOL`` per dtype; for float32, against the float64 answer at the same query
    values). ``direct`` evaluates float32 queries in float32 (one float32
    GEMM against a cached float32 copy of S~); ``tree`` evaluates every query in float64 and
    casts the answer (its law of cosines subtracts large noisy sums, PAPER §5 item 18).
    Envelopes are always float64 and cover the answer actually computed in that dtype
    (``proofs_notes/19-fast-path.md``).
    """

    TOLERANCES = TOLERANCES
    ATOL_F64, RTOL_F64, ATOL_F32, RTOL_F32 = ATOL_F64, RTOL_F64, ATOL_F32, RTOL_F32

    __slots__ = ("mechanism", "release", "_plan", "n", "d", "d_v", "degree", "r", "R", "R_w",
                 "_R_w_up", "scale", "clip", "copies", "grid_size", "device", "_kernel_bound",
                 "noise", "law", "domain")

    def __init__(self, *, mechanism, release, plan, n, d, d_v, degree, R, R_w, scale, clip,
                 copies, grid_size, device, noise="float", law="tlap", domain="box") -> None:
        self.mechanism = mechanism
        self.domain = domain
        self.noise = noise
        self.law = law
        self.release = release
        self._plan = plan
        self.n = n
        self.d = d
        self.d_v = d_v
        self.degree = degree
        self.r = feature_dimension(d, degree)
        self.R = R
        self.R_w = R_w
        self._R_w_up = _public_float_up(R_w, "R_w")
        self.scale = scale
        self.clip = clip
        self.copies = copies
        self.grid_size = grid_size
        self.device = device
        self._kernel_bound = None

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, mechanism="direct", scale=None,
              generator=None, uniforms=None, clip=False, copies=1,
              grid_size=None, noise=None, law="tlap", domain="box",
              public_maps=None, composition="basic") -> "DPCrossAttention":
        """Init: validate, compute the sums, add the noise, keep only the release.

        Secure mode (the default) is exactly one :class:`dpxattn.fast.Accumulator` ``add`` and
        ``release``: the sums are exact integers on public lattices and the noise is calibrated
        to that rounded statistic's sensitivity, which does not grow with n
        (``proofs_notes/30-exact-accumulation.md``; accumulated on the CPU, then moved to K's
        device). Float mode computes them in float64, the idealised path that conforms with the
        reference from shared uniforms.

        ``K`` (n, d) in [0, R]^d and ``V`` (n, d_v) in [-R_w, R_w]: torch tensors (or arrays);
        out-of-bound entries raise :class:`dpxattn.errors.BoundError` naming the bound unless
        ``clip=True`` (then clipped; the plan records clip mode only); NaN/inf always raise.
        Randomness: ``generator=None`` (OS CSPRNG), a ``torch.Generator`` or
        ``numpy.random.Generator`` (seeded: tests/audits, labelled), or ``uniforms`` (exactly
        :meth:`noise_count` values in (0, 1), in the documented order: conformance). ``copies``
        (l) and ``grid_size`` (G, default n) are for ``tree`` only. The structure lives on K's
        device. ``noise``: None (default: "secure" when ``generator is None and uniforms is
        None``, else "float"), "secure" (hardened lattice release; with a seeded generator it is
        reproducible and labelled seeded; with ``uniforms`` it raises ParameterError) or "float"
        (float64 inversion, idealised numerics). ``law``: "tlap" (default) or "gaussian"
        (``direct`` only, either mode: secure is the exact discrete Gaussian lattice release,
        ``proofs_notes/25-discrete-gaussian.md``; the plan records the l2 sensitivity and sigma
        actually used). ``domain``: "box" (default, [0, R]^d, scale default 1/d) or "ball"
        (``direct`` only; keys and queries with l2 norm <= R, signed, decided exactly; with
        ``clip=True`` rows are projected radially onto the ball; scale default 1, logits in
        [-R^2, R^2]; an even degree, or an odd one with T_s(-scale R^2) > 0; every bound from
        ``proofs_notes/27-ball-domain.md``). ``public_maps``: None or a list of str describing
        the public per-record maps the caller applied to K (and queries) before build, e.g.
        ``fit_pca`` on a declared-public sample then ``to_ball``; recorded in the plan
        (``privacy.public_maps``, ``to_dict()``, ``str``) with the condition that they never saw
        the private set (``proofs_notes/28-public-maps.md``). ``composition``: "basic" (default)
        or "pld" (``tree`` with TLap only: the optimal composition of its components, about
        10-27x the per-level eps of basic composition; ``proofs_notes/05-composition.md``).
        Paper: DPTreeCrossAttention.Init (v2 §3, App. I); PAPER.md §3.5-3.7, §5 item 8.
        """
        maps = () if public_maps is None else check_public_maps(public_maps)
        mechanism, degree, copies, grid_size, clip = check_build_arguments(
            mechanism=mechanism, eps=eps, delta=delta, R=R, R_w=R_w, degree=degree, scale=scale,
            copies=copies, grid_size=grid_size, clip=clip, law=law, domain=domain,
            composition=composition)
        ball = domain == "ball"
        if ball:
            scale = resolve_ball_scale(scale)
            check_ball_degree(degree=degree, R=R, scale=scale)  # odd s with T_s(-a) <= 0 raises
        noise_given = noise
        noise = resolve_noise(noise, generator, uniforms)
        check_law_noise(law, noise, noise_given)
        secure = noise == "secure"
        gaussian = law == "gaussian"
        with torch.no_grad():
            K, V = check_keys_values(K, V, R=R, R_w=R_w, clip=clip, domain=domain)
            n, d = K.shape
            d_v = V.shape[1]
            check_build_memory(mechanism=mechanism, n=n, d=d, d_v=d_v, degree=degree,
                               copies=copies, grid_size=grid_size)
            device = K.device
            if secure:  # the exact route: one add and one release (proofs_notes/30)
                return _build_exact(K, V, mechanism=mechanism, eps=eps, delta=delta, R=R,
                                    R_w=R_w, degree=degree, scale=scale, clip=clip,
                                    domain=domain, copies=copies, grid_size=grid_size, law=law,
                                    generator=generator, public_maps=maps,
                                    composition=composition)
            count = _noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism,
                                 copies=copies, grid_size=grid_size)
            stream = noise_stream(count, noise=noise, generator=generator, uniforms=uniforms,
                                  device=device)
            bounds = (ball_feature_bounds(d, degree, R, scale=scale, device=device) if ball
                      else feature_bounds(d, degree, R, scale=scale, device=device))
            args = dict(eps=eps, delta=delta, R=R, R_w=R_w, degree=degree, scale=scale,
                        bounds=bounds, stream=stream)
            if mechanism == "direct":
                release, plan = _build_direct(K, V, law=law, domain=domain, **args)
            elif gaussian:
                release, plan = _build_tree_gaussian(K, V, copies=copies, grid_size=grid_size,
                                                     **args)
            else:
                release, plan = _build_tree(K, V, copies=copies, grid_size=grid_size,
                                            composition=composition, **args)
            stream.finish()
            del K, V
        # float mode only from here: secure mode returned through _build_exact above
        numerics = NUMERICS_FLOAT_GAUSSIAN if gaussian else NUMERICS_FLOAT
        notes = (ball_plan_note(clip),) if ball else ()
        plan = plan.with_labels(randomness=stream.label, clip=clip, numerics=numerics,
                                notes=notes)
        if maps:
            plan = plan.with_public_maps(maps)
        return cls(mechanism=mechanism, release=release, plan=plan, n=n, d=d, d_v=d_v,
                   degree=degree, R=R, R_w=R_w, scale=scale, clip=clip, copies=copies,
                   grid_size=(n if grid_size is None else grid_size) if mechanism == "tree"
                   else None, device=device, noise=noise, law=law, domain=domain)

    @staticmethod
    def noise_count(*, n: int, d: int, d_v: int, degree: int, mechanism: str = "direct",
                    copies: int = 1, grid_size: int | None = None, law: str = "tlap") -> int:
        """Uniforms :meth:`build` consumes: ``direct`` r (d_v + 1) (either law: one uniform per
        entry of S, same order); ``tree``
        2 l (d_v + 1) + (2N - 1) l (d_v + 1) 3 r, N = 2^ceil(log2 G), G = grid_size (default n)."""
        mechanism = check_mechanism(mechanism)
        check_law(law, mechanism)
        n = check_positive_int("n", n)
        d = check_positive_int("d", d)
        d_v = check_positive_int("d_v", d_v)
        degree = check_degree(degree)
        copies, grid_size = check_mechanism_options(mechanism, copies, grid_size)
        return _noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism, copies=copies,
                            grid_size=grid_size)

    # -- released data, public ---------------------------------------------------------------------

    @property
    def privacy(self):
        """The :class:`dpxattn.accounting.PrivacyPlan`: end-to-end (eps, delta), each
        component's share, randomness source, clip mode, numerics (printable; ``to_dict()``)."""
        return self._plan

    def released_tensors(self) -> dict[str, torch.Tensor]:
        """The noisy released tensors by name (float64): all a query reads."""
        if self.mechanism == "direct":
            return {"S": self.release.S}
        return {"payload": self.release.payload, "scalars": self.release.scalars}

    def save(self, path):
        """Write the structure to ``path`` (``.npz``): released numbers, public parameters and
        the privacy plan only, no pickle (``dpxattn.persist``). Returns the path written."""
        from dpxattn.persist import save_structure

        return save_structure(self, path, "fast")

    @classmethod
    def load(cls, path, device="cpu") -> "DPCrossAttention":
        """A structure written by :meth:`save`, its tensors on ``device``; answers are
        bit-identical. A foreign, altered or truncated file raises
        :class:`dpxattn.persist.StructureFileError`; nothing named by the file is executed."""
        from dpxattn.persist import load_structure

        return load_structure(path, "fast", device=torch.device(device))

    def to(self, device) -> "DPCrossAttention":
        """A copy of the structure on ``device`` (released numbers and constants only)."""
        device = torch.device(device)
        new = type(self).__new__(type(self))
        for slot in self.__slots__:
            setattr(new, slot, getattr(self, slot))
        new.release = self.release.to(device)
        new.device = device
        return new

    # -- queries: post-processing only -----------------------------------------------------------

    def _queries(self, Q, clip=None) -> torch.Tensor:
        return check_queries(Q, d=self.d, R=self.R, device=self.device,
                             clip=self.clip if clip is None else check_clip(clip),
                             domain=self.domain)

    def query(self, Q) -> torch.Tensor:
        """The private answers (m, d_v) in Q's dtype (float64 or float32).

        Differentiable with respect to Q (for adversarial searches); nothing flows into the
        released structure. Queries are clipped to [0, R] iff the structure was built with
        ``clip=True``. Paper: DPTreeCrossAttention.Query (v2 §3); PAPER.md §3.5.
        """
        Qv = self._queries(Q)
        return self.release.answer(Qv)[0]

    def _bound(self, Q, failure) -> torch.Tensor:
        Qv = self._queries(Q).detach()
        rel = self.release
        R_w = self._R_w_up
        with torch.no_grad():
            if self.mechanism == "direct":
                ans, D = rel.answer(Qv)
                D64 = D.to(torch.float64)
                terms = rel.envelope_terms(Qv)
                half = None if failure is None else failure / 2
                E = rel.noise_bounds(terms, half)
                F_v = rel.fp_allowance(terms, R_w, Qv.dtype, self.r)
                F_d = rel.fp_allowance(terms, 1.0, Qv.dtype, self.r, denominator=True)
                num, den = (E + F_v).unsqueeze(1), (E + F_d).unsqueeze(1)
                if failure is None:
                    bound = ratio_bound(num, den, R_w, D64.unsqueeze(1)).expand(-1, self.d_v)
                else:
                    bound = hp_ratio_bound(num, den, R_w, D64.unsqueeze(1),
                                           ans.to(torch.float64))
            else:
                per_copy, D64 = rel.copy_answers(Qv)  # float64, (m, l, d_v), (m, l)
                ans = median_over_copies(per_copy).to(Qv.dtype)
                q = None if failure is None else median_copy_failure(self.copies, failure) / 2
                col = rel.column_bounds(Qv, q)  # (m, d_v + 1)
                num, den = col[:, None, :-1], col[:, None, -1:]
                if failure is None:
                    b = ratio_bound(num, den, R_w, D64.unsqueeze(-1))
                else:
                    b = hp_ratio_bound(num, den, R_w, D64.unsqueeze(-1), per_copy)
                bound = b.amax(dim=1)
            return finalize(bound, ans, Qv.dtype)

    def error_bound(self, Q) -> torch.Tensor:
        """Sure envelope (m, d_v), float64: |query(Q) - taylor_attention(Q, K, V)| <= it, for
        every noise draw and every query (adaptive ones included), including the floating-point
        allowance of the computed answer. Paper: main theorem's additive error, deterministic
        form (v2 §3, App. H); PAPER.md §4.1, §5 item 10; DESIGN §4. ``law="gaussian"``: raises
        :class:`dpxattn.errors.NoSureEnvelopeError` (unbounded noise; use :meth:`hp_error_bound`)."""
        if self.law == "gaussian":
            raise no_sure_envelope("error_bound", self.law)
        return self._bound(Q, None)

    def hp_error_bound(self, Q, failure_prob) -> torch.Tensor:
        """High-probability envelope (m, d_v), float64: for a query fixed before the noise,
        each entry is exceeded with probability <= failure_prob (numerator and denominator at
        p/2 each; copies: the median's per-copy probability from the exact binomial tail;
        min(sure, Hoeffding, Bernstein, Chernoff with the exact TLap MGF), then the ratio step
        min((t_N + R_w t_D)/D~, (t_N + |a| t_D)/(D~ - t_D)) with a the copy's answer).
        ``law="gaussian"``: each noise is N(0, sigma^2 ||P(q)||_2^2) exactly, bounded at p/2 by
        its two-sided normal quantile, then the same ratio step and float allowance; secure mode
        adds 1.5 g ||P(q)||_1 (the discrete Gaussian's sure coupling to the normal draw, g, and
        the rounding to the lattice, g/2: ``proofs_notes/25-discrete-gaussian.md``).
        Paper: "with probability 1 - p_f" (ICLR Thm 1.2; v2
        §3); PAPER.md §4.1, §2.6; DESIGN §9(c)."""
        return self._bound(Q, check_failure_prob(failure_prob))

    def kernel_error_bound(self) -> float:
        """2 eps_s R_w / (1 - eps_s) with eps_s certified on [0, R]^d (from the reference's
        ``kernel.certified_eps_s`` and ``theorem_bounds.kernel_additive_error``, rounded up):
        surely |taylor_attention - attention| <= this, entrywise, for every query in the box;
        ``inf`` when eps_s >= 1. A public constant. Paper: main theorem's relative error
        2 eps_s/(1 - eps_s) read for signed values (ICLR Thm 1.2; v2 §3);
        PAPER.md §4.1, §5 item 12."""
        if self._kernel_bound is None:
            from dpxattn.reference.kernel import certified_eps_s, certified_eps_s_logits
            from dpxattn.reference.theorem_bounds import kernel_additive_error

            if self.domain == "ball":  # logits in [-scale R^2, scale R^2] (proofs_notes/27)
                from dpxattn.reference.ball import logit_bound

                eps_s = certified_eps_s_logits(logit_bound(self.R, self.scale), self.degree)
            else:
                eps_s = certified_eps_s(self.R, self.degree, self.d, scale=self.scale)
            if not eps_s < 1:
                self._kernel_bound = float("inf")
            else:
                self._kernel_bound = round_up(kernel_additive_error(eps_s, self.R_w),
                                              "kernel error bound")
        return self._kernel_bound

    def attention_error_bound(self, Q) -> torch.Tensor:
        """Sure envelope (m, d_v) against EXACT softmax attention:
        |query(Q) - attention(Q, K, V)| <= error_bound(Q) + kernel_error_bound() (float64).
        Paper: main theorem, additive plus relative error (v2 §3); PAPER.md
        §4.1. ``law="gaussian"``: raises :class:`dpxattn.errors.NoSureEnvelopeError`."""
        if self.law == "gaussian":
            raise no_sure_envelope("attention_error_bound", self.law)
        return self.error_bound(Q) + self.kernel_error_bound()

    def __repr__(self) -> str:
        eps, delta = self._plan.eps, self._plan.delta
        extra = f", copies={self.copies}, grid={self.grid_size}" if self.mechanism == "tree" else ""
        if self.law != "tlap":
            extra += f", law={self.law!r}"
        return (f"DPCrossAttention(mechanism={self.mechanism!r}, n={self.n}, d={self.d}, "
                f"d_v={self.d_v}, degree={self.degree}, r={self.r}{extra}, "
                f"eps={float(eps):g}, delta={float(delta):g}, device={self.device})")


#: float_up of a public bound, memoised by the bound's type and value (R_w, once per distinct R_w)
_float_up_memo = lru_cache(maxsize=256, typed=True)(float_up)


def _public_float_up(value, name: str) -> float:
    """``float_up(value, name)`` of a public parameter (memoised when :func:`memo_safe`)."""
    return _float_up_memo(value, name) if memo_safe(value) else float_up(value, name)


def _noise_count(*, n: int, d: int, d_v: int, degree: int, mechanism: str, copies: int,
                 grid_size: int | None) -> int:
    """:meth:`DPCrossAttention.noise_count` of arguments already validated (by it, or by
    :meth:`DPCrossAttention.build`, whose n, d, d_v come from validated shapes)."""
    r = feature_dimension(d, degree)
    if mechanism == "direct":
        return direct_noise_count(r, d_v)
    return tree_noise_count(r=r, d_v=d_v, copies=copies,
                            grid=n if grid_size is None else grid_size)


def _secure_note(release) -> str:
    """One line for the privacy plan: the lattice laws of a secure release (every one is an
    accumulator's: ``build`` in secure mode is one add and release)."""
    laws = ((release.law,) if isinstance(release, DirectRelease)
            else (release.scalar_law, release.node_law))
    if isinstance(laws[0], SecureGaussianLaw):
        return _secure_gaussian_note_text(laws[0].parameters)
    return _secure_note_text(tuple(p for law in laws for p in law.constants))


#: what a secure release's sensitivity is of
_EXACTLY_ACCUMULATED = ("the exactly accumulated {what} (integer sums on public lattices, "
                        "rounding charged once, proofs_notes/30-exact-accumulation.md)")


@lru_cache(maxsize=256)
def _secure_gaussian_note_text(p) -> str:
    """:func:`_secure_note` of one discrete Gaussian lattice release (``GaussianLatticeParameters``
    ``p``, frozen and hashable), memoised."""
    return (f"hardened release: 1 discrete Gaussian lattice law, g = 2^{p.exponent}, "
            f"sigma = g sqrt(t (t - 1)), t = {p.scale_units}; l2 sensitivity of "
            + _EXACTLY_ACCUMULATED.format(what="release") + "; sigma / continuous analytic "
            "sigma = "
            f"{p.sigma_ratio:.9g}; delta achieved / delta share <= "
            f"{p.delta_achieved / float(p.delta):.9g} (certified, proofs_notes/25-discrete-gaussian.md)")


@lru_cache(maxsize=256)
def _secure_note_text(params: tuple) -> str:
    """:func:`_secure_note` of the lattice parameters ``params`` (a tuple of frozen, hashable
    public records), memoised."""
    ks = [p.exponent for p in params]
    infl = max(float(p.sensitivity_units * p.granularity / p.sensitivity) for p in params)
    eps_ratio = min(float(p.eps_used / p.eps) for p in params)
    delta_ratio = max(p.delta_achieved / float(p.delta) for p in params)
    return (f"hardened release: {len(params)} distinct lattice laws, g = 2^{min(ks)}..2^{max(ks)}; "
            "sensitivities are of " + _EXACTLY_ACCUMULATED.format(what="sums")
            + "; lattice sensitivity / that <= "
            f"{infl:.9g}; eps used / eps share >= {eps_ratio:.9g}; delta achieved / delta share "
            f"<= {delta_ratio:.9g}")


def _norm_bound(d, degree, R, scale) -> float:
    """T_s(t_max) (the bound on ||P(x)||^2), from the reference, rounded up."""
    from dpxattn.reference import kernel

    return round_up(kernel.feature_norm_sq_bound(d, degree, R, scale=scale), "T_s(t_max)")


def _build_exact(K, V, *, mechanism, eps, delta, R, R_w, degree, scale, clip, domain, copies,
                 grid_size, law, generator, public_maps, composition) -> "DPCrossAttention":
    """``build`` in secure mode: the validated (K, V) through one
    :class:`dpxattn.fast.Accumulator` ``add`` and its ``release`` (exact integer sums on public
    lattices, noise calibrated to the rounded statistic's sensitivity, which does not grow with
    n; ``proofs_notes/30-exact-accumulation.md``). The sums are accumulated on the CPU; the
    structure is then moved to K's device."""
    from dpxattn.fast.accumulator import Accumulator

    n, d = K.shape
    device = K.device
    grid = (n if grid_size is None else grid_size) if mechanism == "tree" else None
    acc = Accumulator(mechanism=mechanism, d=d, d_v=V.shape[1], degree=degree, R=R, R_w=R_w,
                      scale=scale, clip=clip, domain=domain, grid_size=grid)
    acc._add(K.cpu(), V.cpu(), validate=False)  # validated (and clipped) by build
    del K, V
    att = acc.release(eps=eps, delta=delta, law=law, generator=generator, noise="secure",
                      public_maps=public_maps or None, copies=copies, composition=composition)
    return att if device == att.device else att.to(device)


def _build_direct(K, V, *, eps, delta, R, R_w, degree, scale, bounds, stream, law: str,
                  domain: str = "box"):
    """The float-mode ``direct`` release of a validated (K, V) (float64 sums, as the reference's
    real-arithmetic statistic; secure mode goes through :func:`_build_exact`) and its plan, which
    records the numbers the release used (sensitivity and TLap scale or sigma).
    ``domain="ball"``: every constant from :mod:`dpxattn.fast.ball`
    (``proofs_notes/27-ball-domain.md``)."""
    n, d = K.shape
    d_v = V.shape[1]
    ball = domain == "ball"
    plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, law=law)
    sens = (ball_direct_sensitivity if ball else direct_sensitivity)(
        d=d, degree=degree, R=R, R_w=R_w, d_v=d_v, scale=scale)
    eps_s, delta_s = plan.share("S")
    gaussian = law == "gaussian"
    gauss = (ball_gaussian_constants if ball else direct_gaussian_constants)(
        d=d, degree=degree, R=R, R_w=R_w, d_v=d_v, eps=eps_s, delta=delta_s,
        scale=scale) if gaussian else None
    floor = ball_denominator_floor(n=n, degree=degree, R=R, scale=scale) if ball else None
    release = DirectRelease.build(K, V, degree=degree, scale=scale, sensitivity=sens, eps=eps_s,
                                  delta=delta_s, bounds=bounds, stream=stream, secure=None,
                                  gaussian=gauss, floor=floor)
    used = gauss if gaussian else (release.law.constants[0].sensitivity,
                                   float(release.law.b.max()))
    plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, law=law,
                       sensitivity=used[0], noise_scale=used[1], domain=domain)
    return release, plan


def _build_tree(K, V, *, eps, delta, R, R_w, degree, scale, bounds, stream, copies: int,
                grid_size, composition: str = "basic"):
    """The float-mode ``tree`` release of a validated (K, V) and its plan (secure mode goes
    through :func:`_build_exact`)."""
    n, d = K.shape
    d_v = V.shape[1]
    grid = n if grid_size is None else grid_size
    plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                     grid_size=grid_size, composition=composition)
    scalar_sens, node_sens = tree_sensitivities(d=d, degree=degree, R=R, R_w=R_w, d_v=d_v,
                                                scale=scale)
    release = TreeRelease.build(
        K, V, degree=degree, scale=scale, grid=grid, copies=copies, bounds=bounds,
        norm_bound=_norm_bound(d, degree, R, scale), R_w=_public_float_up(R_w, "R_w"),
        scalar_sens=scalar_sens, node_sens=node_sens,
        shares={key: plan.share(key) for key in ("c0", "c1", "tree_level")},
        stream=stream, secure=None)
    sens, scale = tlap_plan_records(scalar_sens, node_sens, release)
    plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                     grid_size=grid_size, composition=composition, sensitivity=sens,
                     noise_scale=scale)
    return release, plan


def _build_tree_gaussian(K, V, *, eps, delta, R, R_w, degree, scale, bounds, stream,
                         copies: int, grid_size):
    """The float-mode Gaussian ``tree`` release of a validated (K, V) and its plan (one Gaussian
    component, recording the l2 sensitivity and sigma used; ``proofs_notes/26-tree-gaussian.md``):
    lambda_g sigma Phi^-1(u) per number of group g (the reference's group multipliers,
    ``dpxattn.reference.tree_noise_weights``). Secure mode goes through :func:`_build_exact`."""
    from dpxattn.reference.tree_noise_weights import tree_noise_weights

    n, d = K.shape
    d_v = V.shape[1]
    grid = n if grid_size is None else grid_size
    plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                     grid_size=grid_size, law="gaussian")
    eps_g, delta_g = plan.share("tree")
    sens, sigma = tree_gaussian_constants(d=d, degree=degree, R=R, R_w=R_w, d_v=d_v, eps=eps_g,
                                          delta=delta_g, grid=grid, copies=copies, scale=scale)
    release = TreeRelease.build(
        K, V, degree=degree, scale=scale, grid=grid, copies=copies, bounds=bounds,
        norm_bound=_norm_bound(d, degree, R, scale), R_w=_public_float_up(R_w, "R_w"),
        scalar_sens=None, node_sens=None, shares=None, stream=stream, secure=None,
        gaussian=(sigma, sens),
        noise_weights=tree_noise_weights(d, degree, R, grid_size=grid, scale=scale))
    plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                     grid_size=grid_size, law="gaussian", sensitivity=sens, noise_scale=sigma)
    return release, plan
