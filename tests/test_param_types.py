"""Privacy and bound parameters are real numbers only: strings and other types are refused with a
ParameterError naming the parameter, in the reference and the fast path alike (params.check_real)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch

from dpxattn.errors import ParameterError
from dpxattn.fast import DPCrossAttention
from dpxattn.fast.noise import truncated_laplace
from dpxattn.params import check_delta, check_eps, check_positive, check_real
from dpxattn.reference import DPCrossAttention as RefDPCrossAttention
from dpxattn.reference import truncated_laplace as tl

NOT_REAL = ["1", "1e-6", b"1", Decimal("0.5"), 1 + 0j, True, None, [1.0], np.array([0.5]),
            torch.tensor([0.5]), np.array("1"), torch.tensor(True), np.bool_(True)]
REAL = [1, 0.5, Fraction(1, 3), mpmath.mpf("0.25"), np.float32(0.5), np.int64(2),
        np.array(0.5), torch.tensor(0.5)]

BASE = dict(eps=1.0, delta=1e-6, R=1.0, R_w=1.0, degree=2)
K = np.array([[0.1, 0.2], [0.3, 0.4], [0.9, 0.0]])
V = np.array([[0.5], [-0.5], [0.25]])


@pytest.mark.parametrize("value", NOT_REAL, ids=repr)
def test_check_real_refuses_non_reals(value):
    with pytest.raises(ParameterError, match=r"^R must be a real number"):
        check_real("R", value)
    with pytest.raises(ParameterError, match=r"^eps must be a real number|^eps must be"):
        check_eps(value)


@pytest.mark.parametrize("value", REAL, ids=repr)
def test_real_numbers_are_accepted(value):
    assert check_positive("R", value) is value
    assert float(check_real("R", value)) == float(value)


def test_exact_delta_boundary_kept():
    assert check_delta(Fraction(1, 2)) == Fraction(1, 2)
    with pytest.raises(ParameterError, match="delta must satisfy"):
        check_delta(Fraction(1, 2) + Fraction(1, 10**30))


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("name, value", [("eps", "1"), ("delta", "1e-6"), ("R", "1"), ("R_w", "1"),
                                         ("scale", "0.5"), ("eps", Decimal(1)), ("R", 1j)])
def test_build_refuses_string_parameters(impl, name, value):
    kw = dict(BASE, **{name: value})
    with pytest.raises(ParameterError, match=rf"^{name} must be a real number"):
        if impl == "fast":
            DPCrossAttention.build(torch.tensor(K), torch.tensor(V),
                                   generator=torch.Generator().manual_seed(0), **kw)
        else:
            RefDPCrossAttention.build(K, V, generator=np.random.default_rng(0), **kw)


@pytest.mark.parametrize("position", range(3))
def test_noise_laws_refuse_string_parameters(position):
    args = [1.0, 1.0, 1e-6]
    args[position] = "1"
    with pytest.raises(ParameterError, match="must be a real number"):
        truncated_laplace((3,), *args, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ParameterError, match="must be a real number"):
        tl.support_bound(*args)
    with pytest.raises(ParameterError, match="must be a real number"):
        tl.hockey_stick("1", 1.0, 1.0, 1.0, 1e-6) if position == 0 else \
            tl.hockey_stick(1.0, "1", 1.0, 1.0, 1e-6)


def test_failure_probability_refuses_strings():
    att = DPCrossAttention.build(torch.tensor(K), torch.tensor(V),
                                 generator=torch.Generator().manual_seed(0), **BASE)
    Q = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    with pytest.raises(ParameterError, match="failure_prob must be a real number"):
        att.hp_error_bound(Q, "0.01")
    assert torch.equal(att.hp_error_bound(Q, torch.tensor(0.01, dtype=torch.float64)),
                       att.hp_error_bound(Q, 0.01))


@pytest.mark.parametrize("name", ["delta", "confidence"])
def test_the_audit_refuses_string_parameters(name):
    from dpxattn.verification.audit import audit

    a = np.random.default_rng(0).laplace(size=2000)
    kw = {"delta": 1e-6, "confidence": 0.95, name: "0.5"}
    with pytest.raises(ParameterError, match=rf"^{name} must be a real number"):
        audit(a, a + 1, rng=np.random.default_rng(1), **kw)
