"""``dpxattn build`` and ``dpxattn query``: build a structure from ``.npy`` files, save it, serve it.

    dpxattn build --keys K.npy --values V.npy --eps E --delta D --R R --R-w RW --degree S
                  [--mechanism direct|tree] [--grid-size G] [--law tlap|gaussian] [--clip]
                  [--stream [--chunk-rows N]] --out FILE
    dpxattn query FILE --queries Q.npy [--out A.npy] [--failure-prob P]

Paper: the structure is built once from the private context and answers any number of public
queries (v2 §1, §3; DESIGN §1); saving it is software (``dpxattn.persist``). ``build`` reads the
arrays without pickle (memory-mapped), builds in the secure default mode (OS CSPRNG, lattice
release) and writes only the released structure; the private arrays are not copied into the
file. ``query`` prints (or writes) the answers and an envelope: ``error_bound`` for TLap
structures, ``hp_error_bound(Q, P)`` for Gaussian ones (unbounded noise has no sure envelope).
Bad files and bounds give an error message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_build_arguments", "run_build", "add_query_arguments", "run_query", "BuildCommand",
           "QueryCommand"]


def _load_array(path: str, what: str):
    import numpy as np

    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"dpxattn: cannot read {what} from {path!r} as a .npy array ({exc})")


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keys", required=True, metavar="K.npy", help="private keys, (n, d) float")
    parser.add_argument("--values", required=True, metavar="V.npy", help="private values, (n, d_v) float")
    parser.add_argument("--eps", type=float, required=True, help="end-to-end epsilon")
    parser.add_argument("--delta", type=float, required=True, help="end-to-end delta")
    parser.add_argument("--R", type=float, required=True, help="public bound on keys and queries")
    parser.add_argument("--R-w", dest="R_w", type=float, required=True, help="public bound on |values|")
    parser.add_argument("--degree", type=int, required=True, help="Taylor degree s")
    parser.add_argument("--mechanism", choices=("direct", "tree"), default="direct")
    parser.add_argument("--law", choices=("tlap", "gaussian"), default="tlap",
                        help="noise law (tlap: sure envelopes; gaussian: less noise, hp envelopes)")
    parser.add_argument("--clip", action="store_true",
                        help="clip entries to the public bounds instead of refusing them")
    parser.add_argument("--out", required=True, metavar="FILE", help="where the structure goes (.npz)")
    parser.add_argument("--grid-size", type=int, default=None,
                        help="tree only: cells of the public grid (default n)")
    parser.add_argument("--stream", action="store_true",
                        help="read the memory-mapped files in chunks through the exact "
                             "streaming accumulator (dpxattn.fast.Accumulator; never the whole "
                             "array in memory), with a progress bar on stderr")
    parser.add_argument("--chunk-rows", type=int, default=1 << 16,
                        help="rows per chunk with --stream (default 65536)")


def _stream_build(args: argparse.Namespace):
    """The ``--stream`` build: memory maps read ``--chunk-rows`` rows at a time into an
    :class:`dpxattn.fast.Accumulator`, a progress line per chunk on stderr, one release."""
    from dpxattn.errors import ParameterError
    from dpxattn.fast import Accumulator

    if args.chunk_rows < 1:
        raise ParameterError("--chunk-rows", "must be >= 1", args.chunk_rows)
    K, V = _load_array(args.keys, "keys"), _load_array(args.values, "values")
    if K.ndim != 2 or V.ndim != 2 or len(K) != len(V):
        raise ParameterError("--keys/--values", "must be (n, d) and (n, d_v) arrays with the same n",
                             f"{K.shape}, {V.shape}")
    n = len(K)
    tree = args.mechanism == "tree"
    acc = Accumulator(mechanism=args.mechanism, d=K.shape[1], d_v=V.shape[1], degree=args.degree,
                      R=args.R, R_w=args.R_w, clip=args.clip,
                      grid_size=(args.grid_size or n) if tree else args.grid_size)
    for start in range(0, n, args.chunk_rows):
        stop = min(n, start + args.chunk_rows)
        acc.add(K[start:stop], V[start:stop])
        print(f"\r  accumulated {stop:,} / {n:,} rows ({100 * stop / n:.0f}%)", end="",
              file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return acc.release(eps=args.eps, delta=args.delta, law=args.law)


def run_build(args: argparse.Namespace) -> int:
    import torch

    from dpxattn.errors import DPXAttnError
    from dpxattn.fast import DPCrossAttention

    if args.stream:
        try:
            att = _stream_build(args)
        except DPXAttnError as exc:
            print(f"dpxattn build: {exc}", file=sys.stderr)
            return 2
        return _save(att, args)
    K = torch.from_numpy(_load_array(args.keys, "keys").astype("float64"))
    V = torch.from_numpy(_load_array(args.values, "values").astype("float64"))
    try:
        att = DPCrossAttention.build(K, V, eps=args.eps, delta=args.delta, R=args.R, R_w=args.R_w,
                                     degree=args.degree, mechanism=args.mechanism, law=args.law,
                                     clip=args.clip, grid_size=args.grid_size)
    except DPXAttnError as exc:
        print(f"dpxattn build: {exc}", file=sys.stderr)
        return 2
    del K, V
    return _save(att, args)


def _save(att, args: argparse.Namespace) -> int:
    path = att.save(args.out)
    print(f"built {att!r}")
    print(att.privacy)
    print(f"saved: {path}")
    return 0


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("structure", metavar="FILE", help="a structure written by `dpxattn build`")
    parser.add_argument("--queries", required=True, metavar="Q.npy", help="public queries, (m, d) float")
    parser.add_argument("--out", metavar="A.npy", default=None,
                        help="write answers (m, d_v) here, and the envelope to A.envelope.npy")
    parser.add_argument("--failure-prob", type=float, default=0.05,
                        help="failure probability of the high-probability envelope (Gaussian law)")


def run_query(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from dpxattn.errors import DPXAttnError
    from dpxattn.fast import DPCrossAttention

    try:
        att = DPCrossAttention.load(args.structure)
        Q = torch.from_numpy(_load_array(args.queries, "queries").astype("float64"))
        answers = att.query(Q)
        if att.law == "tlap":
            envelope, kind = att.error_bound(Q), "sure envelope error_bound"
        else:
            envelope = att.hp_error_bound(Q, args.failure_prob)
            kind = f"hp_error_bound at failure probability {args.failure_prob:g} per entry"
    except DPXAttnError as exc:
        print(f"dpxattn query: {exc}", file=sys.stderr)
        return 2
    if args.out:
        np.save(args.out, answers.numpy())
        env_path = args.out.removesuffix(".npy") + ".envelope.npy"
        np.save(env_path, envelope.numpy())
        print(f"answers: {args.out}  envelope ({kind}): {env_path}")
        return 0
    print(f"answers ({answers.shape[0]} x {answers.shape[1]}) and {kind}:")
    for a, e in zip(answers.tolist(), envelope.tolist()):
        print("  " + "  ".join(f"{x:+.6f} ± {b:.3g}" for x, b in zip(a, e)))
    return 0


class BuildCommand:
    """The module interface of ``dpxattn.cli`` for ``build``."""

    add_arguments = staticmethod(add_build_arguments)
    run = staticmethod(run_build)


class QueryCommand:
    """The module interface of ``dpxattn.cli`` for ``query``."""

    add_arguments = staticmethod(add_query_arguments)
    run = staticmethod(run_query)
