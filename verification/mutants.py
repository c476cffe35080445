"""The real mechanisms and their deliberately WRONG variants, sampled through the real release code.

Test fixtures of the privacy audit (harness check 4; DESIGN §6 "keep these wrong variants as
test fixtures"; ``proofs_notes/21-empirical-audit.md``). A mutant is never a usable mechanism:
nothing here is exported by ``dpxattn.fast`` or ``dpxattn.reference``, every mutant is labelled
``mutant=True``, and the only outputs are batches of released numbers for the auditor.

Variants (:data:`VARIANTS`):

* ``direct``, ``tree``: the real mechanisms (``dpxattn.fast``), correct;
* ``direct-half-noise``, ``tree-half-noise``: noise scale x0.5 at the same claimed eps (the
  release code parametrised with half the sensitivity: TLap(Delta/2, eps, delta) is exactly
  half of TLap(Delta, eps, delta) in law) - an under-noised mechanism (DESIGN §6 power);
* ``direct-exact-denominator``, ``tree-exact-denominator``: the denominator released without
  noise (the ICLR version: D "is only a normalization factor"; PAPER §3.5, §5 item 5);
* ``tree-exact-c0-c1``: the scalars c0, c1 released exactly (the ICLR Algorithm 3's ``P_wx``,
  ``s_wx`` "without adding noise"; PAPER §3.4, §5 item 6);
* ``sorted-keys-tree``: the literal DPTreeDistance (PAPER §3.2 listing): trees over the private
  points *sorted by key*, with the sorted keys stored for the binary search (§5 item 7);
* ``sorted-positions-tree``: the same trees without the stored keys: the leaf index is a
  private rank, so one changed key shifts many leaves and the per-level sensitivity 2 R_w R_x^k
  the listing assumes is wrong (§5 item 7, second half).

How the real code is reused (never re-implemented): the exact sums are computed by the real
builders fed the median uniform 1/2 (``ppf(1/2) = 0`` exactly, so the "noisy" release is the
exact one); noise is added by ``dpxattn.fast.release.release_`` with the real ``noise_law``,
the real sensitivities (``dpxattn.fast.sensitivities``, from ``dpxattn.reference.sensitivity``)
and the real plan shares (``dpxattn.accounting``). A noiseless part of a mutant is made by
feeding the median uniform to exactly those draws, located with the documented uniform order
(``proofs_notes/01-conventions.md``; spot-checked against ``dpxattn.reference``'s index
functions). Batches: ``direct`` stacks independent copies of S along the rows ``release_``
walks, so sample i consumes uniforms ``[i c, (i + 1) c)`` exactly as a build would; ``tree``
uses the tree release's own copy axis (independent copies, each with the copies = 1 law);
:func:`verify_batches_match_builds` checks both against ``DPCrossAttention.build``
bit for bit. Answers are the real query code: ``DirectRelease.answer`` under ``torch.func.vmap``
and ``TreeRelease.copy_answers`` (per copy, i.e. per independent structure).

Paper: the denominator "only a normalization factor" (ICLR line 269), Algorithm 3's ``P_wx``,
``s_wx`` without noise, DPTreeDistance over sorted keys (v2 §3, App. F, I);
spec PAPER.md §3.2, §3.4, §3.5, §5 items 5-7.

Shapes: ``sample_released`` returns a dict of float64 tensors with a leading batch axis
(``direct``: ``S`` (N, r, d_v + 1); ``tree``: ``scalars`` (N, d_v + 1, 2) and ``payload``
(N, 2G' - 1, r, d_v + 1, 3), G' = 2^ceil(log2 G); sorted trees: ``keys`` (N, n) when stored
and ``nodes`` (N, 2n' - 1, 3)); ``sample_answers`` returns (N, m, d_v).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import torch

from dpxattn.accounting import feature_dimension, padded_size, plan_direct, plan_tree
from dpxattn.errors import ParameterError
from dpxattn.params import check_positive, check_positive_int, check_privacy
from dpxattn.randomness import generator_uniforms

__all__ = [
    "StructureConfig",
    "SortedTreeConfig",
    "Variant",
    "VARIANTS",
    "MUTANT_NAMES",
    "CORRECT_NAMES",
    "get_variant",
    "noiseless_release",
    "sample_released",
    "sample_answers",
    "sample_sorted_tree",
    "sorted_tree_values",
    "verify_batches_match_builds",
    "MEDIAN_UNIFORM",
    "BATCH",
]

#: ppf(1/2) = 0 exactly: feeding this uniform to a draw releases the exact value
MEDIAN_UNIFORM = 0.5
#: structures sampled per call of the real release code (bounds the temporaries)
BATCH = 1 << 16


@dataclass(frozen=True)
class StructureConfig:
    """Public parameters of one cross-attention structure (DESIGN §4 ``build`` arguments)."""

    mechanism: str
    n: int
    d: int
    d_v: int
    degree: int
    R: float
    R_w: float
    eps: float
    delta: float
    scale: object = None
    grid_size: int | None = None

    @property
    def r(self) -> int:
        return feature_dimension(self.d, self.degree)

    @property
    def cols(self) -> int:
        return self.d_v + 1

    @property
    def grid(self) -> int:
        return self.n if self.grid_size is None else self.grid_size

    def plan(self):
        """The real privacy plan of this structure (copies = 1)."""
        if self.mechanism == "direct":
            return plan_direct(eps=self.eps, delta=self.delta, n=self.n, d=self.d, d_v=self.d_v,
                               degree=self.degree)
        return plan_tree(eps=self.eps, delta=self.delta, n=self.n, d=self.d, d_v=self.d_v,
                         degree=self.degree, grid_size=self.grid_size)

    def build_kwargs(self) -> dict:
        kw = dict(eps=self.eps, delta=self.delta, R=self.R, R_w=self.R_w, degree=self.degree,
                  mechanism=self.mechanism, scale=self.scale)
        if self.mechanism == "tree" and self.grid_size is not None:
            kw["grid_size"] = self.grid_size
        return kw

    def with_mechanism(self, mechanism: str) -> "StructureConfig":
        return replace(self, mechanism=mechanism)

    def describe(self) -> str:
        g = f", G={self.grid}" if self.mechanism == "tree" else ""
        return (f"{self.mechanism}: n={self.n}, d={self.d}, d_v={self.d_v}, degree={self.degree} "
                f"(r={self.r}), R={self.R:g}, R_w={self.R_w:g}{g}, eps={self.eps:g}, "
                f"delta={self.delta:g}")


@dataclass(frozen=True)
class SortedTreeConfig:
    """The literal DPTreeDistance (PAPER §3.2 listing, p = 2): n points in [0, R_x], weights in
    [-R_w, R_w], trees k = 0..p each (eps/(p+1), delta/(p+1)) with sensitivity 2 R_w R_x^k."""

    n: int
    R_x: float
    R_w: float
    eps: float
    delta: float
    p: int = 2

    def tree_budget(self) -> tuple[Fraction, Fraction]:
        return Fraction(self.eps) / (self.p + 1), Fraction(self.delta) / (self.p + 1)

    def claimed_sensitivities(self) -> list[float]:
        """The listing's per-level sensitivity of moment tree k: 2 R_w R_x^k (PAPER §3.2)."""
        from dpxattn.reference import dptree_distance

        return [float(dptree_distance.moment_sensitivity(k, upper=self.R_x, R_w=self.R_w))
                for k in range(self.p + 1)]

    def describe(self) -> str:
        return (f"literal DPTreeDistance over sorted keys: n={self.n}, R_x={self.R_x:g}, "
                f"R_w={self.R_w:g}, p={self.p}, eps={self.eps:g}, delta={self.delta:g}")


@dataclass(frozen=True)
class Variant:
    """One mechanism variant: the real one (``mutant=False``) or a deliberately wrong one."""

    name: str
    family: str  # "direct" | "tree" | "sorted-tree"
    mutant: bool
    description: str
    demonstrates: str
    noise_factor: float = 1.0
    noiseless: tuple[str, ...] = ()  # parts released exactly: "denominator", "c0-c1"
    stores_keys: bool = False


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("direct", "direct", False, "the direct mechanism (noisy S = P(K)^T [V, 1])",
            "DESIGN §2; PAPER §5 item 8"),
    Variant("tree", "tree", False, "the tree mechanism, sound reading (public grid, noisy c0, "
            "c1 and denominator)", "PAPER §3.2-3.7"),
    Variant("direct-half-noise", "direct", True, "direct with noise scale x0.5 at the same "
            "claimed eps", "DESIGN §6: an under-noised mechanism must be flagged", noise_factor=0.5),
    Variant("tree-half-noise", "tree", True, "tree with noise scale x0.5 on every released "
            "number at the same claimed eps", "DESIGN §6: an under-noised mechanism must be flagged",
            noise_factor=0.5),
    Variant("direct-exact-denominator", "direct", True, "direct with the ones column of S (the "
            "denominator's statistic) released without noise",
            "PAPER §3.5 and §5 item 5: the ICLR version's unprivatized denominator D",
            noiseless=("denominator",)),
    Variant("tree-exact-denominator", "tree", True, "tree with the denominator structure "
            "(w = 1: c0, c1 and its trees) released without noise",
            "PAPER §3.5 and §5 item 5: the ICLR version's unprivatized denominator D",
            noiseless=("denominator",)),
    Variant("tree-exact-c0-c1", "tree", True, "tree with the scalars c0 = sum w and c1 = sum "
            "w ||P(k)||^2 released without noise",
            "PAPER §3.4 and §5 item 6: the ICLR Algorithm 3's P_wx, s_wx used without noise",
            noiseless=("c0-c1",)),
    Variant("sorted-keys-tree", "sorted-tree", True, "the literal DPTreeDistance: trees over "
            "the points sorted by their private keys, sorted keys stored for the binary search",
            "PAPER §3.2 listing and §5 item 7: the stored keys are released in the clear",
            stores_keys=True),
    Variant("sorted-positions-tree", "sorted-tree", True, "the literal DPTreeDistance's trees "
            "over sorted positions, keys NOT stored", "PAPER §5 item 7: one changed key shifts "
            "the ranks of the points in between, so the per-level sensitivity 2 R_w R_x^k is wrong"),
)}
MUTANT_NAMES = tuple(n for n, v in VARIANTS.items() if v.mutant)
CORRECT_NAMES = tuple(n for n, v in VARIANTS.items() if not v.mutant)


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ParameterError("mechanism", f"must be one of {tuple(VARIANTS)}", name)
    return VARIANTS[name]


# ---------------------------------------------------------------------------------------------
# the real release code, parametrised
# ---------------------------------------------------------------------------------------------

def _data(K, V):
    K = torch.as_tensor(np.asarray(K, dtype=np.float64))
    V = torch.as_tensor(np.asarray(V, dtype=np.float64))
    return K, V


def _checked(config: StructureConfig, K, V):
    from dpxattn.fast.validation import check_keys_values

    check_privacy(config.eps, config.delta)
    K, V = _data(K, V)
    if K.shape[0] != config.n:
        raise ParameterError("K", f"must have n = {config.n} rows (the structure's public size)",
                             f"{K.shape[0]} rows")
    return check_keys_values(K, V, R=config.R, R_w=config.R_w, clip=False)


def _noiseless_structure(config: StructureConfig, K, V):
    """The real fast build with every uniform at the median 1/2: its release is the exact one."""
    from dpxattn.fast import DPCrossAttention

    _checked(config, K, V)
    count = DPCrossAttention.noise_count(n=len(K), d=config.d, d_v=config.d_v, degree=config.degree,
                                         mechanism=config.mechanism, grid_size=config.grid_size)
    return DPCrossAttention.build(*_data(K, V), uniforms=np.full(count, MEDIAN_UNIFORM),
                                  **config.build_kwargs())


def noiseless_release(config: StructureConfig, K, V) -> dict[str, torch.Tensor]:
    """The exact released numbers of the real fast build: every uniform is the median 1/2.

    ``DPCrossAttention.build(K, V, uniforms=[1/2, ...]).released_tensors()`` (float64 sums of
    the real build; shapes as in that method: ``S`` (r, cols), or ``payload``
    (2N-1, r, 1, cols, 3) and ``scalars`` (1, cols, 2)).
    """
    att = _noiseless_structure(config, K, V)
    return {k: v.clone() for k, v in att.released_tensors().items()}


def _direct_parts(config: StructureConfig, K, V, factor: float):
    """(the real noiseless DirectRelease, the real noise law of S with sensitivity x factor)."""
    from dpxattn.fast.release import noise_law
    from dpxattn.fast.sensitivities import direct_sensitivity

    rel = _noiseless_structure(config, K, V).release
    sens = direct_sensitivity(d=config.d, degree=config.degree, R=config.R, R_w=config.R_w,
                              d_v=config.d_v, scale=config.scale) * factor
    eps_s, delta_s = config.plan().share("S")
    return rel, noise_law((config.cols,), sens, eps_s, delta_s)


def _check_layout(shape: tuple, offset: int, reference_index, what: str) -> None:
    """Compare a row-major view's flat positions with the reference's documented index function
    at the multi-indices that step each axis once (and at the last entry)."""
    probes = [tuple(1 if j == i else 0 for j in range(len(shape))) for i, n in enumerate(shape) if n > 1]
    probes.append(tuple(n - 1 for n in shape))
    for idx in probes:
        if offset + int(np.ravel_multi_index(idx, shape)) != reference_index(*idx):
            raise AssertionError(f"{what} uniform layout disagrees with the reference's documented "
                                 f"order at {idx}")


def _direct_uniform_view(u: np.ndarray, count: int, config: StructureConfig) -> np.ndarray:
    """The batch's uniforms as a (count, r, cols) view: sample-major, then S row-major."""
    from dpxattn.reference.direct import noise_index

    view = u.reshape(count, config.r, config.cols)
    _check_layout(view.shape[1:], 0, lambda t, k: noise_index(t, k, config.d_v), "direct")
    return view


def _tree_uniform_views(u: np.ndarray, copies: int, config: StructureConfig):
    """(scalars (copies, cols, 2), nodes (2N-1, copies, cols, r, 3)) views of a tree stream."""
    from dpxattn.reference.dptree_softmax import node_noise_index, scalar_noise_index

    cols, r, N, d_v = config.cols, config.r, padded_size(config.grid), config.d_v
    ns = 2 * copies * cols
    scalars = u[:ns].reshape(copies, cols, 2)
    nodes = u[ns:].reshape(2 * N - 1, copies, cols, r, 3)
    _check_layout(scalars.shape, 0, lambda c, k, w: scalar_noise_index(c, k, w, d_v=d_v), "tree scalar")
    _check_layout(nodes.shape, ns, lambda i, c, k, t, m: node_noise_index(i, c, k, t, m, d_v=d_v, r=r,
                                                                            copies=copies), "tree node")
    return scalars, nodes


def _apply_noiseless(variant: Variant, config: StructureConfig, u: np.ndarray, copies: int) -> None:
    """Feed the median uniform to the draws a mutant releases without noise (in place)."""
    if not variant.noiseless:
        return
    if variant.family == "direct":
        view = _direct_uniform_view(u, copies, config)
        if "denominator" in variant.noiseless:
            view[:, :, config.d_v] = MEDIAN_UNIFORM
        return
    scalars, nodes = _tree_uniform_views(u, copies, config)
    if "denominator" in variant.noiseless:
        scalars[:, config.d_v, :] = MEDIAN_UNIFORM
        nodes[:, :, config.d_v] = MEDIAN_UNIFORM
    if "c0-c1" in variant.noiseless:
        scalars[...] = MEDIAN_UNIFORM


def _tree_release(config: StructureConfig, K, V, *, copies: int, factor: float, uniforms):
    """The real ``TreeRelease.build`` with the copies = 1 plan's shares and sensitivities x factor:
    ``copies`` independent structures, each with exactly the law of a copies = 1 build."""
    from dpxattn.fast.cross_attention import _norm_bound
    from dpxattn.fast.directed import float_up
    from dpxattn.fast.features import feature_bounds
    from dpxattn.fast.sensitivities import tree_sensitivities
    from dpxattn.fast.tree_mechanism import TreeRelease
    from dpxattn.fast.uniforms import uniform_stream

    Kc, Vc = _checked(config, K, V)
    plan = config.plan()
    scalar_sens, node_sens = tree_sensitivities(d=config.d, degree=config.degree, R=config.R,
                                                R_w=config.R_w, d_v=config.d_v, scale=config.scale)
    with torch.no_grad():
        return TreeRelease.build(
            Kc, Vc, degree=config.degree, scale=config.scale, grid=config.grid, copies=copies,
            bounds=feature_bounds(config.d, config.degree, config.R, scale=config.scale),
            norm_bound=_norm_bound(config.d, config.degree, config.R, config.scale),
            R_w=float_up(config.R_w, "R_w"),
            scalar_sens=np.asarray(scalar_sens, dtype=np.float64) * factor,
            node_sens=np.asarray(node_sens, dtype=np.float64) * factor,
            shares={key: plan.share(key) for key in ("c0", "c1", "tree_level")},
            stream=uniform_stream(len(uniforms), uniforms=uniforms))


def _tree_count(config: StructureConfig, copies: int) -> int:
    from dpxattn.fast.tree_mechanism import tree_noise_count

    return tree_noise_count(r=config.r, d_v=config.d_v, copies=copies, grid=config.grid)


def _check_family(variant: Variant, config: StructureConfig) -> None:
    if variant.family != config.mechanism:
        raise ParameterError("config.mechanism", f"must be {variant.family!r} for variant "
                             f"{variant.name!r}", config.mechanism)


def _chunks(total: int):
    total = check_positive_int("count", total)
    for start in range(0, total, BATCH):
        yield min(BATCH, total - start)


def _direct_batch(variant, config, exact, law, count, rng):
    from dpxattn.fast.release import release_
    from dpxattn.fast.uniforms import uniform_stream

    per = config.r * config.cols
    u = generator_uniforms(rng, count * per)
    _apply_noiseless(variant, config, u, count)
    S = exact.unsqueeze(0).repeat(count, 1, 1)
    with torch.no_grad():
        release_(S.view(count * config.r, config.cols), law, uniform_stream(u.size, uniforms=u))
    return S


def sample_released(name: str, config: StructureConfig, K, V, count: int,
                    rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """``count`` independent releases of variant ``name`` on (K, V) (see the module docstring).

    ``rng``: a seeded ``numpy.random.Generator`` (audits are reproducible and labelled so).
    """
    variant = get_variant(name)
    _check_family(variant, config)
    if variant.family == "direct":
        rel, law = _direct_parts(config, K, V, variant.noise_factor)
        return {"S": torch.cat([_direct_batch(variant, config, rel.S, law, c, rng)
                                for c in _chunks(count)])}
    scalars, payloads = [], []
    for c in _chunks(count):
        u = generator_uniforms(rng, _tree_count(config, c))
        _apply_noiseless(variant, config, u, c)
        rel = _tree_release(config, K, V, copies=c, factor=variant.noise_factor, uniforms=u)
        scalars.append(rel.scalars)
        payloads.append(rel.payload.permute(2, 0, 1, 3, 4))
    return {"scalars": torch.cat(scalars), "payload": torch.cat(payloads)}


def sample_answers(name: str, config: StructureConfig, K, V, Q, count: int,
                   rng: np.random.Generator) -> torch.Tensor:
    """Answers to the public queries Q (m, d) of ``count`` independent structures: (count, m, d_v).

    Each answer is what ``DPCrossAttention.query(Q)`` of that structure returns (the real
    query code; :func:`verify_batches_match_builds` checks it bit for bit).
    """
    from dpxattn.fast.validation import check_queries

    variant = get_variant(name)
    _check_family(variant, config)
    Qv = check_queries(torch.as_tensor(np.asarray(Q, dtype=np.float64)), d=config.d, R=config.R,
                       device=torch.device("cpu"), clip=False)
    out = []
    if variant.family == "direct":
        rel, law = _direct_parts(config, K, V, variant.noise_factor)

        def answer(S):
            return replace(rel, S=S, _cast={}).answer(Qv)[0]

        for c in _chunks(count):
            S = _direct_batch(variant, config, rel.S, law, c, rng)
            with torch.no_grad():
                out.append(torch.func.vmap(answer)(S))
        return torch.cat(out)
    for c in _chunks(count):
        u = generator_uniforms(rng, _tree_count(config, c))
        _apply_noiseless(variant, config, u, c)
        rel = _tree_release(config, K, V, copies=c, factor=variant.noise_factor, uniforms=u)
        with torch.no_grad():
            per_copy, _ = rel.copy_answers(Qv)  # (m, c, d_v)
        out.append(per_copy.permute(1, 0, 2))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# the literal DPTreeDistance over sorted keys (mutants only)
# ---------------------------------------------------------------------------------------------

def sorted_tree_values(config: SortedTreeConfig, x, w) -> np.ndarray:
    """The listing's leaf arrays b^(k)_i = w_(i) x_(i)^k over the points sorted by key: (n, p+1)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if x.shape != (config.n,) or w.shape != (config.n,):
        raise ParameterError("x, w", f"must both have shape ({config.n},)", (x.shape, w.shape))
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    return np.stack([ws * xs**k for k in range(config.p + 1)], axis=1)


def sample_sorted_tree(name: str, config: SortedTreeConfig, x, w, count: int,
                       rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """``count`` releases of the literal DPTreeDistance on points ``x`` (n,) and weights ``w``.

    The trees are the real ``dpxattn.fast.tree.DPTree`` (``count (p + 1)`` trees at once, one
    per payload column: moment k of sample j is column ``j (p + 1) + k``), each with the
    listing's budget (eps/(p+1), delta/(p+1)) and sensitivity 2 R_w R_x^k. Returns ``nodes``
    (count, 2n' - 1, p + 1) and, for ``sorted-keys-tree``, the stored sorted ``keys`` (count, n).
    """
    from dpxattn.fast.tree import DPTree

    variant = get_variant(name)
    if variant.family != "sorted-tree":
        raise ParameterError("mechanism", "must be a sorted-tree variant", name)
    check_positive("R_x", config.R_x)
    values = torch.as_tensor(sorted_tree_values(config, x, w))
    eps_t, delta_t = config.tree_budget()
    sens = config.claimed_sensitivities()
    m = config.p + 1
    nodes = []
    for c in _chunks(count):
        width = c * m
        u = generator_uniforms(rng, DPTree.noise_count(config.n, width))
        tree = DPTree.build(values.repeat(1, c), sensitivity=sens * c, eps=eps_t, delta=delta_t,
                            uniforms=u)
        nodes.append(tree.nodes.view(-1, c, m).permute(1, 0, 2))
    out = {"nodes": torch.cat(nodes)}
    if variant.stores_keys:
        keys = torch.as_tensor(np.sort(np.asarray(x, dtype=np.float64)))
        out["keys"] = keys.unsqueeze(0).repeat(count, 1)
    return out


# ---------------------------------------------------------------------------------------------
# the batches are the real builds
# ---------------------------------------------------------------------------------------------

def verify_batches_match_builds(config: StructureConfig, K, V, Q, rng: np.random.Generator,
                                samples: int = 3) -> dict:
    """Check that the batched sampler of the correct variant IS ``DPCrossAttention.build``.

    Draws uniforms for ``samples`` structures, runs the batched release on them, and for each
    sample builds ``DPCrossAttention.build(K, V, uniforms=<that sample's uniforms in the
    documented order>)``; compares every released tensor and ``query(Q)`` for equality (bit for
    bit). Returns ``{"released_equal": bool, "answers_equal": bool, "samples": samples}``.
    """
    from dpxattn.fast import DPCrossAttention
    from dpxattn.fast.release import release_
    from dpxattn.fast.uniforms import uniform_stream

    Qt = torch.as_tensor(np.asarray(Q, dtype=np.float64))
    released_equal = answers_equal = True
    if config.mechanism == "direct":
        rel0, law = _direct_parts(config, K, V, 1.0)
        per = config.r * config.cols
        u = generator_uniforms(rng, samples * per)
        S = rel0.S.unsqueeze(0).repeat(samples, 1, 1)
        release_(S.view(samples * config.r, config.cols), law, uniform_stream(u.size, uniforms=u))
        for i in range(samples):
            att = DPCrossAttention.build(*_data(K, V), uniforms=u[i * per:(i + 1) * per],
                                         **config.build_kwargs())
            released_equal &= bool(torch.equal(att.release.S, S[i]))
            batch_answer = replace(rel0, S=S[i], _cast={}).answer(Qt)[0]
            answers_equal &= bool(torch.equal(att.query(Qt), batch_answer))
    else:
        u = generator_uniforms(rng, _tree_count(config, samples))
        rel = _tree_release(config, K, V, copies=samples, factor=1.0, uniforms=u)
        sc, nd = _tree_uniform_views(u, samples, config)
        per_copy, _ = rel.copy_answers(Qt)
        for i in range(samples):
            own = np.concatenate([sc[i].reshape(-1), nd[:, i].reshape(-1)])
            att = DPCrossAttention.build(*_data(K, V), uniforms=own, **config.build_kwargs())
            released_equal &= bool(torch.equal(att.release.scalars[0], rel.scalars[i]))
            released_equal &= bool(torch.equal(att.release.payload[:, :, 0], rel.payload[:, :, i]))
            answers_equal &= bool(torch.equal(att.query(Qt), per_copy[:, i]))
    return {"released_equal": released_equal, "answers_equal": answers_equal, "samples": samples}
