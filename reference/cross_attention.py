"""DPCrossAttention (exact reference): build once from private (K, V), answer any queries.

Paper: the cross-attention structure, its Init/Query, the median of copies and the main theorem
(v2 §3 and App. H, I; ICLR Theorem 1.2); spec PAPER.md §3.5-3.7, §4.1, §5
items 5-10; DESIGN §2 and §4 (the public contract). Proof notes:
``proofs_notes/13-cross-attention-accounting.md`` (end-to-end accounting vs the paper's),
``proofs_notes/14-adaptive-queries.md``, ``proofs_notes/15-direct-mechanism.md``,
``proofs_notes/12-dptree-softmax.md``, ``proofs_notes/16-certified-envelope.md``.

Two mechanisms (``proofs_notes/01-conventions.md`` defines both exactly):

* ``direct``: the noisy sufficient statistic S~ = P(K)^T [V, 1] + Z
  (:class:`dpxattn.reference.direct.DirectRelease`);
* ``tree``: the paper's structure in its sound reading: for every copy c = 0..l-1 and every
  column k = 0..d_v (k = d_v is the denominator, weights 1) one
  :class:`dpxattn.reference.dptree_softmax.DPTreeSoftmax` (privatized c0, c1 and, per feature
  coordinate, three moment DPTrees over a public grid); per copy the answer is
  numerator_k / max(denominator, n); the structure's answer is the entrywise median over copies
  (:class:`dpxattn.reference.dptree_softmax.TreeRelease`).

After :meth:`DPCrossAttention.build` nothing private is kept: not K, V, their features, nor any
exact sum; only noisy released numbers and public parameters. Queries, error envelopes and the
privacy plan are post-processing of that.

Shapes: K (n x d) in [0, R]; V (n x d_v) in [-R_w, R_w]; Q (m x d) in [0, R]; answers, sure and
high-probability envelopes (m x d_v), as lists of rows of mpf.
"""

from __future__ import annotations

from fractions import Fraction

from dpxattn.accounting import TREE_MOMENTS, feature_dimension, plan_direct, plan_tree, tree_levels
from dpxattn.errors import ShapeError, no_sure_envelope
from dpxattn.memory import check_build_memory
from dpxattn.params import (check_build_arguments, check_degree, check_law, check_mechanism,
                            check_mechanism_options, check_positive_int)
from dpxattn.reference._mp import (DEFAULT_PREC, check_entries, context, resolve_prec,
                                   to_matrix)
from dpxattn.reference.direct import DirectRelease, direct_noise_count
from dpxattn.reference.dptree import draw_uniforms, numerics_label
from dpxattn.reference.dptree_softmax import TreeRelease, tree_noise_count
from dpxattn.reference.envelope import (certified_envelope, check_failure_prob, hp_envelope,
                                        rounding_allowance)
from dpxattn.reference import ball
from dpxattn.reference.kernel import certified_eps_s, certified_eps_s_logits
from dpxattn.reference.theorem_bounds import kernel_additive_error

__all__ = ["DPCrossAttention", "accounting_comparison"]



class DPCrossAttention:
    """A built private cross-attention structure (exact reference, mpmath at ``prec`` bits).

    The contract of DESIGN §4: :meth:`build`, :meth:`query`, :meth:`error_bound`,
    :meth:`hp_error_bound`, :attr:`privacy`, :meth:`noise_count`. Attributes (all public):
    ``mechanism``, ``release`` (the noisy structure), ``n``, ``d``, ``d_v``, ``degree``, ``R``,
    ``R_w``, ``scale`` (None = 1/d), ``clip``, ``copies``, ``grid_size`` (tree: the grid G used),
    ``prec``, ``law`` (the noise law: "tlap" or "gaussian").
    Paper: DPTreeCrossAttention (v2 §3); spec PAPER.md §3.5-3.7.
    """

    __slots__ = ("mechanism", "release", "_plan", "n", "d", "d_v", "degree", "R", "R_w",
                 "scale", "clip", "copies", "grid_size", "prec", "law", "domain")

    def __init__(self, *, mechanism, release, plan, n, d, d_v, degree, R, R_w, scale, clip,
                 copies, grid_size, prec, law="tlap", domain="box"):
        self.mechanism = mechanism
        self.law = law
        self.domain = domain
        self.release = release
        self._plan = plan
        self.n = n
        self.d = d
        self.d_v = d_v
        self.degree = degree
        self.R = R
        self.R_w = R_w
        self.scale = scale
        self.clip = clip
        self.copies = copies
        self.grid_size = grid_size
        self.prec = prec

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def build(cls, K, V, *, eps, delta, R, R_w, degree, mechanism="direct", scale=None,
              generator=None, uniforms=None, clip=False, copies=1, grid_size=None,
              prec=DEFAULT_PREC, law="tlap", domain="box",
              composition="basic") -> "DPCrossAttention":
        """Init: validate, draw the noise, release the noisy structure; keep nothing private.

        ``K`` (n x d) in [0, R]^d, ``V`` (n x d_v) in [-R_w, R_w]: numpy arrays or nested
        sequences of float, int, Fraction or mpf (converted exactly). Out-of-bound entries raise
        :class:`dpxattn.errors.BoundError` naming the bound unless ``clip=True`` (then K is
        clipped to [0, R] and V to [-R_w, R_w]; the plan records clip mode, never whether
        anything was clipped). NaN/inf always raise. Randomness: ``generator`` (a
        ``numpy.random.Generator``: reproducible, labelled), ``uniforms`` (exactly
        :meth:`noise_count` of them, in the documented order: conformance), or neither (the OS
        CSPRNG). ``copies`` (l) and ``grid_size`` (G, default n) are for ``tree`` only.
        ``law``: "tlap" (default; truncated Laplace on the l1 sensitivity, sure envelopes) or
        "gaussian" (the analytic Gaussian mechanism on the l2 sensitivity of the whole release,
        one component: S for ``direct``, every c0, c1 and node of every copy for ``tree``,
        ``proofs_notes/26-tree-gaussian.md``; high-probability envelopes only). The reference has one
        numerics for every randomness source and both laws: inversion of the exact CDF at
        ``prec`` bits, idealised real arithmetic (it has no hardened mode to refuse).
        The whole released structure is (eps, delta)-DP under replace-one-row adjacency
        (:attr:`privacy`), in idealised real arithmetic.
        ``domain``: "box" (default; K and Q in [0, R]^d, scale default 1/d) or "ball"
        (``direct`` only: every key and query row has l2 norm <= R, signed entries, decided
        exactly; ``clip=True`` projects rows radially onto the ball; scale default 1 (logits
        in [-R^2, R^2]); an even degree, or an odd one with T_s > 0 on [-scale R^2, scale R^2];
        ``proofs_notes/27-ball-domain.md``).
        ``composition``: "basic" (default) or "pld" (``tree`` with TLap only: the optimal
        composition of its components; ``proofs_notes/05-composition.md``).
        Paper: DPTreeCrossAttention.Init (v2 §3, App. I); spec PAPER.md §3.5-3.7.
        """
        mechanism, degree, copies, grid_size, clip = check_build_arguments(
            mechanism=mechanism, eps=eps, delta=delta, R=R, R_w=R_w, degree=degree, scale=scale,
            copies=copies, grid_size=grid_size, clip=clip, law=law, domain=domain,
            composition=composition)
        p = resolve_prec(prec)
        ctx = context(p)
        if domain == "ball":
            scale = ball.ball_scale(scale) if scale is None else scale
            ball.ball_kernel_floor(degree, R, scale=scale, prec=p)  # refuses odd s with T_s(-a) <= 0

        Km = to_matrix(K, ctx, "K")
        Vm = to_matrix(V, ctx, "V")
        if len(Vm) != len(Km):
            raise ShapeError("V", f"must have as many rows as K (n = {len(Km)})",
                             f"{len(Vm)} rows")
        if domain == "ball":
            Km = ball.check_ball_rows(Km, "K", R, clip, private=True)
        else:
            Km = check_entries(Km, "K", 0, R, "[0, R]", clip)
        Vm = check_entries(Vm, "V", -R_w, R_w, "[-R_w, R_w]", clip)
        n, d, d_v = len(Km), len(Km[0]), len(Vm[0])
        check_build_memory(mechanism=mechanism, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                           grid_size=grid_size, implementation="reference")

        if mechanism == "tree":  # direct's plan records the release's numbers: made below
            plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree,
                             copies=copies, grid_size=grid_size, composition=composition, law=law)
        count = cls.noise_count(n=n, d=d, d_v=d_v, degree=degree, mechanism=mechanism,
                                copies=copies, grid_size=grid_size)
        u, label = draw_uniforms(count, uniforms=uniforms, generator=generator)

        if mechanism == "direct":
            release = DirectRelease.build(Km, Vm, eps=eps, delta=delta, R=R, R_w=R_w,
                                          degree=degree, scale=scale, uniforms=u, prec=p,
                                          law=law, domain=domain)
            # the plan records the numbers the release used (sensitivity, b or sigma)
            plan = plan_direct(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, law=law,
                               sensitivity=release.sensitivity,
                               noise_scale=(release.sigma if law == "gaussian"
                                            else release.laplace_scale), domain=domain)
        else:
            release = TreeRelease.build(Km, Vm, plan=plan, R=R, R_w=R_w, degree=degree,
                                        scale=scale, copies=copies, grid_size=grid_size,
                                        uniforms=u, prec=p, law=law)
            if law == "gaussian":  # the plan records the l2 sensitivity and sigma the build used
                plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree,
                                 copies=copies, grid_size=grid_size, law=law,
                                 sensitivity=release.sensitivity, noise_scale=release.sigma)
        plan = plan.with_labels(randomness=label, clip=clip, numerics=numerics_label(p),
                                notes=(ball.ball_plan_note(clip),) if domain == "ball" else ())
        return cls(mechanism=mechanism, release=release, plan=plan, n=n, d=d, d_v=d_v,
                   degree=degree, R=R, R_w=R_w, scale=scale, clip=clip, copies=copies,
                   grid_size=(n if grid_size is None else grid_size)
                   if mechanism == "tree" else None, prec=p, law=law, domain=domain)

    @staticmethod
    def noise_count(*, n: int, d: int, d_v: int, degree: int, mechanism: str, copies: int = 1,
                    grid_size: int | None = None, law: str = "tlap") -> int:
        """The number of uniforms :meth:`build` consumes (each one noise draw).

        ``direct``: r (d_v + 1), for either law (one uniform per entry of S, same order).
        ``tree``: 2 l (d_v + 1) + (2N - 1) l (d_v + 1) 3 r with
        N = 2^ceil(log2 G), G = grid_size (default n) (``proofs_notes/01-conventions.md``).
        Paper: not a paper quantity (DESIGN §4).
        """
        mechanism = check_mechanism(mechanism)
        check_law(law, mechanism)
        n = check_positive_int("n", n)
        d = check_positive_int("d", d)
        d_v = check_positive_int("d_v", d_v)
        degree = check_degree(degree)
        copies, grid_size = check_mechanism_options(mechanism, copies, grid_size)
        if mechanism == "direct":
            return direct_noise_count(d=d, d_v=d_v, degree=degree)
        return tree_noise_count(n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                                grid_size=grid_size)

    # -- queries: post-processing only -----------------------------------------------------------

    @property
    def privacy(self):
        """The :class:`dpxattn.accounting.PrivacyPlan`: end-to-end (eps, delta), every
        component's share, the randomness source and clip mode (printable, ``to_dict()``).
        Paper: end-to-end accounting (spec PAPER.md §3.7; ``proofs_notes/13-cross-attention-accounting.md``)."""
        return self._plan

    def _queries(self, Q) -> list:
        ctx = context(self.prec)
        Qm = to_matrix(Q, ctx, "Q")
        if len(Qm[0]) != self.d:
            raise ShapeError("Q", f"must have d = {self.d} columns (the keys' width)",
                             f"{len(Qm[0])} columns")
        if self.domain == "ball":
            Qm = ball.check_ball_rows(Qm, "Q", self.R, self.clip)
        else:
            Qm = check_entries(Qm, "Q", 0, self.R, "[0, R]", self.clip)
        return [self.release.query_features(q) for q in Qm]

    def query(self, Q) -> list:
        """The private answers, one row per query token: m rows of d_v mpf.

        Deterministic given the released structure (repeated queries are identical).
        Paper: DPTreeCrossAttention.Query (v2 §3); spec PAPER.md §3.5, §3.6.
        """
        return [self.release.answer(u) for u in self._queries(Q)]

    def error_bound(self, Q) -> list:
        """Sure envelope (m x d_v): |query(Q) - taylor_attention(Q, K, V)| <= error_bound(Q),
        entrywise, for every noise draw and every query however chosen (no probability).

        Paper: main theorem's additive error, here deterministic (v2 §3, App. H); spec PAPER.md §4.1, §4.3 row "Adaptive", §5 item 10; DESIGN §4.
        Proof note: ``proofs_notes/16-certified-envelope.md``. ``law="gaussian"``: raises
        :class:`dpxattn.errors.NoSureEnvelopeError` (unbounded noise; use :meth:`hp_error_bound`).
        """
        if self.law == "gaussian":
            raise no_sure_envelope("error_bound", self.law)
        return [certified_envelope(self.release.error_terms(u), self.R_w, prec=self.prec)
                for u in self._queries(Q)]

    def hp_error_bound(self, Q, failure_prob) -> list:
        """High-probability envelope (m x d_v): for each entry and each query row fixed before
        the noise was drawn, P[|query - taylor_attention| > bound] <= failure_prob (the smallest
        of Hoeffding, Bernstein and a Chernoff bound with the exact TLap MGF, on the known linear
        combination of independent bounded draws; median copies through the exact binomial
        tail). For all m d_v entries at once pass
        failure_prob / (m d_v). Never larger than :meth:`error_bound`. ``law="gaussian"``: the
        numerator's and the denominator's noises are exactly N(0, sigma^2 ||P(q)||_2^2), each
        bounded at failure p/2 by its two-sided normal quantile, then the same ratio step.
        Paper: "with probability 1 - p_f" (ICLR Theorem 1.2; v2 §3); spec
        PAPER.md §4.1, §2.6; DESIGN §9(c). Proof note: ``proofs_notes/16-certified-envelope.md``.
        """
        check_failure_prob(failure_prob, prec=self.prec)
        return [hp_envelope(self.release.error_terms(u), self.R_w, failure_prob, prec=self.prec)
                for u in self._queries(Q)]

    def kernel_error_bound(self):
        """2 eps_s R_w / (1 - eps_s), eps_s certified for [0, R]^d (ball: for logits in
        [-scale R^2, scale R^2]): surely
        |taylor_attention - attention| <= this, entrywise, for every query in the box.

        A public constant (no private data): the additive form of the kernel's relative error,
        valid for signed values. Paper: main theorem, relative error 2 eps_s/(1 - eps_s) (ICLR
        Thm 1.2; v2 §3); spec PAPER.md §4.1, §5 item 12. Proof note:
        ``proofs_notes/18-kernel-error-theorem.md``.
        """
        if self.domain == "ball":  # logits in [-a, a], a = scale R^2 (proofs_notes/27)
            e = certified_eps_s_logits(ball.logit_bound(self.R, self.scale), self.degree,
                                       prec=self.prec)
        else:
            e = certified_eps_s(self.R, self.degree, self.d, scale=self.scale, prec=self.prec)
        b = kernel_additive_error(e, self.R_w, prec=self.prec)
        return b + rounding_allowance(b, self.R_w, prec=self.prec)

    def attention_error_bound(self, Q) -> list:
        """Sure envelope (m x d_v) against EXACT softmax attention:
        |query(Q) - attention(Q, K, V)| <= error_bound(Q) + kernel_error_bound().

        Paper: main theorem, additive plus relative error (v2 §3); spec
        PAPER.md §4.1; DESIGN §1 item 3. Proof note: ``proofs_notes/16-certified-envelope.md``.
        ``law="gaussian"``: raises :class:`dpxattn.errors.NoSureEnvelopeError`.
        """
        if self.law == "gaussian":
            raise no_sure_envelope("attention_error_bound", self.law)
        k = self.kernel_error_bound()
        return [[e + k for e in row] for row in self.error_bound(Q)]

    def save(self, path):
        """Write the structure to ``path`` (``.npz``; every mpf exactly, with its precision):
        released numbers, public parameters and the privacy plan only, no pickle
        (``dpxattn.persist``). Returns the path written."""
        from dpxattn.persist import save_structure

        return save_structure(self, path, "reference")

    @classmethod
    def load(cls, path) -> "DPCrossAttention":
        """A structure written by :meth:`save`; answers are identical. A foreign, altered or
        truncated file raises :class:`dpxattn.persist.StructureFileError`."""
        from dpxattn.persist import load_structure

        return load_structure(path, "reference")

    def __repr__(self) -> str:
        eps, delta = self._plan.eps, self._plan.delta
        return (f"RefDPCrossAttention(mechanism={self.mechanism!r}, n={self.n}, d={self.d}, "
                f"d_v={self.d_v}, degree={self.degree}, copies={self.copies}, "
                f"eps={float(eps):.6g}, delta={float(delta):.6g}, prec={self.prec}"
                + (f", law={self.law!r})" if self.law != "tlap" else ")"))


def accounting_comparison(*, eps, delta, n: int, d: int, d_v: int, degree: int,
                          copies: int = 1, grid_size: int | None = None) -> dict:
    """The ``tree`` mechanism's per-node budget, ours (end to end) beside the paper's.

    Ours (``plan_tree``): J = l (d_v + 1)(3 r + 2) components, each DPTree level gets
    eps/(J L). The paper's (PAPER §3.7, reconstructed [R]): every value column's structure gets
    the full (eps, delta), split over r coordinates and 3 moment trees, each over L levels:
    eps/(3 r L) per level; c0, c1 and the denominator without noise; no split over copies.
    ``noise_ratio`` = J/(3 r) is how much larger our per-node noise scale is; the paper's noise
    levels, honestly composed over every released part (c0, c1 and the denominator noised like
    a column), would certify only ``paper_noise_end_to_end_eps`` = noise_ratio * eps. As
    published the paper's release is not DP at all (exact c0, c1, denominator). Exact Fractions.
    Paper: v2 §3 and App. D-I; spec PAPER.md §3.7, §5 items 5, 6, 9.
    Proof note: ``proofs_notes/13-cross-attention-accounting.md``.
    """
    plan = plan_tree(eps=eps, delta=delta, n=n, d=d, d_v=d_v, degree=degree, copies=copies,
                     grid_size=grid_size)
    r = feature_dimension(d, degree)
    L = tree_levels(n if grid_size is None else grid_size)
    J = plan.sizes["J"]
    ours = plan.share("tree_level")
    e, dl = Fraction(eps), Fraction(delta)
    paper = (e / (TREE_MOMENTS * r * L), dl / (TREE_MOMENTS * r * L))
    ratio = Fraction(J, TREE_MOMENTS * r)
    return {
        "r": r, "levels": L, "components": J, "copies": copies, "columns": d_v + 1,
        "ours_level_eps": ours[0], "ours_level_delta": ours[1],
        "paper_level_eps": paper[0], "paper_level_delta": paper[1],
        "noise_ratio": ratio,
        "paper_noise_end_to_end_eps": ratio * e,
        "paper_noise_end_to_end_delta": ratio * dl,
        "paper_release_is_dp": False,
        "paper_claim": "(eps, delta) per output entry (one value column), denominator and c0, c1 "
                       "exact, copies not counted",
        "ours_claim": f"(eps, delta) = ({e}, {dl}) end to end for the whole released structure",
    }
