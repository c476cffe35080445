"""The privacy plan: how a structure's total (eps, delta) is split over its released parts.

This is the single place where budgets are split (PAPER §3.7, DESIGN §2). The reference and the
fast implementation both call :func:`plan_direct` / :func:`plan_tree` and read each component's
share from the returned :class:`PrivacyPlan`; neither splits a budget itself.

Shares are exact ``Fraction`` s of the given total (a float total such as 0.1 is converted
exactly), so the sum over all components equals the total exactly, and both implementations
start from the same rational share (the reference converts it at its precision, the fast path
rounds it once to float64).

Accounting is **end to end** under replace-one-row adjacency (DESIGN §1) with basic composition:
every value column, the denominator, every median copy, every coordinate, every moment tree and
every tree level is one component. See ``proofs_notes/13-cross-attention-accounting.md``.

Noise laws (``law=``, :data:`dpxattn.params.LAWS`): ``"tlap"`` (every plan; truncated Laplace on
an l1 sensitivity) and, for ``direct`` only so far, ``"gaussian"``: the whole S is ONE analytic
Gaussian mechanism on its l2 sensitivity (Balle & Wang 2018; ``proofs_notes/24-analytic-gaussian.md``),
a single component with nothing composed (the plan's ``composition`` is ``"none"``). Each
:class:`Component` records, besides its exact share, the numeric sensitivity and noise scale the
build actually used (``to_dict()``: ``law``, ``sensitivity_norm``, ``sensitivity_value``,
``laplace_scale`` for TLap, ``sigma`` for the Gaussian).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache

from dpxattn.errors import ParameterError
from dpxattn.params import check_degree, check_law, check_positive_int, check_privacy

__all__ = [
    "tree_height",
    "tree_levels",
    "padded_size",
    "feature_dimension",
    "Component",
    "PrivacyPlan",
    "check_public_maps",
    "plan_direct",
    "plan_tree",
    "plan_dptree",
    "plan_dptree_distance",
    "plan_dptree_highdim",
    "COMPOSITIONS",
    "COMPOSITION_NONE",
    "COMPOSITION_PLD",
    "TREE_COMPOSITIONS",
    "NUMERICS_FLOAT",
    "NUMERICS_FLOAT_GAUSSIAN",
    "TREE_MOMENTS",
]

NUMERICS_FLOAT = (
    "idealised real arithmetic: noise by float64 inversion of the exact CDF; the proof assumes "
    "exact reals and is NOT hardened against floating-point attacks (Mironov 2012)"
)

#: the numerics of a fast float-mode Gaussian build (``law="gaussian"``, ``noise="float"``)
NUMERICS_FLOAT_GAUSSIAN = (
    "idealised real arithmetic: Gaussian noise sigma * Phi^-1(u) by float64 inversion "
    "(torch.special.ndtri on min(u, 1 - u)); the proof assumes exact reals and is NOT hardened "
    "against floating-point attacks (Mironov 2012); the hardened release (the default secure "
    "mode: exact discrete Gaussian noise on a lattice, proofs_notes/25-discrete-gaussian.md) is"
)

#: DPTreeDistance with p = 2 keeps the moments k = 0, 1, 2 (w, w x, w x^2) per coordinate.
TREE_MOMENTS = 3


def tree_height(n: int) -> int:
    """h = ceil(log2 n), with h = 0 for n = 1 (PAPER §3 conventions)."""
    n = check_positive_int("n", n)
    return (n - 1).bit_length()


def tree_levels(n: int) -> int:
    """L = ceil(log2 n) + 1: the number of levels of a DPTree over n leaves (PAPER §5 item 14)."""
    return tree_height(n) + 1


def padded_size(n: int) -> int:
    """N = 2^h: leaves after zero padding (padding is data-independent)."""
    return 1 << tree_height(n)


def feature_dimension(d: int, degree: int) -> int:
    """r = C(d + s, s): the Taylor feature map's dimension (PAPER §2.3)."""
    d = check_positive_int("d", d)
    s = check_degree(degree)
    return math.comb(d + s, s)


def _number(x):
    """A recorded numeric constant for ``to_dict`` (float; None when not recorded)."""
    return None if x is None else float(x)


@dataclass(frozen=True)
class Component:
    """A group of ``count`` identical released components, each with budget (eps, delta).

    ``key`` is what implementations look up ("S", "c0", "c1", "tree_level"); ``sensitivity``
    states, in words, the sensitivity each component's noise is calibrated to; ``law`` its noise
    law ("tlap" or "gaussian") and ``sensitivity_norm`` that sensitivity's norm ("l1" for TLap,
    "l2" for the Gaussian). ``sensitivity_value``, ``laplace_scale`` (TLap: b = Delta_1/eps) and
    ``sigma`` (Gaussian: the standard deviation) are the numbers a build actually used (None
    when the plan was made without a build; for a group whose members differ, the tree's TLap
    c0, c1 and levels, the largest member's); they are records, not part of the budget, so they
    do not take part in equality.
    """

    key: str
    name: str
    count: int
    eps: Fraction
    delta: Fraction
    sensitivity: str
    per: str
    law: str = "tlap"
    sensitivity_norm: str = "l1"
    sensitivity_value: object = field(default=None, compare=False)
    laplace_scale: object = field(default=None, compare=False)
    sigma: object = field(default=None, compare=False)

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "count": self.count,
            "eps_each": float(self.eps),
            "delta_each": float(self.delta),
            "eps_each_exact": str(self.eps),
            "delta_each_exact": str(self.delta),
            "sensitivity": self.sensitivity,
            "one_component_is": self.per,
            "law": self.law,
            "sensitivity_norm": self.sensitivity_norm,
            "sensitivity_value": _number(self.sensitivity_value),
            "laplace_scale": _number(self.laplace_scale),
            "sigma": _number(self.sigma),
        }


@dataclass(frozen=True)
class PrivacyPlan:
    """The end-to-end (eps, delta) of a built structure and every component's share."""

    mechanism: str
    eps: Fraction
    delta: Fraction
    components: tuple[Component, ...]
    sizes: dict
    composition: str = "basic"
    numerics: str = NUMERICS_FLOAT
    randomness: str = ""
    clip: bool = False
    paper_accounting: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: the caller's descriptions of the public per-record maps applied to the keys (and queries)
    #: before build, e.g. a PCA fitted on a declared-public sample (proofs_notes/28-public-maps.md)
    public_maps: tuple[str, ...] = ()

    def component(self, key: str) -> Component:
        for c in self.components:
            if c.key == key:
                return c
        raise KeyError(key)

    def share(self, key: str) -> tuple[Fraction, Fraction]:
        """(eps, delta) of one component of group ``key``, exact."""
        c = self.component(key)
        return c.eps, c.delta

    def total(self) -> tuple[Fraction, Fraction]:
        """The composed (eps, delta) of every component.

        Basic composition (and a single Gaussian release): sum of count * share, exact.
        ``composition="pld"``: every component has the same (eps0, delta0); the total is
        (eps, the certified optimal-composition delta at eps of all of them)
        (:func:`dpxattn.reference.optimal_composition.homogeneous_delta`), <= delta.
        """
        if self.composition == COMPOSITION_PLD:
            shares = {(c.eps, c.delta) for c in self.components}
            if len(shares) != 1:
                raise ValueError("a 'pld' plan composes identical components only")
            (e0, d0), = shares
            k = sum(c.count for c in self.components)
            return self.eps, _optimal_delta(k, e0, d0, self.eps)
        eps = sum((c.count * c.eps for c in self.components), Fraction(0))
        delta = sum((c.count * c.delta for c in self.components), Fraction(0))
        return eps, delta

    def total_checks(self) -> bool:
        """Whether the composed total is within the stated (eps, delta) (exactly equal under
        basic composition)."""
        eps, delta = self.total()
        if self.composition == COMPOSITION_PLD:
            return eps <= self.eps and delta <= self.delta
        return eps == self.eps and delta == self.delta

    def with_labels(self, *, randomness: str, clip: bool, numerics: str | None = None,
                    notes: tuple[str, ...] = ()) -> "PrivacyPlan":
        """The same plan with the run's randomness source, clip mode and numerics recorded, and
        ``notes`` appended to its notes."""
        return PrivacyPlan(
            self.mechanism, self.eps, self.delta, self.components, self.sizes, self.composition,
            self.numerics if numerics is None else numerics, randomness, clip,
            self.paper_accounting, self.notes + tuple(notes), self.public_maps,
        )

    def with_public_maps(self, maps) -> "PrivacyPlan":
        """The same plan recording ``maps`` (a sequence of non-empty str): the public per-record
        maps the caller applied to the rows before build (projection, PCA on a declared-public
        sample, to_ball, BoxMap). They never see the private set, so they change no share; the
        plan states them and that condition (``proofs_notes/28-public-maps.md``). Bad input:
        :class:`dpxattn.errors.ParameterError` naming ``public_maps``."""
        return replace(self, public_maps=self.public_maps + check_public_maps(maps))


    def to_dict(self) -> dict:
        return {
            "mechanism": self.mechanism,
            "eps": float(self.eps),
            "delta": float(self.delta),
            "eps_exact": str(self.eps),
            "delta_exact": str(self.delta),
            "composition": self.composition,
            "total_checks": self.total_checks(),
            "adjacency": "replace one row of (K, V); all entries inside the public bounds",
            "sizes": dict(self.sizes),
            "components": [c.to_dict() for c in self.components],
            "numerics": self.numerics,
            "randomness": self.randomness,
            "clip": self.clip,
            "paper_accounting": self.paper_accounting,
            "notes": list(self.notes),
            "public_maps": list(self.public_maps),
        }

    def __str__(self) -> str:
        checks = '==' if self.total_checks() else '!='
        head = (f"privacy plan ({self.mechanism}): end-to-end (eps, delta) = ({float(self.eps):.6g}, "
                f"{float(self.delta):.6g}), ")
        if self.composition == COMPOSITION_PLD:
            head += (f"optimal composition (pld) of {sum(c.count for c in self.components)} "
                     f"identical components, composed delta {float(self.total()[1]):.6g} "
                     f"[{'<=' if self.total_checks() else '>'} total]")
        elif self.composition == COMPOSITION_NONE:
            head += (f"one Gaussian release (analytic Gaussian mechanism on the l2 sensitivity), "
                     f"no composition [its share {checks} total]")
        else:
            head += (f"{self.composition} composition over "
                     f"{sum(c.count for c in self.components)} components "
                     f"[sum of shares {checks} total]")
        lines = [
            head,
            "  adjacency: replace one row of (K, V), entries inside the public bounds",
            "  sizes: " + ", ".join(f"{k}={v}" for k, v in self.sizes.items()),
        ]
        w = max(len(c.name) for c in self.components)
        for c in self.components:
            lines.append(
                f"  {c.name:<{w}}  x{c.count:<9d} eps {float(c.eps):.4g}  delta {float(c.delta):.4g}"
                f"  sens {c.sensitivity}  (one = {c.per})"
            )
            if c.law == "gaussian":
                lines.append(
                    f"  {'':<{w}}  law gaussian: l2 sensitivity "
                    f"{'?' if c.sensitivity_value is None else f'{float(c.sensitivity_value):.6g}'}"
                    f", sigma {'?' if c.sigma is None else f'{float(c.sigma):.6g}'}"
                    " (no sure envelope: hp_error_bound only)")
        lines.append(f"  numerics: {self.numerics}")
        if self.randomness:
            lines.append(f"  randomness: {self.randomness}")
        lines.append(f"  clip mode: {'on (inputs clipped to the public bounds)' if self.clip else 'off (out-of-bound inputs raise)'}")
        if self.paper_accounting:
            lines.append(f"  paper's accounting, for comparison: {self.paper_accounting}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.public_maps:
            lines.append("  public maps applied to every row before build (fitted on declared-"
                         "public data, never on the private set; per-record, so no share changes):")
            lines.extend(f"    - {m}" for m in self.public_maps)
        return "\n".join(lines)


def check_public_maps(maps) -> tuple[str, ...]:
    """``maps`` (a list or tuple of non-empty str) as a tuple of stripped str, or
    :class:`dpxattn.errors.ParameterError` naming ``public_maps`` (a bare str, another type, an
    empty or non-str entry)."""
    if isinstance(maps, str) or not isinstance(maps, (list, tuple)):
        raise ParameterError("public_maps", "must be a list or tuple of str (one per map)",
                             type(maps).__name__)
    for m in maps:
        if not isinstance(m, str) or not m.strip():
            raise ParameterError("public_maps", "must hold non-empty str descriptions", m)
    return tuple(m.strip() for m in maps)


#: ``PrivacyPlan.composition`` of a plan that is one Gaussian release (nothing is composed)
COMPOSITION_NONE = "none"

#: ``PrivacyPlan.composition`` of a tree plan composed optimally (``plan_tree(composition="pld")``)
COMPOSITION_PLD = "pld"

#: the compositions :func:`plan_tree` offers for its TLap components
TREE_COMPOSITIONS = ("basic", COMPOSITION_PLD)


@lru_cache(maxsize=64)
def _optimal_delta(k: int, eps0: Fraction, delta0: Fraction, eps: Fraction) -> Fraction:
    from dpxattn.reference.optimal_composition import homogeneous_delta
    from dpxattn.reference._mp import to_fraction

    return to_fraction(homogeneous_delta(k, eps0, delta0, eps), "composed delta")


@lru_cache(maxsize=64)
def _optimal_step(k: int, eps: Fraction, delta: Fraction) -> tuple[Fraction, Fraction]:
    """(eps0, delta0) of each of k identical components under optimal composition:
    delta0 = delta / (2k), eps0 the certified largest (proofs_notes/05, "Optimal composition")."""
    from dpxattn.reference.optimal_composition import homogeneous_step_eps

    delta0 = delta / (2 * k)
    return homogeneous_step_eps(k, eps, delta, delta0), delta0


#: the sensitivity each (law, domain) of ``direct`` is calibrated to, in words
_DIRECT_SENSITIVITY_TEXT = {
    ("gaussian", "box"): "2 R_w sqrt(d_v T_s(t_max)) (l2: Frobenius norm of the change of the whole "
                         "matrix, reference.sensitivity.direct_statistic_l2; in secure mode, and "
                         "in any accumulator release, plus the lattice rounding of the exactly "
                         "accumulated S, note 30)",
    ("tlap", "box"): ("2 d_v R_w + max(2 d_v R_w, d_v R_w + 1) * sum_{alpha != 0} M_alpha (l1, "
                      "whole matrix, the exact sup)"),
    ("gaussian", "ball"): "ball: the exact sup of the Frobenius change of the whole matrix over "
                          "rows with ||k||_2 <= R (l2, reference.ball_sensitivity."
                          "ball_direct_statistic_l2; in secure mode, and in any accumulator "
                          "release, plus the lattice rounding of the exactly accumulated S; "
                          "notes 27, 30)",
    ("tlap", "ball"): "ball: 2 d_v R_w (1 + sum_k B_k) + sum_k min(2 B_k, sum_|alpha|=k w_alpha "
                      "M_alpha), B_k the per-degree l1 bound of P(k) on ||k||_2 <= R (l1, whole "
                      "matrix, a sound bound; reference.ball_sensitivity.ball_direct_statistic; "
                      "note 27)",
}


def _make_direct_component(eps, delta, r: int, d_v: int, law: str = "tlap",
                           sensitivity=None, noise_scale=None, domain: str = "box") -> Component:
    """The one component of :func:`plan_direct`: the whole S, budget exactly (eps, delta)."""
    e, dl = Fraction(eps), Fraction(delta)
    text = _DIRECT_SENSITIVITY_TEXT[(law, domain)]
    if law == "gaussian":
        return Component(
            key="S",
            name="S = P(K)^T [V, 1]",
            count=1,
            eps=e,
            delta=dl,
            sensitivity=text,
            per=f"the whole {r} x {d_v + 1} matrix: ONE analytic Gaussian mechanism (iid "
                "N(0, sigma^2) per entry; nothing composed over entries)",
            law="gaussian", sensitivity_norm="l2", sensitivity_value=sensitivity,
            sigma=noise_scale,
        )
    return Component(
        key="S",
        name="S = P(K)^T [V, 1]",
        count=1,
        eps=e,
        delta=dl,
        sensitivity=text,
        per=f"the whole {r} x {d_v + 1} matrix (iid noise per entry)",
        sensitivity_value=sensitivity, laplace_scale=noise_scale,
    )


#: immutable number types that hash by value: the only ones a memo is keyed by
_EXACT_TYPES = (int, float, Fraction)

#: memo of the direct plan's one component (a frozen record of public parameters only: the exact
#: shares of the given (eps, delta), r, d_v); keyed by argument TYPE and value, so 1, 1.0 and
#: Fraction(1) are separate entries, each holding the Fraction its own value converts to exactly
_direct_component_cached = lru_cache(maxsize=256, typed=True)(_make_direct_component)


def _direct_component(eps, delta, r: int, d_v: int, law: str = "tlap", sensitivity=None,
                      noise_scale=None, domain: str = "box") -> Component:
    """:class:`Component` "S" of :func:`plan_direct` (exact shares ``Fraction(eps)``,
    ``Fraction(delta)``), memoised when eps, delta and the recorded numbers are int, float or
    Fraction (or None)."""
    if all(type(x) in _EXACT_TYPES for x in (eps, delta)) and all(
            x is None or type(x) in _EXACT_TYPES for x in (sensitivity, noise_scale)):
        return _direct_component_cached(eps, delta, r, d_v, law, sensitivity, noise_scale, domain)
    # other types (mpf, ...): converted without the memo
    return _make_direct_component(eps, delta, r, d_v, law, sensitivity, noise_scale, domain)


def plan_direct(*, eps, delta, n: int, d: int, d_v: int, degree: int, law: str = "tlap",
                sensitivity=None, noise_scale=None, domain: str = "box") -> PrivacyPlan:
    """Plan of the ``direct`` mechanism: one release of S = P(K)^T [V, 1] (r x (d_v + 1)).

    ``law="tlap"`` (default): the whole matrix is one component, iid TLap(Delta_S, eps, delta)
    on each of its r (d_v + 1) entries, with Delta_S its l1 sensitivity (vector extension,
    PAPER §2.1); basic composition over that one component. ``law="gaussian"``: the whole matrix
    is ONE analytic Gaussian mechanism, iid N(0, sigma^2) per entry with sigma the smallest
    certified for (eps, delta) on the l2 sensitivity Delta_2 (``reference.gaussian.sigma_for``,
    ``reference.sensitivity.direct_statistic_l2``); ``composition`` is ``"none"``.
    ``sensitivity`` and ``noise_scale`` (TLap: the Laplace scale b; Gaussian: sigma) are the
    numbers the build used, recorded in the component (``to_dict()``); they do not change the
    budget. ``domain`` ("box" or "ball") selects the sensitivity's description (the budget is
    the same). Proof notes ``proofs_notes/15-direct-mechanism.md``, ``24-analytic-gaussian.md``,
    ``27-ball-domain.md``.
    """
    check_law(law, "direct")
    if domain not in ("box", "ball"):
        raise _parameter_error("domain", "must be 'box' or 'ball'", domain)
    check_privacy(eps, delta)
    n = check_positive_int("n", n)
    r = feature_dimension(d, degree)
    d_v = check_positive_int("d_v", d_v)
    comp = _direct_component(eps, delta, r, d_v, law, sensitivity, noise_scale, domain)
    gaussian = law == "gaussian"
    return PrivacyPlan(
        mechanism="direct",
        eps=comp.eps,
        delta=comp.delta,
        components=(comp,),
        sizes={"n": n, "d": d, "d_v": d_v, "degree": degree, "r": r},
        composition=COMPOSITION_NONE if gaussian else "basic",
        paper_accounting="not in the paper (our sufficient-statistics mechanism, PAPER §5 item 8)",
        notes=(("Gaussian noise is unbounded: error_bound raises, hp_error_bound is the envelope "
                "(proofs_notes/16-certified-envelope.md)",) if gaussian else ()),
    )


def plan_tree(*, eps, delta, n: int, d: int, d_v: int, degree: int, copies: int = 1,
              grid_size: int | None = None, composition: str = "basic",
              law: str = "tlap", sensitivity=None, noise_scale=None) -> PrivacyPlan:
    """Plan of the ``tree`` mechanism (PAPER §3.7, correct accounting).

    Per copy (``copies`` = l) and per column (d_v value columns + the denominator, w = 1):
    the scalars c0 = sum w and c1 = sum w ||P(k)||^2, and one DPTree per (coordinate t, moment
    m in {0, 1, 2}) over a public grid of ``grid_size`` cells (default n). That is
    J = l (d_v + 1) (3 r + 2) components, each (eps/J, delta/J); each tree spreads its share
    over its L = ceil(log2 G) + 1 levels, a level being one component of (eps/(J L), delta/(J L)).

    ``composition="pld"``: the same K = l (d_v + 1)(3 r L + 2) components, each with the same
    (eps0, delta0), delta0 = delta / (2K) and eps0 the largest whose optimal composition is
    certified (eps, delta)-DP (``proofs_notes/05-composition.md``, "Optimal composition"); about
    27x the basic per-level eps at the demo's K = 13,870.

    ``law="gaussian"``: the WHOLE release (every copy, column, c0, c1 and node) is ONE analytic
    Gaussian mechanism (key ``"tree"``), N(0, (lambda_g sigma)^2) per released number of group g
    (public multipliers lambda_g = 2^e, ``reference.tree_noise_weights``; the constant feature's
    trees withheld, released as 0) with sigma certified for (eps, delta) on the l2 sensitivity
    of the whole vector scaled by mu_g = 1 / lambda_g
    (``reference.sensitivity.tree_release_l2(weights=)``; the l copies are part of that vector,
    hence its sqrt(l) factor); ``composition`` is ``"none"``. ``sensitivity`` and ``noise_scale`` (sigma)
    are the numbers the build used, recorded only. Proof note ``proofs_notes/26-tree-gaussian.md``.
    TLap: ``sensitivity`` and ``noise_scale`` are None or dicts keyed "c0", "c1", "tree_level",
    the largest sensitivity and Laplace scale the build used in each group (recorded only).
    """
    check_law(law, "tree")
    if law == "gaussian":
        if composition != "basic":
            raise _parameter_error("composition", "must be 'basic' with law 'gaussian' (the "
                                   "Gaussian tree is ONE component: nothing to compose)",
                                   composition)
        return _plan_tree_gaussian(eps, delta, n, d, d_v, degree, copies, grid_size,
                                   sensitivity, noise_scale)
    if composition not in TREE_COMPOSITIONS:
        raise _parameter_error("composition", f"must be one of {TREE_COMPOSITIONS}", composition)
    n, d_v, copies, grid, r, L = _tree_sizes(eps, delta, n, d, d_v, degree, copies, grid_size)
    cols = d_v + 1
    J = copies * cols * (TREE_MOMENTS * r + 2)
    e, dl = Fraction(eps), Fraction(delta)
    per_col = f"(copy, column) pair; columns = {d_v} value columns + denominator"
    if composition == COMPOSITION_PLD:
        K = copies * cols * (TREE_MOMENTS * r * L + 2)
        (e_s, d_s), (e_l, d_l) = (_optimal_step(K, e, dl),) * 2
    else:
        (e_s, d_s), (e_l, d_l) = (e / J, dl / J), (e / (J * L), dl / (J * L))
    used = {key: dict(sensitivity_value=(sensitivity or {}).get(key),
                      laplace_scale=(noise_scale or {}).get(key))
            for key in ("c0", "c1", "tree_level")}
    comps = (
        Component("c0", "c0 = sum_i w_i", copies * cols, e_s, d_s,
                  "2 R_w (denominator: R_w = 1)", per_col, **used["c0"]),
        Component("c1", "c1 = sum_i w_i ||P(k_i)||^2", copies * cols, e_s, d_s,
                  "2 R_w T_s(scale d R^2) (denominator: T_s(scale d R^2) - 1)", per_col,
                  **used["c1"]),
        Component("tree_level", "DPTree level (coordinate t, moment m)",
                  copies * cols * TREE_MOMENTS * r * L, e_l, d_l,
                  "2 R_w M_t^m per level (l1)",
                  "(copy, column, coordinate, moment, level)", **used["tree_level"]),
    )
    return PrivacyPlan(
        mechanism="tree",
        eps=e,
        delta=dl,
        components=comps,
        sizes={"n": n, "d": d, "d_v": d_v, "degree": degree, "r": r, "copies": copies,
               "grid": grid, "levels": L, "J": J},
        composition=composition,
        paper_accounting=(
            "each value column's structure (eps, delta) with no split over the d_v columns or the "
            f"{copies} copies, and the denominator released without noise: per output entry only, "
            "and not DP end to end (PAPER §3.7, §5 items 5 and 9)"
        ),
    )


def _tree_sizes(eps, delta, n, d, d_v, degree, copies, grid_size) -> tuple:
    """The tree plan's checks, in one order ((eps, delta), n, d_v, copies, grid_size, degree),
    and its sizes ``(n, d_v, copies, grid, r, L)``."""
    check_privacy(eps, delta)
    n = check_positive_int("n", n)
    d_v = check_positive_int("d_v", d_v)
    copies = check_positive_int("copies", copies)
    grid = n if grid_size is None else check_positive_int("grid_size", grid_size)
    return n, d_v, copies, grid, feature_dimension(d, degree), tree_levels(grid)


def _plan_tree_gaussian(eps, delta, n, d, d_v, degree, copies, grid_size, sensitivity,
                        noise_scale) -> PrivacyPlan:
    """:func:`plan_tree` with ``law="gaussian"``: one Gaussian component, the whole release
    (``proofs_notes/26-tree-gaussian.md``)."""
    n, d_v, copies, grid, r, L = _tree_sizes(eps, delta, n, d, d_v, degree, copies, grid_size)
    nodes = 2 * padded_size(grid) - 1
    count = copies * (d_v + 1) * (2 + nodes * TREE_MOMENTS * r)
    e, dl = Fraction(eps), Fraction(delta)
    comp = Component(
        key="tree",
        name="whole tree release (c0, c1, every node)",
        count=1, eps=e, delta=dl,
        sensitivity="2 R_w sqrt(l d_v S_mu), S_mu = L sum_(t,m) mu_tm^2 M_t^(2m) + mu_c0^2 + "
                    "mu_c1^2 (sum_t M_t^2)^2, when d_v R_w^2 >= 1 (l2: the change of the whole "
                    "released vector scaled by the groups' mu, reference.tree_noise_weights, "
                    "reference.sensitivity.tree_release_l2; in secure mode, and in any "
                    "accumulator release, plus the rounding of the exactly accumulated sums, "
                    "reference.tree_accumulation.rounded_tree_l2)",
        per=f"all {count} released numbers ({copies} copies x {d_v + 1} columns x (c0, c1 and "
            f"{TREE_MOMENTS * r} trees of {nodes} nodes)): ONE analytic Gaussian mechanism "
            "(N(0, (lambda_g sigma)^2) per number of group g, the constant feature's trees "
            "withheld; nothing composed)",
        law="gaussian", sensitivity_norm="l2", sensitivity_value=sensitivity, sigma=noise_scale,
    )
    return PrivacyPlan(
        mechanism="tree", eps=e, delta=dl, components=(comp,),
        sizes={"n": n, "d": d, "d_v": d_v, "degree": degree, "r": r, "copies": copies,
               "grid": grid, "levels": L, "J": 1},
        composition=COMPOSITION_NONE,
        paper_accounting=(
            "each value column's structure (eps, delta) with no split over the d_v columns or the "
            f"{copies} copies, and the denominator released without noise: per output entry only, "
            "and not DP end to end (PAPER §3.7, §5 items 5 and 9)"),
        notes=("Gaussian noise is unbounded: error_bound raises, hp_error_bound is the envelope "
               "(proofs_notes/26-tree-gaussian.md)",),
    )


# ---------------------------------------------------------------------------------------------
# Plans of the one-dimensional building blocks (DPTree, DPTreeDistance, DPTreeHighDim), used by
# dpxattn.reference.dptree / dptree_distance / dptree_highdim when they are released on their own.
# ---------------------------------------------------------------------------------------------

#: composition rules a DPTreeHighDim plan may use across its D coordinates (PAPER §2.2, §3.3)
COMPOSITIONS = ("basic", "advanced")


def _parameter_error(name: str, bound: str, value=None):
    """The typed error of dpxattn.errors (imported here so the additions above stay additive)."""
    from dpxattn.errors import ParameterError

    return ParameterError(name, bound, value)


def _check_moment_power(p) -> int:
    if isinstance(p, bool) or p not in (1, 2):
        raise _parameter_error("p", "must be 1 (weighted l1) or 2 (weighted squared l2)", p)
    return int(p)


def plan_dptree(eps, delta, n: int) -> PrivacyPlan:
    """Plan of one DPTree over n entries (PAPER §3.1; v2 §4/App. D).

    Neighbouring arrays differ in one entry, by at most Delta; that entry lies in exactly one node
    per level, so each of the L = ceil(log2 n) + 1 levels is a vector of l1-sensitivity Delta and
    gets (eps/L, delta/L) (vector extension, PAPER §2.1); basic composition over the levels gives
    (eps, delta). Every one of the 2N - 1 nodes (N = 2^ceil(log2 n)) is noised.
    """
    check_privacy(eps, delta)
    n = check_positive_int("n", n)
    L = tree_levels(n)
    e, dl = Fraction(eps), Fraction(delta)
    comp = Component("tree_level", "DPTree level", L, e / L, dl / L,
                     "Delta per level (l1: one entry changes, it lies in one node per level)",
                     "level (all nodes of one level, iid noise per node)")
    return PrivacyPlan(
        mechanism="dptree", eps=e, delta=dl, components=(comp,),
        sizes={"n": n, "N": padded_size(n), "levels": L, "nodes": 2 * padded_size(n) - 1},
        paper_accounting="TLap(Delta, eps/log n, delta/log n) per node (PAPER §3.1); "
                         "here L = ceil(log2 n) + 1 levels, counted exactly",
        notes=("privacy unit of a DPTree on its own: neighbouring arrays differ in one entry, "
               "by at most Delta",),
    )


def plan_dptree_distance(eps, delta, grid_size: int, *, p: int) -> PrivacyPlan:
    """Plan of one DPTreeDistance on a public grid of ``grid_size`` cells (PAPER §3.2 sound variant).

    p + 1 moment trees (k = 0..p, leaf g = sum over cell g of w_i x_i^k), each (eps/(p+1),
    delta/(p+1)), each spreading its share over its L = ceil(log2 G) + 1 levels: a level is one
    component of (eps/((p+1) L), delta/((p+1) L)) with l1-sensitivity 2 R_w R_x^k under
    replace-one-row (at most two leaves change, so at most two nodes per level).
    """
    check_privacy(eps, delta)
    grid = check_positive_int("grid_size", grid_size)
    p = _check_moment_power(p)
    L = tree_levels(grid)
    m = p + 1
    e, dl = Fraction(eps), Fraction(delta)
    comp = Component("tree_level", "DPTree level (moment k)", m * L, e / (m * L), dl / (m * L),
                     "2 R_w R_x^k per level (l1, replace one (x, w) pair)",
                     "(moment k, level)")
    return PrivacyPlan(
        mechanism=f"dptree_distance(p={p})", eps=e, delta=dl, components=(comp,),
        sizes={"grid": grid, "N": padded_size(grid), "levels": L, "moments": m},
        paper_accounting="(eps, delta) shared by the p + 1 trees over SORTED private keys "
                         "(PAPER §3.2, §5 item 7); here a public grid, exact level count",
        notes=("privacy unit of a DPTreeDistance on its own: replace one (x_i, w_i) pair, "
               "x in [0, R_x], |w| <= R_w",),
    )


def plan_dptree_highdim(eps, delta, grid_size: int, *, D: int, p: int, composition: str = "basic",
                        delta_prime=None, eps_coordinate=None) -> PrivacyPlan:
    """Plan of one DPTreeHighDim: D coordinates, one DPTreeDistance each (PAPER §3.3).

    * ``composition="basic"``: each coordinate gets (eps/D, delta/D); total (eps, delta).
    * ``composition="advanced"``: each coordinate gets (eps_coordinate, delta/D), where
      ``eps_coordinate`` is computed by the caller from the advanced composition theorem
      (dpxattn.reference.composition) so that D-fold composition is (eps, delta + delta')-DP; the
      plan records eps = eps and delta = delta + delta_prime. Its components still list the
      per-level shares, so ``total()`` (basic composition) exceeds eps: the advanced bound is
      what certifies the total, and the plan's notes say so.

    Inside a coordinate the split is that of :func:`plan_dptree_distance`.
    """
    check_privacy(eps, delta)
    grid = check_positive_int("grid_size", grid_size)
    D = check_positive_int("D", D)
    p = _check_moment_power(p)
    if composition not in COMPOSITIONS:
        raise _parameter_error("composition", f"must be one of {COMPOSITIONS}", composition)
    L = tree_levels(grid)
    m = p + 1
    e, dl = Fraction(eps), Fraction(delta)
    notes: tuple[str, ...] = ("privacy unit of a DPTreeHighDim on its own: replace one "
                              "(x_i in R^D, w_i) pair, inside the public bounds",)
    if composition == "basic":
        if delta_prime is not None or eps_coordinate is not None:
            raise _parameter_error("delta_prime/eps_coordinate", "are only for composition='advanced'")
        e_t, total_delta = e / D, dl
    else:
        if delta_prime is None or eps_coordinate is None:
            raise _parameter_error("delta_prime and eps_coordinate",
                                   "are required with composition='advanced'")
        from dpxattn.params import check_positive

        check_positive("eps_coordinate", eps_coordinate)
        dp = Fraction(delta_prime)
        if not 0 < dp < 1:
            raise _parameter_error("delta_prime", "must satisfy 0 < delta_prime < 1", delta_prime)
        e_t, total_delta = Fraction(eps_coordinate), dl + dp
        if e_t > e:
            raise _parameter_error("eps_coordinate", "must be <= eps", eps_coordinate)
        notes += (f"advanced composition over D = {D} coordinates (Dwork-Roth Thm 3.20) with "
                 f"delta' = {float(dp):.6g}: per-coordinate eps {float(e_t):.6g} gives total "
                 f"(eps, delta + delta'); the component shares do NOT add up to eps under basic "
                 f"composition",)
    comp = Component("tree_level", "DPTree level (coordinate t, moment k)", D * m * L,
                     e_t / (m * L), dl / (D * m * L),
                     "2 R_w R_x,t^k per level (l1, replace one (x, w) pair)",
                     "(coordinate, moment, level)")
    return PrivacyPlan(
        mechanism=f"dptree_highdim(p={p})", eps=e, delta=total_delta, components=(comp,),
        sizes={"grid": grid, "N": padded_size(grid), "levels": L, "moments": m, "D": D},
        composition=composition,
        paper_accounting="(eps, delta) split over the D coordinates, basic (v3, inferred from r^2) "
                         "or advanced with delta', c (v1/v2) (PAPER §3.3, §3.7)",
        notes=notes,
    )
