"""Check 6b (kernel eps_s): the fast kernel meets its certified eps_s, tightly; a wrong degree fails."""

from __future__ import annotations

from dpxattn.verification import checks_kernel as ck
from dpxattn.verification.records import CheckContext

CASES = (ck.KernelCase(2, 1.0, 2), ck.KernelCase(3, 2.0, 9))


def test_kernel_records_pass_and_are_tight(seed):
    records = ck.kernel_records(CASES, seed, 500)
    assert len(records) == 3 * len(CASES) and all(r.passed for r in records)
    attained = [r for r in records if r.name.startswith("certified eps_s is attained")]
    assert all(r.statistic <= ck.ATTAINED_RTOL for r in attained)


def test_wrong_degree_is_caught(seed):
    records = ck.kernel_records(CASES, seed, 500, wrong_degree=True)
    assert records and not any(r.passed for r in records)


def test_check_kernel_quick(seed):
    records = ck.check_kernel(CheckContext(level="quick", seed=seed))
    assert all(r.passed for r in records), [r.name for r in records if not r.passed]
    assert records[-1].kind == "power" and records[-1].beta == 0.0
    assert sum(r.false_failure_rate() for r in records) == 0.0


def test_wrong_degree_escape_is_deterministic():
    beta, terms = ck.wrong_degree_escape([c for c in ck.KERNEL_CASES if c.degree > 0])
    assert beta == 0.0
    assert all(m["corner_error"] > m["limit"] for m in terms["cases"].values())
    # the same computation at the right degree stays below the limit (the rule can say 1)
    right = ck.measure_kernel(ck.KernelCase(3, 2.0, 9), 1, 10)
    assert right["at_t_max"] <= terms["cases"]["d=3, R=2, s=9"]["limit"]
