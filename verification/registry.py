"""The list of checks the harness runs, in report order (note 20).

Each entry names a check function ``fn(ctx) -> list[CheckRecord]`` by module and attribute, and
the levels that run it. Modules are imported only when their check runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

__all__ = ["REACHES", "CheckSpec", "CHECKS", "load"]


#: how a check reaches the implementation under test (note 29, "Which checks run for a target"):
#: ``"protocol"``: it builds, queries and reads the target only through the target protocol
#: (``verification.target.build_target``), so it runs for any target; ``"reference"``: it checks
#: the exact reference's proven constants (sensitivities), the bounds every target's noise is
#: calibrated to, so it runs whatever the target; ``"internals"``: it tests a part of dpxattn's
#: fast path below the protocol (a sampler, the kernel, the timing of a release, planted
#: mutants of its internals), so it runs only when the target is dpxattn's own fast path and is
#: reported as not applicable, with its ``why`` and its protocol counterpart, for any other
REACHES = ("protocol", "reference", "internals")


@dataclass(frozen=True)
class CheckSpec:
    name: str
    module: str  # e.g. "dpxattn.verification.checks_noise"
    function: str
    levels: tuple[str, ...] = ("quick", "standard", "full")
    summary: str = ""
    reaches: str = "internals"  # one of REACHES
    why: str = ""  # for "internals": what it reaches below the protocol, and the counterpart
    seed_path: tuple[str, ...] = ()  # the check's seed is derive_seed(root, *seed_path) if set

    def __post_init__(self) -> None:
        if self.reaches not in REACHES:
            raise ValueError(f"CheckSpec {self.name!r}: reaches must be one of {REACHES} "
                             f"(got {self.reaches!r})")

    def applies_to(self, own: bool) -> bool:
        """Whether the check runs for the target (``own``: dpxattn's own fast path)."""
        return own or self.reaches != "internals"


#: in report order; each helper adds its own lines
CHECKS: list[CheckSpec] = [
    # check 1: noise distributions
    CheckSpec("noise-distribution", "dpxattn.verification.checks_noise", "check_noise",
              summary="fast TLap sampler vs the exact law: KS, chi-square, moments, support, "
                      "delta region (alpha 1e-6 each); power vs scale x0.7 / x1.3 with beta "
                      "from the mutants' exact laws",
              reaches="internals",
              why="it draws 1e5+ samples from dpxattn's float TLap sampler function itself (and checks its delta region), below any release; for a target, its recovered noise is checked by target-noise-law"),
    CheckSpec("secure-noise-distribution", "dpxattn.verification.checks_secure_noise", "check_secure_noise", summary="hardened (secure-mode) sampler vs the exact discrete truncated Laplace: chi-square, moments, support, delta region, far tail, tape conformance; power vs t x0.7 / x1.3 / x0.5 with beta from the mutants' exact laws",
              reaches="internals",
              why="it reads the hardened sampler's CSPRNG tape and integer lattice, which no released number shows; for a target: target-noise-law"),
    CheckSpec("gaussian-noise-distribution", "dpxattn.verification.checks_gaussian_noise",
              "check_gaussian_noise",
              summary="float N(0, sigma^2) and exact discrete N_Z(0, sigma^2) samplers vs their exact "
                      "laws: KS, chi-square, moments (alpha 1e-6 each); power vs sigma x0.7 / x1.3 with "
                      "beta from the mutants' exact laws; quantile and tape conformance",
              reaches="internals",
              why="it tests dpxattn's float and discrete Gaussian sampler functions and their tapes directly; for a target: target-noise-law"),
    # check 2: tree noise
    CheckSpec("tree-noise", "dpxattn.verification.checks_tree", "check_tree",
              summary="DPTree node noise per level vs the exact variance, range-query error = "
                      "sum of canonical node noises, repeated queries bit-identical",
              reaches="internals",
              why="it reads the fast tree's node layout through dpxattn.fast.tree.range_sums; for a target: target-noise-law [tree] (every node's recovered noise)"),
    # check 3: sensitivity search
    CheckSpec("sensitivity", "dpxattn.verification.checks_sensitivity", "check_sensitivity",
              summary="adversarial search (corners, boundary-biased random, scipy optimiser) for "
                      "the neighbours maximising each released quantity's change: never above "
                      "the analytic sensitivity; tightness; power on the sorted-keys listing",
              reaches="reference"),
    CheckSpec("sensitivity-l2", "dpxattn.verification.checks_sensitivity_l2",
              "check_sensitivity_l2",
              summary="search (structured, random, scipy optimiser) for the neighbours moving a "
                      "whole release most in l2 (direct box and ball, tree): never above the l2 "
                      "sensitivity the Gaussian law is calibrated to; power: the attained value "
                      "is reached, so a 30% understatement is caught",
              reaches="reference"),
    # check 4: empirical privacy audit
    CheckSpec("privacy-audit", "dpxattn.verification.checks_privacy", "check_privacy",
              summary="Clopper-Pearson eps lower bounds on worst-case neighbours: the real "
                      "mechanisms stay <= their claimed eps, every planted mutant (noise x0.5, "
                      "exact denominator, exact c0/c1, sorted keys) is exposed (beta from an "
                      "event fixed in advance from the mutant's exact law)",
              reaches="internals",
              why="its 1e6 draws per side are batched from dpxattn's samplers and its mutants patch dpxattn's internals; for a target: target-audit (the same Clopper-Pearson bound on its own builds)"),
    CheckSpec("gaussian-privacy-audit", "dpxattn.verification.checks_gaussian_privacy",
              "check_gaussian_privacy",
              summary="Clopper-Pearson eps lower bound of direct with law='gaussian' on its attained "
                      "worst pair stays <= the claim; the sigma x0.5 mutant is exposed (beta from a "
                      "fixed event of its exact law); the batched draws are the real build",
              reaches="internals",
              why="its draws are batched from dpxattn's Gaussian sampler and its mutant scales dpxattn's sigma; for a target: target-audit"),
    # check 5: adaptive queries
    CheckSpec("adaptive-queries", "dpxattn.verification.checks_adaptive", "check_adaptive",
              summary="random, eps0-net and gradient-ascent queries never exceed the sure "
                      "envelope; the high-probability bound holds at its failure rate (binomial, "
                      "alpha 1e-6); power: an over-optimistic bound is rejected",
              reaches="internals",
              why="its gradient ascent differentiates dpxattn's query with torch autograd, which the protocol does not offer; for a target: target-adaptive (random, grid and extreme-uniform queries against its own error_bound)"),
    # check 6: conformance (verification/conformance.py) and the kernel
    CheckSpec("conformance", "dpxattn.verification.conformance", "check_conformance",
              summary="fast (torch float64) vs exact reference from shared uniforms over the "
                      "DESIGN §6 table; envelopes contain the Taylor attention; determinism",
              reaches="internals",
              why="it compares against dpxattn's proven float-evaluation envelope, computed from the fast path's internal allowances; for a target: target-conformance (the same table's inputs within the float64 tolerance of note 29)"),
    CheckSpec("kernel-eps-s", "dpxattn.verification.checks_kernel", "check_kernel",
              summary="fast polynomial kernel's measured relative error vs the reference's "
                      "certified eps_s (attained at t_max); Taylor vs softmax attention gap",
              reaches="internals",
              why="it measures dpxattn's fast polynomial-kernel function against the certified eps_s; the protocol releases numbers, not kernels"),
    # check 7: utility
    CheckSpec("utility", "dpxattn.verification.checks_utility", "check_utility",
              summary="privacy-utility on a retrieval task: error falls with eps and n and direct "
                      "beats tree (exact sign tests over independent builds, alpha 1e-6), "
                      "certified and high-probability envelopes, retrieval; slopes and the R "
                      "trade-off as info figures",
              reaches="protocol"),
    CheckSpec("realtext-utility", "dpxattn.verification.checks_realtext", "check_realtext",
              summary="the real-text task's shape, generated (8 themes on the 8-dim sphere, "
                      "n = 3000, 400 queries): direct/ball/gaussian at eps = 1 within 2 points "
                      "of the noiseless Taylor top-1 in the median build (exact sign test over "
                      "40/60 independent builds, alpha 1e-6); the TLap law beside it (info)",
              reaches="protocol"),
    # the hardened noise (note 23): floating-point attack and timing
    CheckSpec("float-attack", "dpxattn.verification.checks_float_attack", "check_float_attack",
              summary="bit-pattern attack: the exact classifier exposes the float64 path on an "
                      "enumerable uniform grid (beta from its exact law), not the hardened "
                      "lattice release (audit, alpha 1e-6); a trained classifier as an info figure",
              reaches="internals",
              why="it attacks the bit patterns of dpxattn's own float64 and lattice samplers on an enumerable uniform grid"),
    CheckSpec("noise-timing", "dpxattn.verification.checks_timing", "check_timing",
              summary="hardened release time on neighbouring inputs: exact KS and Serfling rank-sum "
                      "tests (alpha 1e-5 each), valid under any load by random interleaving; "
                      "power vs a data-dependent rounding mutant in the tests",
              reaches="internals",
              why="it times dpxattn's hardened release on neighbouring inputs; a target's timing is outside the protocol"),
    # the target protocol's own checks (note 29): through the protocol, for any target
    CheckSpec("target-conformance", "dpxattn.verification.checks_target", "target_conformance",
              summary="released numbers and answers from shared uniforms vs the exact reference "
                      "(DESIGN §6 cases, the float64 tolerance of note 29)",
              reaches="protocol", seed_path=("target", "target-conformance")),
    CheckSpec("target-noiseless", "dpxattn.verification.checks_target", "target_noiseless",
              summary="at uniforms 1/2 the release is the exact statistic and the answers the "
                      "noiseless ones", reaches="protocol", seed_path=("target", "target-noiseless")),
    CheckSpec("target-noise-law", "dpxattn.verification.checks_target", "target_noise_law",
              summary="recovered noise per entry and pooled vs the exact law (KS, chi-square, "
                      "alpha 1e-6); support; power vs x0.7 / x1.3 (beta from the exact law)",
              reaches="protocol", seed_path=("target", "statistical")),
    CheckSpec("target-sensitivity", "dpxattn.verification.checks_target", "target_sensitivity",
              summary="l1 change of the noiseless release over corner pairs <= the reference's "
                      "sensitivity, per component", reaches="protocol",
              seed_path=("target", "statistical")),
    CheckSpec("target-audit", "dpxattn.verification.checks_target", "target_audit",
              summary="empirical eps lower bound of released numbers and answers on the worst "
                      "pair <= eps", reaches="protocol", seed_path=("target", "statistical")),
    CheckSpec("target-adaptive", "dpxattn.verification.checks_target", "target_adaptive",
              summary="random, grid and extreme-uniform queries never exceed the target's own "
                      "error_bound", reaches="protocol", seed_path=("target", "target-adaptive")),
]


def load(spec: CheckSpec) -> Callable:
    return getattr(importlib.import_module(spec.module), spec.function)
