"""From embeddings to the mechanism's domain: public projections, domain maps and the
degree helper (fast/projection.py, fast/domain_map.py, fast/degree_choice.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from dpxattn.errors import BoundError, ParameterError, ShapeError
from dpxattn.fast import (BoxMap, DPCrossAttention, choose_degree, certified_kernel_error,
                          fit_pca, random_projection, to_ball)
from dpxattn.fast.validation import check_ball_rows, check_range
from dpxattn.reference import ball as ref_ball
from dpxattn.reference import kernel as ref_kernel


def _unit_rows(n, D, seed):
    X = torch.randn((n, D), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return X / torch.linalg.vector_norm(X, dim=1, keepdim=True)


# --- projections ------------------------------------------------------------------------------

@pytest.mark.parametrize("D,d", [(1, 1), (7, 3), (384, 16), (50, 50)])
def test_random_projection_orthonormal(D, d):
    P = random_projection(D, d, generator=torch.Generator().manual_seed(3))
    W = P.matrix
    assert W.shape == (D, d) and P.dims == (D, d)
    assert torch.allclose(W.T @ W, torch.eye(d, dtype=torch.float64), atol=1e-12)
    assert P.mean.abs().max() == 0
    X = _unit_rows(20, D, 1)
    assert (torch.linalg.vector_norm(P(X), dim=1) <= 1 + 1e-12).all()  # a contraction


def test_random_projection_deterministic_by_seed():
    a = random_projection(30, 4, generator=torch.Generator().manual_seed(11)).matrix
    b = random_projection(30, 4, generator=torch.Generator().manual_seed(11)).matrix
    c = random_projection(30, 4, generator=torch.Generator().manual_seed(12)).matrix
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    s1, s2 = random_projection(30, 4).matrix, random_projection(30, 4).matrix  # OS seeds
    assert not torch.allclose(s1, s2)
    assert torch.allclose(s1.T @ s1, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_projection_bad_arguments():
    with pytest.raises(ParameterError, match="d"):
        random_projection(3, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ParameterError, match="generator"):
        random_projection(3, 2, generator=0)
    with pytest.raises(ShapeError, match="at least d"):
        fit_pca(torch.zeros((2, 5), dtype=torch.float64), 3)
    P = random_projection(5, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ShapeError, match="D = 5"):
        P(torch.zeros((1, 4)))
    with pytest.raises(ParameterError, match="finite"):
        P(torch.full((1, 5), float("nan")))


def test_pca_recovers_planted_directions_from_the_public_sample():
    g = torch.Generator().manual_seed(5)
    D = 12
    basis, _ = torch.linalg.qr(torch.randn((D, 2), generator=g, dtype=torch.float64))
    coeff = torch.randn((400, 2), generator=g, dtype=torch.float64) * torch.tensor([5.0, 3.0])
    public = coeff @ basis.T + 0.01 * torch.randn((400, D), generator=g, dtype=torch.float64) + 2.0
    P = fit_pca(public, 2)
    assert P.kind == "pca" and 0.99 < P.explained <= 1.0
    assert torch.allclose(P.mean, public.mean(dim=0))
    assert torch.allclose(P.matrix.T @ P.matrix, torch.eye(2, dtype=torch.float64), atol=1e-12)
    # same span as the planted plane: the projector onto it is recovered
    assert torch.allclose(P.matrix @ P.matrix.T, basis @ basis.T, atol=1e-3)
    # deterministic (sign-fixed)
    assert torch.equal(fit_pca(public, 2).matrix, P.matrix)


def test_pca_depends_on_the_public_sample_only():
    """The fitted map is fixed before any private row exists and acts row by row: applying it
    to two private sets that differ in one row changes that row's image only."""
    public = _unit_rows(200, 10, 0)
    P = fit_pca(public, 3)
    before = P.matrix.clone()
    K = _unit_rows(30, 10, 1)
    K2 = K.clone()
    K2[7] = _unit_rows(1, 10, 2)[0]
    A, B = P(K), P(K2)
    assert torch.equal(P.matrix, before)
    changed = (A != B).any(dim=1)
    assert changed.tolist() == [i == 7 for i in range(30)]
    assert torch.allclose(A[3:4], P(K[3:4]))  # one row alone gives the same image


# --- domain maps ------------------------------------------------------------------------------

@pytest.mark.parametrize("R", [1.0, 0.7, 3.0])
def test_to_ball_normalize_norms_in_bounds(R):
    X = torch.randn((500, 8), generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3
    X[4] = 0.0
    Y = to_ball(X, R)
    check_ball_rows(Y, "Y", R)  # exact test, no clip: raises if any row is outside
    norms = torch.linalg.vector_norm(Y, dim=1)
    assert norms[4] == 0
    keep = torch.arange(500) != 4
    assert torch.allclose(norms[keep], torch.full((499,), R, dtype=torch.float64), rtol=1e-12)
    cos = torch.nn.functional.cosine_similarity(X[keep], Y[keep], dim=1)
    assert torch.allclose(cos, torch.ones(499, dtype=torch.float64))


def test_to_ball_clip_mode_is_per_record():
    X = torch.tensor([[0.1, 0.2], [3.0, 4.0], [0.0, -0.5]], dtype=torch.float64)
    Y = to_ball(X, 1.0, normalize=False, input_scale=2.0)
    assert torch.equal(Y[0], 2 * X[0]) and torch.equal(Y[2], 2 * X[2])  # inside: scaled only
    assert float(torch.linalg.vector_norm(Y[1])) <= 1.0
    assert torch.allclose(Y[1], torch.tensor([0.6, 0.8], dtype=torch.float64))
    check_ball_rows(Y, "Y", 1.0)
    with pytest.raises(ParameterError, match="input_scale"):
        to_ball(X, 1.0, normalize=False, input_scale=0)
    with pytest.raises(ParameterError, match="R"):
        to_ball(X, -1.0)


def test_box_map_from_norm_bound_is_sure_and_affine():
    P = random_projection(40, 6, generator=torch.Generator().manual_seed(9))
    Z = P(_unit_rows(300, 40, 4))
    m = BoxMap.from_norm_bound(6, 1.0, 2.0)
    Y = m(Z)
    check_range(Y, "Y", 0, 2.0, "[0, R]")  # exact, no clip
    assert torch.allclose(Y, (Z + 1.0) / 2.0 * 2.0, rtol=0, atol=1e-15)  # no clip acted


def test_box_map_from_public_sample_clips_outside():
    public = torch.tensor([[0.0, -1.0], [1.0, 1.0], [0.5, 0.0]], dtype=torch.float64)
    m = BoxMap.from_public_sample(public, 1.0)
    Y = m(torch.tensor([[0.5, 0.0], [2.0, -3.0]], dtype=torch.float64))
    assert torch.equal(Y, torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ParameterError, match="hi"):
        BoxMap(torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), 1.0)
    with pytest.raises(ParameterError, match="quantile"):
        BoxMap.from_public_sample(public, 1.0, quantile=0.5)


# --- the degree helper against the reference --------------------------------------------------

def _ref_ball_admissible(s, R, scale):
    try:
        ref_ball.ball_kernel_floor(s, R, scale=scale)
        return True
    except ParameterError:
        return False


@pytest.mark.parametrize("target,R,scale", [(0.05, 1, 1), (0.05, 1, 2), (1e-3, 1, 1),
                                            (0.2, Fraction(3, 2), Fraction(1, 2))])
def test_choose_degree_ball_matches_reference(target, R, scale):
    c = choose_degree(target, R=R, d=8, scale=scale, domain="ball")
    a = ref_ball.logit_bound(R, scale)
    assert c.domain == "ball" and c.logit_max == pytest.approx(float(a))
    assert _ref_ball_admissible(c.degree, R, scale)
    assert ref_kernel.certified_eps_s_logits(a, c.degree) <= target
    assert c.eps_s >= float(ref_kernel.certified_eps_s_logits(a, c.degree))  # rounded up
    assert c.r == len(ref_kernel.multi_indices(8, c.degree))
    for s in range(c.degree):  # every smaller admissible degree misses the target
        if _ref_ball_admissible(s, R, scale):
            assert ref_kernel.certified_eps_s_logits(a, s) > target


def test_choose_degree_ball_skips_refused_odd_degrees_and_even_only():
    # scale 2: s = 3 has T_3(-2) < 0 (refused by the ball), s = 5 is admissible
    with pytest.raises(ParameterError, match="degree"):
        certified_kernel_error(3, R=1, d=4, scale=2, domain="ball")
    assert choose_degree(0.6, R=1, d=4, scale=2).degree == 5
    assert choose_degree(0.6, R=1, d=4, scale=2, even_only=True).degree == 6


@pytest.mark.parametrize("target,R,d", [(0.05, 1, 4), (1e-4, 1, 8), (0.1, 2, 3)])
def test_choose_degree_box_matches_reference(target, R, d):
    c = choose_degree(target, R=R, d=d, domain="box")
    assert c.degree == ref_kernel.select_degree(target, R, d)
    assert c.logit_max == pytest.approx(R ** 2)  # scale 1/d: t_max = R^2


def test_choose_degree_unreachable_and_max_r():
    with pytest.raises(ParameterError, match="eps_s_target"):
        choose_degree(1e-9, R=1, d=8, scale=4, max_degree=6)
    with pytest.raises(ParameterError, match="r <= 100"):
        choose_degree(1e-3, R=1, d=8, scale=1, max_r=100)
    with pytest.raises(ParameterError, match="domain"):
        certified_kernel_error(2, R=1, d=2, domain="sphere")


def test_pipeline_feeds_build_within_its_bounds():
    """Projection -> to_ball -> build(domain='ball') and BoxMap -> build(domain='box'): the
    mapped rows pass build's exact bound checks without clip."""
    g = torch.Generator().manual_seed(0)
    E = _unit_rows(64, 24, 7)
    P = fit_pca(_unit_rows(50, 24, 8), 3)  # a separate, public sample
    c = choose_degree(0.05, R=1, d=3, scale=1)
    V = torch.sign(torch.randn((64, 2), generator=g, dtype=torch.float64))
    att = DPCrossAttention.build(to_ball(P(E), 1), V, eps=1.0, delta=1e-6, R=1, R_w=1,
                                 degree=c.degree, domain="ball", generator=g, noise="float")
    assert att.query(to_ball(P(E[:5]), 1)).shape == (5, 2)
    box = BoxMap.from_norm_bound(3, 1.0 + P.center_norm(), 1.0)
    att2 = DPCrossAttention.build(box(P(E)), V, eps=1.0, delta=1e-6, R=1, R_w=1, degree=2,
                                  generator=g, noise="float")
    assert att2.query(box(P(E[:5]))).shape == (5, 2)
    with pytest.raises(BoundError):
        DPCrossAttention.build(2 * to_ball(P(E), 1), V, eps=1.0, delta=1e-6, R=1, R_w=1,
                               degree=c.degree, domain="ball", generator=g, noise="float")


def test_public_maps_are_stated_in_the_plan(tmp_path):
    """build(public_maps=[...]) records the caller's public maps in the plan (to_dict and str)
    without changing a share or a released number; the default plan has none."""
    E = _unit_rows(40, 24, 3)
    P = fit_pca(_unit_rows(50, 24, 4), 3)
    V = torch.sign(torch.randn((40, 2), generator=torch.Generator().manual_seed(1),
                               dtype=torch.float64))
    kw = dict(eps=1.0, delta=1e-6, R=1, R_w=1, degree=2, domain="ball", noise="float")
    maps = [P.describe("50 declared-public rows"), "to_ball(R = 1): x -> x / ||x||"]
    plain = DPCrossAttention.build(to_ball(P(E), 1), V, generator=torch.Generator().manual_seed(5),
                                   **kw)
    att = DPCrossAttention.build(to_ball(P(E), 1), V, generator=torch.Generator().manual_seed(5),
                                 public_maps=maps, **kw)
    assert torch.equal(att.release.S, plain.release.S)
    assert plain.privacy.public_maps == () and plain.privacy.to_dict()["public_maps"] == []
    assert att.privacy.public_maps == tuple(maps)
    assert att.privacy.to_dict()["public_maps"] == maps
    assert att.privacy.components == plain.privacy.components
    assert att.privacy.total() == plain.privacy.total()
    text = str(att.privacy)
    assert "never on the private set" in text and "PCA 24 -> 3 fitted on 50 declared" in text
    assert "public maps" not in str(plain.privacy)
    path = tmp_path / "mapped.npz"
    att.save(path)
    assert DPCrossAttention.load(path).privacy.to_dict() == att.privacy.to_dict()
    box = BoxMap.from_norm_bound(3, 1.0 + P.center_norm(), 1.0)
    assert "bounds from the norm bound" in box.describe("the norm bound")
    assert "random orthogonal projection 24 -> 3" in random_projection(
        24, 3, generator=torch.Generator().manual_seed(0)).describe()


@pytest.mark.parametrize("bad", ["PCA on public rows", ["ok", ""], [3], {"a": 1}, ["  "]])
def test_public_maps_bad_input_names_the_argument(bad):
    E = to_ball(_unit_rows(10, 3, 2), 1)
    V = torch.ones((10, 1), dtype=torch.float64)
    with pytest.raises(ParameterError, match="public_maps"):
        DPCrossAttention.build(E, V, eps=1.0, delta=1e-6, R=1, R_w=1, degree=2, domain="ball",
                               generator=torch.Generator().manual_seed(0), noise="float",
                               public_maps=bad)
