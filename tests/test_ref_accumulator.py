"""The reference mirror of the streaming accumulator (reference/accumulator.py, ``direct``):
layout-independent exact sums, an independent exact recomputation, the rounding bound, the
fast-vs-reference boundary bound, conformance with dpxattn.fast.Accumulator from shared uniforms,
consumption and bad input. Every tolerance or bound is shown to reject a deliberately wrong
mirror (the ``*_is_caught`` tests). Proof note: proofs_notes/30-exact-accumulation.md."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
import torch

import dpxattn.reference.accumulator as ref_acc
from dpxattn.errors import BoundError, ParameterError, ShapeError, UniformsError
from dpxattn.fast import DPCrossAttention
from dpxattn.fast.accumulator import Accumulator as FastAccumulator
from dpxattn.fast.accumulator import exact_constants
from dpxattn.reference import exact_accumulation as ea
from dpxattn.reference import sensitivity
from dpxattn.reference._mp import to_fraction
from dpxattn.reference.accumulator import Accumulator, AccumulatorError, noise_sensitivity

#: DESIGN §6: fast vs reference from shared uniforms, float64, relative to the magnitudes summed
REL_TOL = 1e-10
P = dict(d=2, d_v=2, degree=2, R=1.0, R_w=1.0)


def _box(n, seed, d=2, d_v=2, R=1.0, R_w=1.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, R, (n, d)), rng.uniform(-R_w, R_w, (n, d_v))


def _ball(n, seed, d=2, d_v=2, R=1.0, R_w=1.0):
    rng = np.random.default_rng(seed)
    K = rng.normal(size=(n, d))
    radius = (R / 1.001) * rng.uniform(0, 1, (n, 1)) ** (1 / d)
    K *= radius / np.linalg.norm(K, axis=1, keepdims=True)
    return K, rng.uniform(-R_w, R_w, (n, d_v))


def _fast_sums(acc: FastAccumulator) -> list:
    """The fast accumulator's exact integers S~ 2^(a+b) (high 2^32 + low, Python ints)."""
    high, low = acc._state.tolist()
    return [[(h << 32) + lo for h, lo in zip(*rows)] for rows in zip(high, low)]


def _independent_sums(K, V, degree, scale, a, b) -> list:
    """sum_i round(P(k_i) 2^a) round(W_i 2^b) in exact rational arithmetic, written apart from
    the reference: P_alpha(x) = sign(X) sqrt(c X^2), c = scale^|alpha| / alpha!, X = x^alpha
    (Fractions), rounded to nearest (ties to even) through integer square roots, no precision."""
    d = K.shape[1]
    combos = [c for k in range(degree + 1)
              for c in itertools.combinations_with_replacement(range(d), k)]

    def round_sqrt(Q: Fraction) -> int:  # round(sqrt(Q)), Q >= 0, ties to even
        m = math.isqrt(math.floor(Q))
        half = (Fraction(2 * m + 1, 2)) ** 2
        return m + 1 if Q > half or (Q == half and m % 2 == 1) else m

    sums = [[0] * (V.shape[1] + 1) for _ in combos]
    for k, v in zip(K, V):
        W = [round(Fraction(float(x)) * Fraction(2) ** b) for x in v] + [round(Fraction(2) ** b)]
        for t, combo in enumerate(combos):
            X = math.prod((Fraction(float(k[j])) for j in combo), start=Fraction(1))
            c = Fraction(scale) ** len(combo) / math.prod(
                math.factorial(combo.count(j)) for j in set(combo))
            p = round_sqrt(c * X * X * Fraction(4) ** a)
            p = -p if X < 0 else p
            for j, w in enumerate(W):
                sums[t][j] += p * w
    return sums


# --- exactness --------------------------------------------------------------------------------

def test_chunking_order_and_merge_give_the_same_integer_sums_bit_for_bit():
    K, V = _box(90, seed=1)
    one = Accumulator(**P).add(K, V)
    chunked = Accumulator(**P)
    for lo, hi in ((0, 1), (1, 40), (40, 41), (41, 90)):
        chunked.add(K[lo:hi], V[lo:hi])
    perm = np.random.default_rng(2).permutation(90)
    shuffled = Accumulator(**P).add(K[perm].tolist(), V[perm].tolist())  # lists work too
    parts = [Accumulator(**P).add(K[lo:hi], V[lo:hi]) for lo, hi in ((0, 17), (17, 60), (60, 90))]
    merged = parts[2].merge(parts[0]).merge(parts[1])
    want = one.integer_sums()
    for other in (chunked, shuffled, merged):
        assert other.integer_sums() == want and other.n == 90
    u = np.random.default_rng(3).uniform(size=DPCrossAttention.noise_count(n=90, **_shape(P)))
    assert (one.release(eps=1.0, delta=1e-6, uniforms=u).release.noisy
            == merged.release(eps=1.0, delta=1e-6, uniforms=u).release.noisy)


def _shape(p):
    return {k: p[k] for k in ("d", "d_v", "degree")}


@pytest.mark.parametrize("domain,degree,scale", [("box", 3, None), ("ball", 2, None),
                                                 ("ball", 3, 0.5)])
def test_integer_sums_equal_an_independent_exact_recomputation(domain, degree, scale):
    cfg = dict(d=3, d_v=2, degree=degree, R=1.0, R_w=1.5, scale=scale, domain=domain)
    K, V = (_ball if domain == "ball" else _box)(40, seed=4, d=3, R_w=1.5)
    acc = Accumulator(**cfg).add(K, V)
    resolved = (Fraction(1, 3) if scale is None and domain == "box" else
                Fraction(1) if scale is None else Fraction(scale))
    assert acc.integer_sums() == _independent_sums(K, V, degree, resolved, acc.a, acc.b)


def test_the_lattice_is_the_fast_paths_and_the_sensitivity_is_the_same_float64():
    for domain in ("box", "ball"):
        for norm in ("l1", "l2"):
            for cfg in (dict(d=2, degree=2, R=1.0, R_w=1.0, d_v=2),
                        dict(d=3, degree=3, R=1.25, R_w=2.5, d_v=1)):
                scale = 1 if domain == "ball" else None
                acc = Accumulator(**cfg, domain=domain)
                fast = exact_constants(n=123, **cfg, scale=scale, domain=domain, norm=norm)
                assert (acc.a, acc.b) == fast[:2]
                sens = noise_sensitivity(n=123, **cfg, scale=acc.scale, domain=domain, norm=norm)
                assert sens == fast[2]  # bit for bit
                exact = ea.released_sensitivity(123, **cfg, scale=acc.scale, domain=domain,
                                                norm=norm)
                assert Fraction(sens) >= to_fraction(exact) > to_fraction(fast[4])


# --- the rounding bound: |S - S~| <= n e0 -----------------------------------------------------

def _within_rounding_bound(exact, rounded, n, e0) -> np.ndarray:
    """|S - S~| / (n e0), entrywise (exact rationals; <= 1 is the claim)."""
    return np.array([[float(abs(x - y) / (n * to_fraction(e))) for x, y, e in zip(rx, ry, re)]
                     for rx, ry, re in zip(exact, rounded, e0)])


def _worst_case():
    """d = 1, s = 1, scale = 1: P(x) = [1, x] exactly (a = b = 20). Every x and v lies 2^-7
    lattice units below a half-integer, so each rounds down by 1/2 - 2^-7 units and every row's
    (x, v) and (x, 1) terms err by 0.984 of the bound, all in the same direction; the exact S
    is a sum of Fractions."""
    n = 30
    x = float(Fraction(2**21 - 1, 2**21) - Fraction(1, 2**27))  # (2^20 - 1/2 - 2^-7) 2^-20
    K, V = np.full((n, 1), x), np.full((n, 1), x)
    acc = Accumulator(d=1, d_v=1, degree=1, R=1.0, R_w=1.0, scale=1.0).add(K, V)
    X, W = Fraction(x), Fraction(x)
    exact = [[n * W, Fraction(n)], [n * X * W, n * X]]
    return acc, exact, n


def test_the_exact_statistic_is_within_the_rounding_bound_and_the_bound_is_attained():
    acc, exact, n = _worst_case()
    e0 = ea.rounding_error_bounds(acc.M, 1.0, 1, 1, acc.a, acc.b)
    ratio = _within_rounding_bound(exact, acc.statistic(), n, e0)
    assert ratio.max() <= 1 and ratio[1].min() >= 0.98  # the x row: attained within 2 %
    # random rows, box and ball: within the bound as well
    for domain in ("box", "ball"):
        K, V = (_ball if domain == "ball" else _box)(60, seed=5, d=2)
        acc = Accumulator(**P, domain=domain).add(K, V)
        flat = sensitivity.released_S(K, V, degree=2, scale=acc.scale, prec=acc.prec)
        exact = [[to_fraction(flat[t * 3 + j]) for j in range(3)] for t in range(acc.r)]
        e0 = ea.rounding_error_bounds(acc.M, 1.0, 2, 2, acc.a, acc.b)
        assert _within_rounding_bound(exact, acc.statistic(), 60, e0).max() <= 1


def test_a_rounding_bound_without_the_value_term_is_caught():
    """The wrong bound (g M + 2^-(a+1)) W_k, without M 2^-(b+1), is exceeded (ratio ~ 1.97)."""
    acc, exact, n = _worst_case()
    ctx_e0 = ea.rounding_error_bounds(acc.M, 1.0, 1, 1, acc.a, acc.b)
    wrong = [[e - to_fraction(m) * Fraction(1, 2 ** (acc.b + 1)) for e in row[:-1]] + [row[-1]]
             for m, row in zip(acc.M, ctx_e0)]
    assert _within_rounding_bound(exact, acc.statistic(), n, wrong).max() > 1.5


# --- fast vs reference: the boundary bound -------------------------------------------------------

def _boundary_rows(count: int, seed: int) -> np.ndarray:
    """Keys (x0, x1) whose exact product x0 x1 2^20 lies just above a half-integer m + 1/2 (m
    even) while the float64 product fl(x0 x1) 2^20 is exactly m + 1/2: the fast path rounds it
    to m (ties to even), the exact feature rounds up to m + 1 (d = 2, s = 2, scale = 1: the
    feature x0 x1 has coefficient 1; a = 20)."""
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < count:
        h = Fraction(4 * int(rng.integers(2**16, 2**17)) + 1, 2)  # m + 1/2, m even
        x0 = float(rng.uniform(0.6, 1.0))
        x1 = float(h / 2**20 / Fraction(x0))
        if x1 <= 1 and x0 * x1 * 2.0**20 == float(h) and Fraction(x0) * Fraction(x1) * 2**20 > h:
            rows.append((x0, x1))
    return np.array(rows)


def test_fast_and_reference_sums_differ_only_at_boundary_rows_by_the_derived_bound():
    cfg = dict(d=2, d_v=1, degree=2, R=1.0, R_w=1.0, scale=1.0)
    Kb = _boundary_rows(6, seed=6)
    Kr, Vr = _box(50, seed=7, d=2, d_v=1)
    K = np.vstack([Kr[:20], Kb, Kr[20:]])
    V = np.vstack([Vr[:20], np.full((6, 1), 0.75), Vr[20:]])
    ref = Accumulator(**cfg)
    assert ref.a == 20
    bound = ref.fast_difference_bound(K, V)
    ref.add(K, V)
    fast = FastAccumulator(**cfg).add(K, V)
    diff = [[f - r for f, r in zip(rf, rr)] for rf, rr in zip(_fast_sums(fast), ref.integer_sums())]
    assert all(abs(x) <= y for rd, rb in zip(diff, bound) for x, y in zip(rd, rb))
    # the bound is attained: feature x0 x1 (index 4), 6 rows of round(0.75 2^20) and of 2^20
    assert diff[4] == [-6 * 3 * 2**18, -6 * 2**20] and bound[4] == [6 * 3 * 2**18, 6 * 2**20]
    assert all(x == 0 for t, rd in enumerate(diff) if t != 4 for x in rd)
    # the reference rounds the exact features: it agrees with exact rational arithmetic
    assert ref.integer_sums() == _independent_sums(K, V, 2, Fraction(1), ref.a, ref.b)


def test_a_mirror_rounding_float64_features_is_caught(monkeypatch):
    """Rounding fl(P) (as the fast path does) instead of the exact P loses the boundary rows'
    difference: the exact recomputation above rejects it."""
    cfg = dict(d=2, d_v=1, degree=2, R=1.0, R_w=1.0, scale=1.0)
    K, V = _boundary_rows(3, seed=8), np.full((3, 1), 0.75)
    monkeypatch.setattr(ref_acc, "round_to_lattice",
                        lambda x, e: round(Fraction(float(x)) * Fraction(2) ** e))
    acc = Accumulator(**cfg).add(K, V)
    assert acc.integer_sums() != _independent_sums(K, V, 2, Fraction(1), acc.a, acc.b)
    assert acc.integer_sums() == _fast_sums(FastAccumulator(**cfg).add(K, V))


# --- conformance with dpxattn.fast.Accumulator from shared uniforms ------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    n: int
    d: int
    d_v: int
    degree: int
    law: str
    domain: str = "box"
    R: float = 1.0
    R_w: float = 1.0
    clip: bool = False


CASES = (
    Case("box tlap n300 d2 s2", 300, 2, 2, 2, "tlap"),
    Case("box gauss n100 d3 s3", 100, 3, 2, 3, "gaussian", R=1.5, R_w=2.5),
    Case("box tlap n64 d3 s2 clip", 64, 3, 1, 2, "tlap", clip=True),
    Case("ball tlap n50 d3 s3", 50, 3, 1, 3, "tlap"),
    Case("ball gauss n200 d2 s2", 200, 2, 3, 2, "gaussian", R=1.5, R_w=2.5),
)


def _floats(rows) -> np.ndarray:
    return np.array([[float(x) for x in row] for row in rows])


def _conformance(case: Case, seed: int = 0) -> dict:
    """Each check's verdict (True: passed) for one case. Tolerances:

    noisy S: |S_fast - S_ref| <= REL_TOL (|S~| + |Z|) per entry (the fast path's float64
    conversion, inverse-CDF draw and addition err relative to the summands, by ~2^-48);
    answers: |a_fast - a_ref| <= REL_TOL (|a| + (s_k + |a| s_D) / D), s_k = sum_t |u_t| (|S~| +
    |Z|)[t, k], the first-order float64 error scale of N_k / D; envelopes: REL_TOL relative and
    the fast one not below the reference (as tests/test_conformance.py)."""
    data = _ball if case.domain == "ball" else _box
    K, V = data(case.n, seed, d=case.d, d_v=case.d_v, R=case.R, R_w=case.R_w)
    if case.clip:  # a few entries out of bounds: both sides clip them to the box
        K[::7, 0] += 0.5 * case.R
        V[::5, -1] = 1.5 * case.R_w
    Q = data(8, seed + 1, d=case.d, d_v=case.d_v, R=case.R)[0]
    cfg = dict(d=case.d, d_v=case.d_v, degree=case.degree, R=case.R, R_w=case.R_w,
               clip=case.clip, domain=case.domain)
    ref = Accumulator(**cfg)
    bound = ref.fast_difference_bound(K, V)
    ref.add(K[:case.n // 3], V[:case.n // 3]).merge(Accumulator(**cfg).add(K[case.n // 3:],
                                                                           V[case.n // 3:]))
    fast = FastAccumulator(**cfg).add(torch.tensor(K), torch.tensor(V))
    out = {"lattice": (ref.a, ref.b) == (fast.a, fast.b)}
    rs, fs = ref.integer_sums(), _fast_sums(fast)
    out["sums"] = all(abs(f - r) <= b for rr, rf, rb in zip(rs, fs, bound)
                      for r, f, b in zip(rr, rf, rb))
    St = _floats(ref.statistic())
    count = DPCrossAttention.noise_count(n=case.n, d=case.d, d_v=case.d_v, degree=case.degree)
    u = np.random.default_rng(seed + 2).uniform(size=count)
    ra = ref.release(eps=1.0, delta=1e-6, law=case.law, uniforms=u)
    fa = fast.release(eps=1.0, delta=1e-6, law=case.law, uniforms=u)
    out["sensitivity"] = (float(ra.release.sensitivity)
                          == fa.privacy.components[0].sensitivity_value)
    Sr, Sf = _floats(ra.release.noisy), fa.release.S.numpy()
    mags = np.abs(St) + np.abs(Sr - St)  # |S~| + |Z|
    out["noisy S"] = bool(np.all(np.abs(Sf - Sr) <= REL_TOL * mags))
    ar, af = _floats(ra.query(Q)), fa.query(torch.tensor(Q)).numpy()
    feats = ra._queries(Q)  # P(q) of each query row (validated), mpf
    U = _floats(feats)
    D = np.array([float(ra.release.denominator(f)) for f in feats])
    s = np.abs(U) @ mags  # (m, d_v + 1)
    tol = REL_TOL * (np.abs(ar) + (s[:, :-1] + np.abs(ar) * s[:, -1:]) / D[:, None])
    out["answers"] = bool(np.all(np.abs(af - ar) <= tol))
    Qt = torch.tensor(Q)
    bounds = [] if case.law == "gaussian" else [(ra.error_bound(Q), fa.error_bound(Qt))]
    bounds.append((ra.hp_error_bound(Q, 0.05), fa.hp_error_bound(Qt, 0.05)))
    out["envelopes"] = all(
        bool(np.all(np.abs(f.numpy() - _floats(r)) <= REL_TOL * _floats(r))
             and np.all(f.numpy() >= _floats(r) * (1 - 1e-14))) for r, f in bounds)
    out["plan"] = "exact accumulation" in " ".join(ra.privacy.notes) and ra.privacy.total_checks()
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_conformance_with_the_fast_accumulator(case):
    verdicts = _conformance(case)
    assert all(verdicts.values()), verdicts


@pytest.mark.parametrize("shift", [(1, 0), (0, -1)], ids=["a+1", "b-1"])
def test_a_lattice_exponent_off_by_one_is_caught(monkeypatch, shift):
    """The features' (a + 1) or the values' (b - 1) lattice: the integer sums, the noisy S (by
    ~1e4 times its tolerance) and the answers all differ from the fast path's."""
    original = ref_acc.accumulator_lattice

    def finer(*args, **kw):
        M, a, b = original(*args, **kw)
        return M, a + shift[0], b + shift[1]

    monkeypatch.setattr(ref_acc, "accumulator_lattice", finer)
    verdicts = _conformance(CASES[0])
    assert not verdicts["lattice"] and not verdicts["sums"] and not verdicts["noisy S"]
    assert not verdicts["answers"]


def test_a_sensitivity_without_the_rounding_allowance_is_caught(monkeypatch):
    """analytic + conversion only (no 2 sum e): 1.3e-6 relative less noise, far above 1e-10."""
    def no_allowance(n, d, degree, R, R_w, d_v, *, scale=None, domain="box", norm="l1",
                     prec=None):
        M, a, b = ea.accumulator_lattice(d, degree, R, R_w, scale=scale, domain=domain)
        fn = sensitivity.direct_statistic_l2 if norm == "l2" else sensitivity.direct_statistic
        errors = ea.term_error_bounds(M, R_w, d_v, degree, a, b)
        return (fn(d, degree, R, R_w, d_v, scale=scale)
                + ea.conversion_error(n, M, R_w, d_v, errors, norm))

    monkeypatch.setattr(ref_acc, "released_sensitivity", no_allowance)
    for case in (CASES[0], CASES[1]):  # both laws
        verdicts = _conformance(case)
        assert not verdicts["sensitivity"] and not verdicts["noisy S"], case.name
        assert verdicts["sums"]


def test_a_sensitivity_without_the_conversion_allowance_is_caught_bit_for_bit(monkeypatch):
    """Without conversion_error the sensitivity is 4e-14 relative smaller: below the noisy S
    tolerance (it passes), caught only by the bit-for-bit sensitivity check."""
    def no_conversion(n, d, degree, R, R_w, d_v, *, scale=None, domain="box", norm="l1",
                      prec=None):
        M, a, b = ea.accumulator_lattice(d, degree, R, R_w, scale=scale, domain=domain)
        fn = sensitivity.direct_statistic_l2 if norm == "l2" else sensitivity.direct_statistic
        errors = ea.term_error_bounds(M, R_w, d_v, degree, a, b)
        return ea.rounded_statistic_sensitivity(fn(d, degree, R, R_w, d_v, scale=scale),
                                                errors, norm)

    monkeypatch.setattr(ref_acc, "released_sensitivity", no_conversion)
    verdicts = _conformance(CASES[0])
    assert not verdicts["sensitivity"] and verdicts["noisy S"]


# --- consumption and bad input -----------------------------------------------------------------

def test_consumption():
    K, V = _box(10, seed=9)
    u = np.random.default_rng(10).uniform(size=DPCrossAttention.noise_count(n=10, **_shape(P)))
    acc = Accumulator(**P).add(K, V)
    acc.release(eps=1.0, delta=1e-6, uniforms=u)
    for call in (lambda: acc.release(eps=1.0, delta=1e-6, uniforms=u), lambda: acc.add(K, V),
                 lambda: acc.merge(Accumulator(**P).add(K, V)), lambda: acc.integer_sums(),
                 lambda: Accumulator(**P).merge(acc)):
        with pytest.raises(AccumulatorError, match="already released"):
            call()
    other = Accumulator(**P).add(K, V)
    Accumulator(**P).add(K, V).merge(other)
    for call in (lambda: other.release(eps=1.0, delta=1e-6, uniforms=u), lambda: other.add(K, V),
                 lambda: Accumulator(**P).merge(other)):
        with pytest.raises(AccumulatorError, match="already merged"):
            call()
    with pytest.raises(AccumulatorError, match="no rows"):
        Accumulator(**P).release(eps=1.0, delta=1e-6, uniforms=u)
    with pytest.raises(AccumulatorError, match="itself"):
        other = Accumulator(**P).add(K, V)
        other.merge(other)
    assert issubclass(AccumulatorError, ParameterError)


def test_bad_input():
    K, V = _box(10, seed=11)
    for kw, match in (({**P, "R_w": 2.0}, "same public"), ({**P, "clip": True}, "same public"),
                      ({**P, "domain": "ball"}, "same public")):
        with pytest.raises(AccumulatorError, match=match):
            Accumulator(**P).merge(Accumulator(**kw))
    with pytest.raises(AccumulatorError, match="same public"):
        Accumulator(**P).merge(FastAccumulator(**P))
    # the tree needs its grid up front (its tests: tests/test_ref_tree_accumulator.py)
    with pytest.raises(AccumulatorError, match="grid_size"):
        Accumulator(mechanism="tree", **P)
    with pytest.raises(BoundError, match=r"\[0, R\]"):
        Accumulator(**P).add(K + 1.5, V)
    with pytest.raises(BoundError, match="R_w"):
        Accumulator(**P).add(K, V * 3)
    with pytest.raises(BoundError, match="finite"):
        Accumulator(**P).add(np.where(K > 0.5, np.nan, K), V)
    with pytest.raises(BoundError, match="l2 norm <= R"):
        Accumulator(**P, domain="ball").add(K + 1.0, V)
    with pytest.raises(ShapeError, match="d = 2"):
        Accumulator(**P).add(K[:, :1], V)
    with pytest.raises(ShapeError, match="d_v = 2"):
        Accumulator(**P).add(K, V[:, :1])
    with pytest.raises(ShapeError, match="as many rows"):
        Accumulator(**P).add(K, V[:5])
    with pytest.raises(ParameterError, match="eps"):
        Accumulator(**P).add(K, V).release(eps=-1.0, delta=1e-6)
    with pytest.raises(ParameterError, match="law"):
        Accumulator(**P).add(K, V).release(eps=1.0, delta=1e-6, law="laplace")
    with pytest.raises(UniformsError):
        Accumulator(**P).add(K, V).release(eps=1.0, delta=1e-6, uniforms=np.full(3, 0.5))
    with pytest.raises(ParameterError, match="degree"):
        Accumulator(**{**P, "degree": -1})
    # clip=True: entries clipped to the box first, exactly as clipping by hand
    clipped = Accumulator(**P, clip=True).add(K + 0.5, V)
    by_hand = Accumulator(**P).add(np.minimum(K + 0.5, 1.0), V)
    assert clipped.integer_sums() == by_hand.integer_sums()


def test_reference_envelope_carries_the_rounding_offset():
    """The reference release from rounded sums adds to each column the deterministic offset
    n sum_t |u_t| e[t][k] (``OffsetGroup``); it bounds u . (S~ - S) against 400-bit exact
    features on 50 equal rows (coherent rounding errors), and a structure without it would not
    (its deviation is far above the float slack the envelope keeps otherwise)."""
    from dpxattn.reference import kernel
    from dpxattn.reference.envelope import OffsetGroup

    n = 50
    k = [0.3141592653589793, 0.2718281828459045]
    v = [0.7777777777777777, -0.123456789012345]
    K, V = np.array([k] * n), np.array([v] * n)
    acc = Accumulator(**P).add(K, V)
    S = acc.statistic()
    from dpxattn.reference.direct import direct_noise_count

    att = acc.release(eps=1.0, delta=1e-6, uniforms=[0.5] * direct_noise_count(d=2, d_v=2,
                                                                                degree=2))
    rel = att.release
    exact_feats = [to_fraction(f) for f in kernel.features(k, 2, scale=rel.scale, prec=400)]
    W = [Fraction(x) for x in v] + [Fraction(1)]
    u = [to_fraction(x) for x in kernel.features([0.5, 0.25], 2, scale=rel.scale, prec=160)]
    (terms,) = rel.error_terms(u)
    columns = list(terms.numerators) + [terms.denominator]
    for col, groups in enumerate(columns):
        offsets = [g.bound for g in groups if isinstance(g, OffsetGroup)]
        assert len(offsets) == 1
        dev = abs(sum(ut * (S[t][col] - n * exact_feats[t] * W[col]) for t, ut in enumerate(u)))
        assert dev <= to_fraction(offsets[0])
        assert dev > Fraction(1, 10**6) * to_fraction(offsets[0])  # the offset is not vacuous
        assert dev > n * Fraction(1, 2**40)  # far above float slack: the offset is needed


def test_saved_releases_keep_the_rounding_terms(tmp_path):
    """A structure released from rounded sums keeps its rounding terms through save and load
    (fast: the lattice (a, b); reference: e[t][k]), so the envelopes after load are the same
    numbers; a load that dropped them would report the smaller envelope of ``build``."""
    from dpxattn.reference import DPCrossAttention as RefAttention

    K, V = _box(60, 5)
    Q = _box(3, 6)[0]
    u = np.random.default_rng(7).uniform(size=DPCrossAttention.noise_count(n=60, **{
        k: P[k] for k in ("d", "d_v", "degree")}))
    fast = FastAccumulator(**P).add(torch.tensor(K), torch.tensor(V)).release(
        eps=1.0, delta=1e-6, uniforms=u)
    back = DPCrossAttention.load(fast.save(tmp_path / "fast"))
    assert back.release.lattice == fast.release.lattice is not None
    Qt = torch.tensor(Q)
    assert torch.equal(back.error_bound(Qt), fast.error_bound(Qt))
    ref = Accumulator(**P).add(K, V).release(eps=1.0, delta=1e-6, uniforms=u)
    rback = RefAttention.load(ref.save(tmp_path / "ref"))
    assert rback.release.rounding == ref.release.rounding is not None
    assert rback.error_bound(Q) == ref.error_bound(Q)
    rback.release.rounding = None  # the mutant: rounding dropped on load
    assert all(a < b for a, b in zip(_floats(rback.error_bound(Q)).ravel(),
                                     _floats(ref.error_bound(Q)).ravel()))
