"""PNG plots of the verification report (DESIGN §6; note 20).

Three kinds of figure, each written to a given path and returned as that path:

* :func:`plot_noise_histogram` — a sampler's histogram beside the exact density (check 1);
* :func:`plot_curves` — privacy-utility curves, error against eps or n (check 7);
* :func:`plot_audit_bounds` — empirical eps lower bounds against the claimed eps, for correct
  and mutant mechanisms (check 4, called by ``dpxattn.verification.audit`` users).

Every figure is drawn on its own ``matplotlib.figure.Figure`` rendered by the Agg canvas:
``matplotlib.pyplot`` is never imported, so no global backend, style or rcParams change and no
figure outlives its function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

__all__ = [
    "Curve",
    "AuditPoint",
    "plot_noise_histogram",
    "plot_curves",
    "plot_audit_bounds",
]

#: figure size (inches) and resolution used for every report plot
FIGSIZE = (6.4, 4.2)
DPI = 110


def _new_figure(nrows: int = 1, ncols: int = 1, figsize=FIGSIZE):
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Figure, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_noise_histogram(
    samples: np.ndarray,
    density: Callable[[np.ndarray], np.ndarray],
    support: float,
    path: Path | str,
    *,
    title: str,
    bins: int = 120,
    extra: Mapping[str, np.ndarray] | None = None,
    regions: Sequence[tuple[float, float]] = (),
    region_label: str = "",
) -> Path:
    """Histogram of ``samples`` (1-D) against the exact ``density`` on ``[-support, support]``.

    Two panels: linear and logarithmic density axes (the log panel shows the tails and the
    truncation at +-support, drawn as dashed lines). ``extra`` maps a label to more samples
    (e.g. the x0.7 / x1.3 mutants), drawn as step outlines on the same bins. ``regions`` are
    (lo, hi) intervals shaded in both panels (e.g. the delta regions), labelled ``region_label``.
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    lim = 1.35 * support if extra else 1.05 * support
    edges = np.linspace(-lim, lim, bins + 1)
    grid = np.linspace(-support, support, 801)
    dens = np.asarray(density(grid), dtype=np.float64)
    fig, axes = _new_figure(1, 2, figsize=(10.5, 4.0))
    for ax, log in zip(axes[0], (False, True)):
        ax.hist(samples, bins=edges, density=True, color="#8fb3d9", label=f"sampler ({samples.size:,} draws)")
        for (label, other), colour in zip((extra or {}).items(), ("#d95f02", "#7570b3", "#1b9e77")):
            ax.hist(np.asarray(other, dtype=np.float64).ravel(), bins=edges, density=True,
                    histtype="step", color=colour, linewidth=1.2, label=label)
        ax.plot(grid, dens, color="black", linewidth=1.3, label="exact density (reference)")
        for x in (-support, support):
            ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
        for k, (lo, hi) in enumerate(regions):
            ax.axvspan(lo, hi, color="#fdd49e", alpha=0.45, linewidth=0,
                       label=region_label if (k == 0 and region_label) else None)
        ax.set_xlabel("noise value")
        ax.set_ylabel("density" + (" (log scale)" if log else ""))
        if log:
            ax.set_yscale("log")
            positive = dens[dens > 0]
            if positive.size:
                ax.set_ylim(bottom=max(positive.min() * 0.2, 1e-12))
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


@dataclass(frozen=True)
class Curve:
    """One line of a curve plot: y against x, optionally with a shaded band [lower, upper]."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    lower: Sequence[float] | None = None
    upper: Sequence[float] | None = None
    style: str = "-o"
    color: str | None = None


def plot_curves(
    curves: Sequence[Curve],
    path: Path | str,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = True,
    logy: bool = True,
    hline: tuple[float, str] | None = None,
) -> Path:
    """Several labelled curves on one axis (privacy-utility: error vs eps, vs n, vs R).

    Non-positive values are dropped from a log axis. ``hline`` = (y, label) draws a reference
    level (e.g. the chance level of a retrieval task).
    """
    fig, axes = _new_figure()
    ax = axes[0][0]
    for c in curves:
        x = np.asarray(c.x, dtype=np.float64)
        y = np.asarray(c.y, dtype=np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        if logy:
            keep &= y > 0
        if logx:
            keep &= x > 0
        (line,) = ax.plot(x[keep], y[keep], c.style, label=c.label, markersize=4, linewidth=1.2,
                          color=c.color)
        if c.lower is not None and c.upper is not None:
            lo = np.asarray(c.lower, dtype=np.float64)[keep]
            hi = np.asarray(c.upper, dtype=np.float64)[keep]
            ax.fill_between(x[keep], lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    if hline is not None:
        ax.axhline(hline[0], color="grey", linestyle=":", linewidth=1.0, label=hline[1])
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.6)
    ax.legend(fontsize=7)
    return _save(fig, path)


@dataclass(frozen=True)
class AuditPoint:
    """One audit result for :func:`plot_audit_bounds`.

    ``label`` names the mechanism (e.g. "direct", "mutant: noise x0.5"); ``claimed_eps`` is the
    eps the mechanism claims; ``eps_lower_bound`` the audit's statistically valid lower bound
    (may be 0 or negative when nothing was found); ``mutant`` marks deliberately wrong variants.
    """

    label: str
    claimed_eps: float
    eps_lower_bound: float
    mutant: bool = False


def plot_audit_bounds(points: Sequence[AuditPoint], path: Path | str, *, title: str) -> Path:
    """Audit eps lower bounds against the claimed eps, one bar pair per mechanism.

    A correct mechanism's bar (blue) must stay below its claim (the black tick); a mutant's bar
    (red) above its claim shows the audit exposed it. Bounds that are infinite (an event seen
    under D and never under D') are drawn clipped at the top and marked "inf".
    """
    if not points:
        raise ValueError("points must be a non-empty sequence of AuditPoint")
    fig, axes = _new_figure(figsize=(max(6.4, 0.9 * len(points) + 2.0), 4.4))
    ax = axes[0][0]
    finite = [p.eps_lower_bound for p in points if math.isfinite(p.eps_lower_bound)]
    top = max([p.claimed_eps for p in points] + finite + [1e-3]) * 1.25
    xs = np.arange(len(points))
    for x, p in zip(xs, points):
        value = p.eps_lower_bound if math.isfinite(p.eps_lower_bound) else top
        value = max(value, 0.0)
        ax.bar(x, value, width=0.6, color="#d62728" if p.mutant else "#1f77b4", alpha=0.85)
        ax.plot([x - 0.38, x + 0.38], [p.claimed_eps] * 2, color="black", linewidth=2.0)
        text = "inf" if not math.isfinite(p.eps_lower_bound) else f"{p.eps_lower_bound:.3g}"
        ax.annotate(text, (x, value), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(xs, [p.label for p in points], rotation=25, ha="right", fontsize=7)
    ax.set_ylim(0, top * 1.08)
    ax.set_ylabel("eps")
    ax.set_title(title, fontsize=10)
    handles = [
        Patch(color="#1f77b4", label="lower bound, correct mechanism"),
        Patch(color="#d62728", label="lower bound, mutant"),
        Line2D([], [], color="black", linewidth=2.0, label="claimed eps"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    return _save(fig, path)
