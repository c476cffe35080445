"""The list of checks the harness runs, in report order (note 20).

Each entry names a check function ``fn(ctx) -> list[CheckRecord]`` by module and attribute, and
the levels that run it. Modules are imported only when their check runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

__all__ = ["CheckSpec", "CHECKS", "load"]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    module: str  # e.g. "dpxattn.verification.checks_noise"
    function: str
    levels: tuple[str, ...] = ("quick", "standard", "full")
    summary: str = ""


#: in report order; each helper adds its own lines
CHECKS: list[CheckSpec] = [
    # check 1: noise distributions
    CheckSpec("noise-distribution", "dpxattn.verification.checks_noise", "check_noise",
              summary="fast TLap sampler vs the exact law: KS, chi-square, moments, support, "
                      "delta region (alpha 1e-6 each); power vs scale x0.7 / x1.3 with beta "
                      "from the mutants' exact laws"),
    CheckSpec("secure-noise-distribution", "dpxattn.verification.checks_secure_noise", "check_secure_noise", summary="hardened (secure-mode) sampler vs the exact discrete truncated Laplace: chi-square, moments, support, delta region, far tail, tape conformance; power vs t x0.7 / x1.3 / x0.5 with beta from the mutants' exact laws"),
    CheckSpec("gaussian-noise-distribution", "dpxattn.verification.checks_gaussian_noise",
              "check_gaussian_noise",
              summary="float N(0, sigma^2) and exact discrete N_Z(0, sigma^2) samplers vs their exact "
                      "laws: KS, chi-square, moments (alpha 1e-6 each); power vs sigma x0.7 / x1.3 with "
                      "beta from the mutants' exact laws; quantile and tape conformance"),
    # check 2: tree noise
    CheckSpec("tree-noise", "dpxattn.verification.checks_tree", "check_tree",
              summary="DPTree node noise per level vs the exact variance, range-query error = "
                      "sum of canonical node noises, repeated queries bit-identical"),
    # check 3: sensitivity search
    CheckSpec("sensitivity", "dpxattn.verification.checks_sensitivity", "check_sensitivity",
              summary="adversarial search (corners, boundary-biased random, scipy optimiser) for "
                      "the neighbours maximising each released quantity's change: never above "
                      "the analytic sensitivity; tightness; power on the sorted-keys listing"),
    CheckSpec("sensitivity-l2", "dpxattn.verification.checks_sensitivity_l2",
              "check_sensitivity_l2",
              summary="search (structured, random, scipy optimiser) for the neighbours moving a "
                      "whole release most in l2 (direct box and ball, tree): never above the l2 "
                      "sensitivity the Gaussian law is calibrated to; power: the attained value "
                      "is reached, so a 30% understatement is caught"),
    # check 4: empirical privacy audit
    CheckSpec("privacy-audit", "dpxattn.verification.checks_privacy", "check_privacy",
              summary="Clopper-Pearson eps lower bounds on worst-case neighbours: the real "
                      "mechanisms stay <= their claimed eps, every planted mutant (noise x0.5, "
                      "exact denominator, exact c0/c1, sorted keys) is exposed (beta from an "
                      "event fixed in advance from the mutant's exact law)"),
    CheckSpec("gaussian-privacy-audit", "dpxattn.verification.checks_gaussian_privacy",
              "check_gaussian_privacy",
              summary="Clopper-Pearson eps lower bound of direct with law='gaussian' on its attained "
                      "worst pair stays <= the claim; the sigma x0.5 mutant is exposed (beta from a "
                      "fixed event of its exact law); the batched draws are the real build"),
    # check 5: adaptive queries
    CheckSpec("adaptive-queries", "dpxattn.verification.checks_adaptive", "check_adaptive",
              summary="random, eps0-net and gradient-ascent queries never exceed the sure "
                      "envelope; the high-probability bound holds at its failure rate (binomial, "
                      "alpha 1e-6); power: an over-optimistic bound is rejected"),
    # check 6: conformance (verification/conformance.py) and the kernel
    CheckSpec("conformance", "dpxattn.verification.conformance", "check_conformance",
              summary="fast (torch float64) vs exact reference from shared uniforms over the "
                      "DESIGN §6 table; envelopes contain the Taylor attention; determinism"),
    CheckSpec("kernel-eps-s", "dpxattn.verification.checks_kernel", "check_kernel",
              summary="fast polynomial kernel's measured relative error vs the reference's "
                      "certified eps_s (attained at t_max); Taylor vs softmax attention gap"),
    # check 7: utility
    CheckSpec("utility", "dpxattn.verification.checks_utility", "check_utility",
              summary="privacy-utility on a retrieval task: error falls with eps and n and direct "
                      "beats tree (exact sign tests over independent builds, alpha 1e-6), "
                      "certified and high-probability envelopes, retrieval; slopes and the R "
                      "trade-off as info figures"),
    CheckSpec("realtext-utility", "dpxattn.verification.checks_realtext", "check_realtext",
              summary="the real-text task's shape, generated (8 themes on the 8-dim sphere, "
                      "n = 3000, 400 queries): direct/ball/gaussian at eps = 1 within 2 points "
                      "of the noiseless Taylor top-1 in the median build (exact sign test over "
                      "40/60 independent builds, alpha 1e-6); the TLap law beside it (info)"),
    # the hardened noise (note 23): floating-point attack and timing
    CheckSpec("float-attack", "dpxattn.verification.checks_float_attack", "check_float_attack",
              summary="bit-pattern attack: the exact classifier exposes the float64 path on an "
                      "enumerable uniform grid (beta from its exact law), not the hardened "
                      "lattice release (audit, alpha 1e-6); a trained classifier as an info figure"),
    CheckSpec("noise-timing", "dpxattn.verification.checks_timing", "check_timing",
              summary="hardened release time on neighbouring inputs: exact KS and Serfling rank-sum "
                      "tests (alpha 1e-5 each), valid under any load by random interleaving; "
                      "power vs a data-dependent rounding mutant in the tests"),
]


def load(spec: CheckSpec) -> Callable:
    return getattr(importlib.import_module(spec.module), spec.function)
