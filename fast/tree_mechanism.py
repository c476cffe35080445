"""The ``tree`` mechanism in torch: the paper's structure in its sound reading.

Paper: DPTreeSoftmax (law of cosines over DPTreeHighDim of DPTreeDistance, p = 2) and
DPTreeCrossAttention with the privatized denominator and optional median of copies (v2 §3,
App. D-I); spec PAPER.md §3.2-3.7 and §5 items 5-7. Exact counterpart:
``dpxattn.reference.dptree_softmax``; conventions ``proofs_notes/01-conventions.md`` (mechanism
``tree``); fast-path numerics ``proofs_notes/19-fast-path.md``.

Released, per copy c = 0..l-1 and column k = 0..d_v (k = d_v: the denominator, weight 1):

* scalars ``c0 = sum_i w_i`` and ``c1 = sum_i w_i ||P(k_i)||^2`` plus TLap (sensitivities
  ``2 W_k`` and ``2 W_k T_s(t_max)``, budgets ``plan.share("c0")``, ``plan.share("c1")``);
* for each coordinate t and moment m in (0, 1, 2) a DPTree over the public grid of G cells on
  ``[0, M_t]``: leaf g holds ``sum_{cell(P_t(k_i)) = g} w_i P_t(k_i)^m``; every one of the 2N - 1
  nodes gets TLap(2 W_k M_t^m, plan.share("tree_level")).

Gaussian law (``build(gaussian=(sigma, Delta_2), noise_weights=)``, float mode;
``proofs_notes/26-tree-gaussian.md``): the same sums, each group g (c0, c1, tree (t, m)) scaled
by mu_g = 2^-e, then ``sigma Phi^-1(u)`` from the same uniform in the same order (one
:class:`dpxattn.fast.release.GaussianLaw` over the scalars (l, d_v + 1, 2) and one over the
nodes (l, d_v + 1, r, 3), both the reference's sigma for the l2 sensitivity of the scaled
release, rounded up), then scaled back by lambda_g = 2^e: group g's noise is lambda_g sigma
Phi^-1(u), exactly; the constant feature's trees are withheld (mu = lambda = 0: released as 0).

Memory layout (not the uniform order): one float64 payload ``(2N - 1, r, l, d_v + 1, 3)``, so the
rows of its 2-D view ``((2N - 1) r, l (d_v + 1) 3)`` are (node, coordinate) pairs and a query's
gather for one coordinate reads contiguous rows. Build: leaves by ``index_add_`` of chunks of
keys straight into the payload (copy 0), internal nodes level by level in place, copies
replicated, then noise added in place through :func:`dpxattn.fast.release.release_` on the
permuted view ``(node, copy, column, coordinate, moment)``, whose row-major order IS the
documented uniform order. Peak memory: the payload plus one chunk.

Query (m tokens at once): ``u = P(q)``, split cells ``j_t = cell(u_t)``, the prefix ``[0, j_t]``
and suffix ``[j_t + 1, G - 1]`` canonical nodes of every (token, coordinate) gathered in one
``embedding_bag``; ``Pm = prefix_m + suffix_m``. Once the structure has answered enough tokens
to amortise it (tokens x 2h >= G), the sums ``Pm`` of every split cell are post-processed once
into a split table (:func:`dpxattn.fast.tree.split_sums`; (G, r, l, d_v + 1, 3) float64, about
half the node payload) and each later (token, coordinate) reads one row of it; ``numerator = (c1~ + ||u||^2 c0~ -
sum_t (u_t^2 P0 - 2 u_t P1 + P2)) / 2``; ``D~_c = max(numerator_{d_v}, n)``; entrywise median over
copies (mean of the two middle values for even l).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dpxattn.accounting import padded_size, tree_height
from dpxattn.errors import no_sure_envelope
from dpxattn.fast.envelope import gamma, gaussian_noise_bound, hp_noise_bound, unit_roundoff
from dpxattn.fast.features import feature_chunks, features_t
from dpxattn.fast.release import (GaussianLaw, NoiseLaw, SecureGaussianLaw, gaussian_law,
                                  noise_law, release_, secure_gaussian_law, secure_law)
from dpxattn.fast.tree import (fill_internal_nodes, gather_sums, grid_cell, prefix_suffix_nodes,
                               split_sums)

__all__ = ["TreeRelease", "tree_noise_count", "tlap_plan_records", "TREE_BUILD_CHUNK",
           "TREE_QUERY_CHUNK"]

def tlap_plan_records(scalar_sens, node_sens, release) -> tuple[dict, dict]:
    """``(sensitivity, noise_scale)`` for :func:`dpxattn.accounting.plan_tree`'s records of a
    TLap tree release: per group ("c0", "c1", "tree_level") the largest sensitivity passed
    (``scalar_sens`` (d_v + 1, 2), ``node_sens`` (d_v + 1, r, 3)) and the largest Laplace scale
    of ``release``'s laws (secure mode: the discrete law's t g), as floats."""
    scal, nodes = np.asarray(scalar_sens), np.asarray(node_sens)
    b_s, b_n = release.scalar_law.b, release.node_law.b
    sens = {"c0": float(scal[..., 0].max()), "c1": float(scal[..., 1].max()),
            "tree_level": float(nodes.max())}
    scale = {"c0": float(b_s[..., 0].max()), "c1": float(b_s[..., 1].max()),
             "tree_level": float(b_n.max())}
    return sens, scale


#: elements of the per-chunk leaf contributions (chunk rows x r x (d_v + 1) x 3) during build
TREE_BUILD_CHUNK = 1 << 21
#: elements of the per-chunk gathered node sums (tokens x r x max(bag, l (d_v + 1) 3)) in a query
TREE_QUERY_CHUNK = 1 << 22

MOMENTS = 3


def tree_noise_count(*, r: int, d_v: int, copies: int, grid: int) -> int:
    """2 l (d_v + 1) + (2N - 1) l (d_v + 1) 3 r (conventions: scalars first, then nodes)."""
    cols = copies * (d_v + 1)
    return 2 * cols + (2 * padded_size(grid) - 1) * cols * MOMENTS * r


def _expand(law: NoiseLaw, lead: int) -> NoiseLaw:
    """The same per-entry law repeated over a new leading axis of size ``lead`` (copies)."""
    return law.expand(lead)


@dataclass
class TreeRelease:
    """The released part of ``tree``: noisy nodes and scalars plus public constants only.

    ``payload`` (2N - 1, r, l, d_v + 1, 3) float64 noisy node values; ``scalars`` (l, d_v + 1, 2)
    noisy (c0, c1); ``node_law`` (d_v + 1, r, 3) and ``scalar_law`` (d_v + 1, 2) the TLap
    constants; ``bounds`` (r,) the feature bounds M_t; ``n``, ``grid``, ``degree``, ``scale``,
    ``copies``, ``norm_bound`` (T_s(t_max), rounded up), ``R_w`` (float64, rounded up);
    ``lattice``: None, or the term exponents (c_0, c_1, c_2) of a release of the streaming
    accumulator's rounded sums (its envelopes add their rounding); ``noise_weights``: None
    (TLap) or the Gaussian law's group multipliers
    (:class:`dpxattn.reference.tree_noise_weights.TreeNoiseWeights`: group g's noise is
    lambda_g = 2^e_g times the law's, a withheld group is released as 0).
    Queries are evaluated in float64 whatever their dtype (the answer is cast at the end).
    """

    payload: torch.Tensor
    scalars: torch.Tensor
    node_law: NoiseLaw
    scalar_law: NoiseLaw
    bounds: torch.Tensor
    n: int
    grid: int
    degree: int
    scale: object
    copies: int
    norm_bound: float
    R_w: float
    lattice: tuple | None = None
    noise_weights: object = None
    _split: torch.Tensor | None = field(default=None, repr=False)
    _queried: int = field(default=0, repr=False)
    _magnitudes: tuple | None = field(default=None, repr=False)

    @property
    def N(self) -> int:
        return padded_size(self.grid)

    @property
    def height(self) -> int:
        return tree_height(self.grid)

    @staticmethod
    def _replicate(nodes: torch.Tensor, scalars: torch.Tensor, copies: int):
        """(payload (2N - 1, r, l, cols, 3), scalars (l, cols, 2)): ``copies`` identical copies of
        one computed tree (nodes (2N - 1, r, cols, 3)) and of its (c0, c1) (cols, 2)."""
        payload = nodes.unsqueeze(2).repeat(1, 1, copies, 1, 1)
        return payload, scalars.unsqueeze(0).repeat(copies, 1, 1)

    @staticmethod
    def _sums(K: torch.Tensor, V: torch.Tensor, *, degree: int, scale, grid: int, copies: int,
              bounds: torch.Tensor):
        """The float64 sums of (K, V) as in :meth:`_replicate`: the leaves by ``index_add_`` of
        the rows' terms, the internal nodes by pairwise sums, c0 and c1 per column."""
        device = K.device
        d_v = V.shape[1]
        cols = d_v + 1
        r = bounds.shape[0]
        l = copies
        N = padded_size(grid)
        payload = torch.zeros((2 * N - 1, r, l, cols, MOMENTS), dtype=torch.float64, device=device)
        leaf_rows = payload[N - 1:].view(N * r, l * cols * MOMENTS)[:, : cols * MOMENTS]
        sums = torch.zeros((cols, 2), dtype=torch.float64, device=device)
        coord = torch.arange(r, device=device)
        rows_per_chunk = max(1, TREE_BUILD_CHUNK // (r * cols * MOMENTS))
        for start, stop, F in feature_chunks(K, degree, scale=scale, rows=rows_per_chunk):
            c = stop - start
            W = torch.empty((c, cols), dtype=torch.float64, device=device)
            W[:, :d_v] = V[start:stop]
            W[:, d_v] = 1.0
            Phi = F.t()  # (c, r)
            cells = grid_cell(Phi, bounds, grid)
            powers = torch.stack([torch.ones_like(Phi), Phi, Phi * Phi], dim=-1)  # (c, r, 3)
            contrib = W[:, None, :, None] * powers[:, :, None, :]  # (c, r, cols, 3)
            leaf_rows.index_add_(0, (cells * r + coord).reshape(-1),
                                 contrib.reshape(c * r, cols * MOMENTS))
            sums[:, 0] += W.sum(dim=0)
            sums[:, 1] += (F * F).sum(dim=0) @ W
        fill_internal_nodes(payload[:, :, 0])
        if l > 1:
            payload[:, :, 1:] = payload[:, :, :1]
        scalars = sums.unsqueeze(0).repeat(l, 1, 1)  # (l, cols, 2): [c0, c1] per copy, column
        del sums
        return payload, scalars

    @classmethod
    def build(cls, K: torch.Tensor, V: torch.Tensor, *, degree: int, scale, grid: int,
              copies: int, bounds: torch.Tensor, norm_bound: float, R_w: float,
              scalar_sens: np.ndarray,
              node_sens: np.ndarray, shares: dict, stream, secure=None,
              gaussian=None, sums=None, n: int | None = None,
              lattice: tuple | None = None, noise_weights=None) -> "TreeRelease":
        """K (n, d), V (n, d_v): validated float64 private data (not kept); or ``K = V = None``
        and ``sums = (nodes (2N - 1, r, d_v + 1, 3), scalars (d_v + 1, 2))`` computed by the
        caller for ``n`` rows (the streaming accumulator's exact sums,
        :func:`dpxattn.fast.tree_accumulation.tree_sums`, with ``lattice`` its term exponents
        (c_0, c_1, c_2): the envelopes add the terms' rounding, ``proofs_notes/30``).

        ``scalar_sens`` (d_v + 1, 2) and ``node_sens`` (d_v + 1, r, 3): sensitivities (rounded
        up); ``shares``: the plan's exact (eps, delta) for "c0", "c1", "tree_level".
        ``secure``: None (float mode; ``stream`` a UniformStream) or the tuple
        ``(scalar_sens, node_sens, scalar_bounds, node_bounds)`` of the exactly accumulated
        sums, :func:`dpxattn.fast.tree_accumulation.tree_exact_constants` (secure mode;
        ``stream`` is SecureWords): each c0 / c1 is its own one-coordinate lattice release, and
        each level of each (copy, column, coordinate, moment) DPTree its own lattice release with
        the per-level budget, the sensitivity of the rounded level and ``changed`` = N (>= the
        level's number of nodes; a sound over-count, two nodes per level change).
        ``gaussian``: None (TLap) or ``(sigma, Delta_2)`` (float mode, ``law="gaussian"``; then
        ``scalar_sens``, ``node_sens`` and ``shares`` are unused): N(0, sigma^2) on every
        released number, same uniforms, same order. Secure Gaussian (``gaussian`` given and
        ``secure`` = ``(eps, delta, l2 sensitivity, value_bound)`` of the exactly accumulated
        release, :func:`dpxattn.fast.tree_accumulation.tree_exact_constants`): the whole release is
        ONE discrete Gaussian lattice release (``changed`` = every released number), drawn as
        the scalars then the nodes, from the secure words (``proofs_notes/26-tree-gaussian.md``).
        Gaussian ``noise_weights`` (required with ``gaussian``; the reference's
        :func:`dpxattn.reference.tree_noise_weights.tree_noise_weights`): every group is scaled
        by its mu = 2^-e before the release and by lambda = 2^e after it (exact: powers of
        two), so group g's noise is lambda_g times the law's and the law is calibrated to the
        scaled vector's l2 sensitivity (``sens``); a withheld group (mu = lambda = 0) is
        released as 0 (``proofs_notes/26-tree-gaussian.md``, "Per-group noise").
        """
        if sums is not None:
            payload, scalars = cls._replicate(*sums, copies)
        else:
            payload, scalars = cls._sums(K, V, degree=degree, scale=scale, grid=grid,
                                         copies=copies, bounds=bounds)
            n = V.shape[0]
        device = payload.device
        cols = payload.shape[3]
        r = bounds.shape[0]
        l = copies
        N = padded_size(grid)

        if gaussian is not None:
            if noise_weights is None:
                raise ValueError("a Gaussian tree release needs its noise_weights")
            mu_s, mu_n, lam_s, lam_n = group_scales(noise_weights, device)
            scalars.mul_(mu_s)
            payload.mul_(mu_n[:, None, None, :])
            if secure is not None:  # one discrete Gaussian lattice release of the whole vector
                eps_g, delta_g, sens, value_bound = secure
                total = scalars.numel() + payload.numel()
                scalar_law = secure_gaussian_law((l, cols, 2), sens, eps_g, delta_g,
                                                 changed=total, value_bound=value_bound)
                node_law = secure_gaussian_law((l, cols, r, MOMENTS), sens, eps_g, delta_g,
                                               changed=total, value_bound=value_bound)
            else:
                sigma, sens = gaussian
                scalar_law = gaussian_law((l, cols, 2), sigma, sens)
                node_law = gaussian_law((l, cols, r, MOMENTS), sigma, sens)
            release_(scalars.unsqueeze(0), scalar_law, stream)
            release_(payload.permute(0, 2, 3, 1, 4), node_law, stream)
            scalars.mul_(lam_s)
            payload.mul_(lam_n[:, None, None, :])
            return cls(payload=payload, scalars=scalars, node_law=node_law,
                       scalar_law=scalar_law, bounds=bounds, n=n, grid=grid, degree=degree,
                       scale=scale, copies=l, norm_bound=norm_bound, R_w=R_w,
                       lattice=lattice, noise_weights=noise_weights)
        (e0, d0), (e1, d1), (el, dl) = shares["c0"], shares["c1"], shares["tree_level"]
        eps_s = np.array([[e0, e1]] * cols, dtype=object)
        delta_s = np.array([[d0, d1]] * cols, dtype=object)
        if secure is None:
            scalar_law = noise_law((cols, 2), scalar_sens, eps_s, delta_s, device=device)
            node_law = noise_law((cols, r, MOMENTS), node_sens, el, dl, device=device)
        else:
            s_sens, n_sens, s_bound, n_bound = secure
            scalar_law = secure_law((cols, 2), s_sens, eps_s, delta_s, changed=1,
                                    value_bound=s_bound, device=device)
            node_law = secure_law((cols, r, MOMENTS), n_sens, el, dl, changed=N,
                                  value_bound=n_bound, device=device)
        release_(scalars.unsqueeze(0), _expand(scalar_law, l), stream)
        release_(payload.permute(0, 2, 3, 1, 4), _expand(node_law, l), stream)
        return cls(payload=payload, scalars=scalars, node_law=node_law, scalar_law=scalar_law,
                   bounds=bounds, n=n, grid=grid, degree=degree, scale=scale, copies=l,
                   norm_bound=norm_bound, R_w=R_w, lattice=lattice)

    def to(self, device) -> "TreeRelease":
        """The same release on ``device`` (a copy of the public tensors)."""
        return TreeRelease(payload=self.payload.to(device), scalars=self.scalars.to(device),
                           node_law=self.node_law.to(device), scalar_law=self.scalar_law.to(device),
                           bounds=self.bounds.to(device), n=self.n, grid=self.grid,
                           degree=self.degree, scale=self.scale, copies=self.copies,
                           norm_bound=self.norm_bound, R_w=self.R_w, lattice=self.lattice,
                           noise_weights=self.noise_weights)

    @property
    def secure(self) -> bool:
        return self.node_law.secure

    @property
    def gaussian(self) -> bool:
        """True for ``law="gaussian"`` (every released number N(0, sigma^2), or its exact
        discrete lattice form in secure mode)."""
        return isinstance(self.node_law, (GaussianLaw, SecureGaussianLaw))

    # -- queries ---------------------------------------------------------------------------------

    def _chunk(self) -> int:
        r = self.bounds.shape[0]
        width = max(4 * (self.height + 1), self.payload.shape[2] * self.payload.shape[3] * MOMENTS)
        return max(1, TREE_QUERY_CHUNK // (r * width))

    def _nodes(self, U: torch.Tensor) -> torch.Tensor:
        """(m, r, 4(h + 1)) canonical prefix+suffix nodes of every (token, coordinate)."""
        cells = grid_cell(U.detach(), self.bounds, self.grid)
        return prefix_suffix_nodes(cells, self.grid)

    def split_table(self) -> torch.Tensor:
        """The split table (G, r, l, d_v + 1, 3): for every split cell j and coordinate t the
        sums ``Pm`` of the canonical prefix and suffix nodes (public post-processing of the
        released nodes, computed once and cached)."""
        if self._split is None:
            nn, r, l, cols, _ = self.payload.shape
            self._split = split_sums(self.payload.view(nn, -1), self.grid).view(
                self.grid, r, l, cols, MOMENTS)
        return self._split

    def _use_split_table(self, tokens: int) -> bool:
        self._queried += tokens
        return self._split is not None or self._queried * 2 * max(1, self.height) >= self.grid

    def copy_answers(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-copy answers (m, l, d_v) and clamped denominators D~ (m, l), float64.

        Always computed in float64, whatever Q's dtype: the law of cosines subtracts large noisy
        sums (PAPER §5 item 18), so a float32 evaluation would lose most of the answer's digits.
        """
        Q = Q.to(torch.float64)
        payload, scalars = self.payload, self.scalars
        nn, r, l, cols, _ = payload.shape
        width = l * cols * MOMENTS
        coord = torch.arange(r, device=Q.device)
        split = self.split_table().view(-1, width) if self._use_split_table(Q.shape[0]) else None
        table = payload.view(nn * r, width)
        outs, dens = [], []
        step = self._chunk()
        for start in range(0, Q.shape[0], step):
            U = features_t(Q[start:start + step], self.degree, scale=self.scale).t()  # (c, r)
            c = U.shape[0]
            if split is not None:
                cells = grid_cell(U.detach(), self.bounds, self.grid)
                P = split.index_select(0, (cells * r + coord).reshape(-1))
            else:
                nodes = self._nodes(U)
                rows = torch.where(nodes >= 0, nodes * r + coord[None, :, None], -1)
                P = gather_sums(table, rows.reshape(c * r, -1))
            P = P.view(c, r, l, cols, MOMENTS)
            coef = torch.stack([U * U, -2.0 * U, torch.ones_like(U)], dim=-1)  # (c, r, 3)
            dist = torch.einsum("qtckm,qtm->qck", P, coef)
            norm = (U * U).sum(dim=1)
            num = (scalars[None, :, :, 1] + norm[:, None, None] * scalars[None, :, :, 0] - dist) / 2
            D = torch.clamp(num[..., -1], min=float(self.n))
            outs.append(num[..., :-1] / D.unsqueeze(-1))
            dens.append(D)
        if not outs:
            empty = torch.zeros((0, l, cols - 1), dtype=Q.dtype, device=Q.device)
            return empty, torch.zeros((0, l), dtype=Q.dtype, device=Q.device)
        return torch.cat(outs), torch.cat(dens)

    def answer(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(median answers (m, d_v) in Q's dtype, per-copy D~ (m, l) float64)."""
        per_copy, D = self.copy_answers(Q)
        return median_over_copies(per_copy).to(Q.dtype), D

    # -- envelopes --------------------------------------------------------------------------------

    def column_bounds(self, Q: torch.Tensor, failure: float | None) -> torch.Tensor:
        """Per-column noise + floating-point bound (m, d_v + 1), identical for every copy.

        ``failure`` None: sure; else each column's bound holds with probability >= 1 - failure.
        See ``proofs_notes/19-fast-path.md`` ("tree") for the floating-point allowance.
        Gaussian law (:meth:`_gaussian_column_bounds`): no sure bound (``failure`` None raises).
        """
        if self.gaussian:
            return self._gaussian_column_bounds(Q, failure)
        dtype = torch.float64  # the tree's queries are evaluated in float64 (see copy_answers)
        with torch.no_grad():
            U = features_t(Q.detach().to(torch.float64), self.degree, scale=self.scale).t()
            sizes = (self._nodes(U) >= 0).sum(dim=-1).to(torch.float64)  # (m, r)
            norm = (U * U).sum(dim=1)  # (m,)
            coef = torch.stack([U * U, 2.0 * U, torch.ones_like(U)], dim=-1)  # |coef|, (m, r, 3)
            A = self.node_law.support_up  # (cols, r, 3)
            var = self.node_law.variance
            A_s = self.scalar_law.support_up  # (cols, 2)
            var_s = self.scalar_law.variance
            cs = coef * sizes.unsqueeze(-1)  # sum over the |C_t| nodes of |coef|
            sure = (A_s[:, 1] + norm[:, None] * A_s[:, 0]
                    + torch.einsum("qtm,ktm->qk", cs, A)) / 2
            c2s = coef * coef * sizes.unsqueeze(-1)
            sum_c2_A2 = (A_s[:, 1] ** 2 + (norm**2)[:, None] * A_s[:, 0] ** 2
                         + torch.einsum("qtm,ktm->qk", c2s, A * A)) / 4
            sum_c2_var = (var_s[:, 1] + (norm**2)[:, None] * var_s[:, 0]
                          + torch.einsum("qtm,ktm->qk", c2s, var)) / 4
            present = (sizes > 0).to(torch.float64).unsqueeze(-1)  # (m, r, 1)
            node_max = (coef.unsqueeze(1) * present.unsqueeze(1) * A.unsqueeze(0)).amax(dim=(2, 3))
            max_cA = torch.maximum(torch.maximum(A_s[:, 1].expand_as(node_max),
                                                 norm[:, None] * A_s[:, 0]), node_max) / 2
            if failure is None:
                noise = sure
            elif self.secure:
                noise = self._secure_hp(coef, cs, c2s, sizes, norm, sure, var, var_s, failure)
            else:
                noise = hp_noise_bound(
                    sure=sure, sum_c2_A2=sum_c2_A2, sum_c2_var=sum_c2_var, max_cA=max_cA,
                    failure=failure, **self._chernoff_terms(coef, sizes, norm))
            fp = self._fp_allowance(U, cs, coef, norm, A, A_s, dtype)
        return noise + fp

    def _fp_allowance(self, U, cs, coef, norm, A, A_s, dtype, *, draw_ulps: int = 0):
        """The floating-point allowance (m, d_v + 1) of every column's computed numerator
        (``proofs_notes/19-fast-path.md``, "tree"), public bounds only: ``A`` (cols, r, 3) and
        ``A_s`` (cols, 2) bound the noise magnitudes (TLap: the support bounds). ``draw_ulps``
        (Gaussian law): the float draws' own error, ``draw_ulps`` u64 relative to the released
        magnitudes, is added on the same magnitude sum. A release of the streaming accumulator's
        rounded terms (``lattice`` = (c_0, c_1, c_2)) adds their rounding: at most 2^-(c_m + 1)
        per row and term, so n (r 2^-(c_2 + 1) + ||u||^2 2^-(c_0 + 1) + sum_(t,m) |coef|
        2^-(c_m + 1)) / 2 on the numerator (the canonical nodes of a (t, m) are disjoint); the
        terms' float error and the conversion are inside the build's gammas
        (``proofs_notes/30-exact-accumulation.md``, "The tree")."""
        n = self.n
        s = self.degree
        r = U.shape[1]
        h = self.height
        cols = A.shape[0]
        weights = self._weights(cols, U.device)  # (cols,) W_k
        Mpow = torch.stack([torch.ones_like(self.bounds), self.bounds,
                            self.bounds * self.bounds], dim=-1)  # (r, 3)
        cM = torch.einsum("qtm,tm->q", cs, Mpow)  # sum |coef| |C_t| M_t^m
        cM1 = torch.einsum("qtm,tm->q", coef, Mpow)  # sum |coef| M_t^m (disjoint cover)
        u64 = unit_roundoff(torch.float64)
        uq = unit_roundoff(dtype)
        T = self.norm_bound
        nW = n * weights  # (cols,)
        mag = (nW * T + A_s[:, 1] + norm[:, None] * (nW + A_s[:, 0])
               + cM[:, None] * nW + torch.einsum("qtm,ktm->qk", cs, A)) / 2
        exact = (gamma(n + r + 2 * s + 6, u64) * nW * T + norm[:, None] * gamma(n, u64) * nW
                 + gamma(n + 3 * s + 5 + h, u64) * cM1[:, None] * nW) / 2
        feat = gamma(s + 2, uq) * nW * (U @ self.bounds)[:, None]
        fp = exact + (u64 + gamma(3 * h + 3 * r + 2 * s + 16, uq)) * mag + feat
        if draw_ulps:
            fp = fp + (draw_ulps * u64) * mag
        if self.lattice is not None:  # the streaming accumulator's term rounding, per row
            half = torch.tensor([2.0 ** -(c + 1) for c in self.lattice], dtype=torch.float64,
                                device=U.device)  # (3,): 2^-(c_m + 1)
            rounding = n * (r * half[2] + norm * half[0]
                            + torch.einsum("qtm,m->q", coef, half)) / 2
            fp = fp + (1 + 2.0 ** -40) * rounding[:, None]
        return fp

    def released_magnitudes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian law: ``(A (d_v + 1, r, 3), A_s (d_v + 1, 2))``, the largest |released value|
        of every (column, coordinate, moment) tree's nodes and of every column's c0, c1, over the
        copies (public: computed from the released numbers only; cached). With the exact sums'
        public bounds ``n W M_t^m`` they bound every noise and every operand the floating-point
        allowance acts on (``proofs_notes/26-tree-gaussian.md``, "hp envelope")."""
        if self._magnitudes is None:
            A = self.payload.abs().amax(dim=(0, 2)).permute(1, 0, 2).contiguous()
            self._magnitudes = (A, self.scalars.abs().amax(dim=0))
        return self._magnitudes

    def _gaussian_column_bounds(self, Q: torch.Tensor, failure: float | None) -> torch.Tensor:
        """Gaussian law: column k's noise is ``sum_j c_j lambda_j Z_j``, Z_j iid N(0, sigma^2),
        with the coefficients of :meth:`column_bounds` (1/2 for c1, ||u||^2/2 for c0,
        |coef_m(u_t)|/2 for each of the |C_t| canonical nodes of tree (t, m); the same for every
        column) and the groups' multipliers lambda (0 for a withheld group): exactly
        N(0, sigma^2 sum (c_j lambda_j)^2), bounded at ``failure`` by its two-sided normal quantile
        (:func:`dpxattn.fast.envelope.gaussian_noise_bound`), plus the floating-point allowance
        with the released magnitudes (:meth:`released_magnitudes`) and the draws' own error.
        Secure mode (exact discrete Gaussian on a lattice of spacing g): each draw is within
        1.5 g of a coupled N(0, sigma^2) draw, surely (note 25, Lemma 5), so
        1.5 g sum |c_j| lambda_j is added; lattice draws are exact (no draw error)."""
        if failure is None:
            raise no_sure_envelope("error_bound")
        from dpxattn.fast.direct import GAUSSIAN_DRAW_ULPS

        with torch.no_grad():
            U = features_t(Q.detach().to(torch.float64), self.degree, scale=self.scale).t()
            sizes = (self._nodes(U) >= 0).sum(dim=-1).to(torch.float64)  # (m, r)
            r = U.shape[1]
            norm = (U * U).sum(dim=1)
            coef = torch.stack([U * U, 2.0 * U, torch.ones_like(U)], dim=-1)  # |coef|, (m, r, 3)
            cs = coef * sizes.unsqueeze(-1)
            _, _, lam_s, lam_n = group_scales(self.noise_weights, U.device)
            sum_c2 = (lam_s[1] ** 2 + (lam_s[0] * norm) ** 2
                      + (coef * coef * sizes.unsqueeze(-1) * lam_n * lam_n).sum(dim=(1, 2))) / 4
            noise = gaussian_noise_bound(self.node_law.sigma, sum_c2, 3 * r + 2, failure)
            secure = isinstance(self.node_law, SecureGaussianLaw)
            if secure:
                # lattice release (note 25, Lemma 5): each noise is within g (coupling) + g/2
                # (rounding) of a N(0, sigma^2) draw coupled to it, surely: + 1.5 g sum |c_j|
                l1 = (lam_s[1] + lam_s[0] * norm + (cs * lam_n).sum(dim=(1, 2))) / 2
                c = self.node_law.coupling + self.node_law.rounding
                noise = noise + c * l1 * (1.0 + gamma(3 * r + 4, unit_roundoff(torch.float64)))
            A, A_s = self.released_magnitudes()
            cols = A.shape[0]
            fp = self._fp_allowance(U, cs, coef, norm, A, A_s, torch.float64,
                                    draw_ulps=0 if secure else GAUSSIAN_DRAW_ULPS)
        return noise[:, None].expand(-1, cols) + fp

    def _secure_hp(self, coef, cs, c2s, sizes, norm, sure, var, var_s, failure):
        """Secure mode: ``min(sure, rounding + min(Hoeffding, Bernstein))`` per column, the
        rounding part ``sum |c| g/2`` deterministic, the zero-mean lattice noise bounded by K g
        with variance <= 2 (t g)^2 (``proofs_notes/19-fast-path.md``, secure mode)."""
        A = self.node_law.noise_support()
        A_s = self.scalar_law.noise_support()
        g = self.node_law.rounding
        g_s = self.scalar_law.rounding
        offset = (g_s[:, 1] + norm[:, None] * g_s[:, 0] + torch.einsum("qtm,ktm->qk", cs, g)) / 2
        sum_c2_A2 = (A_s[:, 1] ** 2 + (norm**2)[:, None] * A_s[:, 0] ** 2
                     + torch.einsum("qtm,ktm->qk", c2s, A * A)) / 4
        sum_c2_var = (var_s[:, 1] + (norm**2)[:, None] * var_s[:, 0]
                      + torch.einsum("qtm,ktm->qk", c2s, var)) / 4
        present = (sizes > 0).to(torch.float64).unsqueeze(-1)
        node_max = (coef.unsqueeze(1) * present.unsqueeze(1) * A.unsqueeze(0)).amax(dim=(2, 3))
        max_cA = torch.maximum(torch.maximum(A_s[:, 1].expand_as(node_max),
                                             norm[:, None] * A_s[:, 0]), node_max) / 2
        return hp_noise_bound(sure=sure, sum_c2_A2=sum_c2_A2, sum_c2_var=sum_c2_var,
                              max_cA=max_cA, coef=None, count=None, b=None, A=None,
                              failure=failure, offset=offset)

    def _chernoff_terms(self, coef: torch.Tensor, sizes: torch.Tensor, norm: torch.Tensor) -> dict:
        """Terms (m, cols, 2 + 3r) of every column's noise: c1 (coefficient 1/2), c0 (||u||^2/2),
        then each (coordinate, moment) tree with coefficient |coef_m(u_t)|/2 and multiplicity
        |C_t| (its canonical nodes), with their Laplace scales and half-widths."""
        m, r, _ = coef.shape
        cols = self.node_law.b.shape[0]
        c = torch.cat([torch.full((m, 1), 0.5, dtype=torch.float64, device=coef.device),
                       (norm / 2).unsqueeze(1), (coef / 2).reshape(m, 3 * r)], dim=1)
        cnt = torch.cat([torch.ones((m, 2), dtype=torch.float64, device=coef.device),
                         sizes.unsqueeze(-1).expand(m, r, 3).reshape(m, 3 * r)], dim=1)
        b = torch.cat([self.scalar_law.b[:, [1, 0]], self.node_law.b.reshape(cols, 3 * r)], 1)
        A = torch.cat([self.scalar_law.support_up[:, [1, 0]],
                       self.node_law.support_up.reshape(cols, 3 * r)], 1)
        return {"coef": c.unsqueeze(1).expand(m, cols, 2 + 3 * r),
                "count": cnt.unsqueeze(1).expand(m, cols, 2 + 3 * r), "b": b, "A": A}

    def _weights(self, cols: int, device) -> torch.Tensor:
        w = torch.full((cols,), float(self.R_w), dtype=torch.float64, device=device)
        w[-1] = 1.0
        return w


def group_scales(weights, device) -> tuple:
    """``(mu_s (2,), mu_n (r, 3), lambda_s (2,), lambda_n (r, 3))`` float64 tensors of a
    :class:`dpxattn.reference.tree_noise_weights.TreeNoiseWeights`: mu = 2^-e and
    lambda = 2^e per group (c0, c1; tree (t, m)), both 0 for a withheld group."""
    w = weights
    mu_s = [w.scale(w.c0), w.scale(w.c1)]
    lam_s = [w.multiplier(w.c0), w.multiplier(w.c1)]
    mu_n = [[w.scale(e) for e in row] for row in w.nodes]
    lam_n = [[w.multiplier(e) for e in row] for row in w.nodes]
    return tuple(torch.tensor(x, dtype=torch.float64, device=device)
                 for x in (mu_s, mu_n, lam_s, lam_n))


def median_over_copies(per_copy: torch.Tensor) -> torch.Tensor:
    """Entrywise median over dim 1 (copies); the mean of the two middle values for even l."""
    l = per_copy.shape[1]
    if l == 1:
        return per_copy[:, 0]
    s = torch.sort(per_copy, dim=1).values
    lo, hi = (l - 1) // 2, l // 2
    if lo == hi:
        return s[:, lo]
    return (s[:, lo] + s[:, hi]) / 2

