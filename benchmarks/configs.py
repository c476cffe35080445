"""Benchmark configurations (DESIGN §7; ``research/PERF_ANCHORS.md`` §5).

A configuration is (d, degree s, n, m query tokens, d_v, R, R_w); dtype float64. The canonical one
is d = 8, s = 3 (r = 165), n = 1e5, m = 1024, d_v = 8, R = R_w = 1; the secondary ones are
(d=4, s=2), (d=16, s=2) and (d=16, s=3, n=1e4). ``--configs`` takes names or specs
``d<d>s<s>[n<n>][m<m>][v<d_v>]`` (n may be written 1e5), comma-separated. ``--quick`` shrinks
every n and m so that the whole run takes seconds (its ratios are then not meaningful).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from dpxattn.accounting import feature_dimension

__all__ = ["BenchConfig", "NAMED", "DEFAULT_NAMES", "parse_configs", "quick_version", "QUICK_TREE_N",
           "SCALING_GRIDS", "ScalingGrids"]


@dataclass(frozen=True)
class BenchConfig:
    """One configuration; ``name`` labels its table."""

    name: str
    d: int
    degree: int
    n: int
    m: int = 1024
    d_v: int = 8
    R: float = 1.0
    R_w: float = 1.0
    eps: float = 1.0
    delta: float = 1e-6

    @property
    def r(self) -> int:
        """r = C(d + s, s)."""
        return feature_dimension(self.d, self.degree)

    @property
    def scale(self) -> float:
        """The paper's scale 1/d."""
        return 1.0 / self.d

    def label(self) -> str:
        return (f"{self.name}: d={self.d}, s={self.degree} (r={self.r}), n={self.n}, m={self.m}, "
                f"d_v={self.d_v}, float64, R={self.R:g}, R_w={self.R_w:g}, "
                f"eps={self.eps:g}, delta={self.delta:g}")

    def to_dict(self) -> dict:
        return {"name": self.name, "d": self.d, "degree": self.degree, "r": self.r, "n": self.n,
                "m": self.m, "d_v": self.d_v, "R": self.R, "R_w": self.R_w, "eps": self.eps,
                "delta": self.delta, "dtype": "float64"}


NAMED = {
    "canonical": BenchConfig("canonical", d=8, degree=3, n=100_000),
    "d4s2": BenchConfig("d4s2", d=4, degree=2, n=100_000),
    "d16s2": BenchConfig("d16s2", d=16, degree=2, n=100_000),
    "d16s3": BenchConfig("d16s3", d=16, degree=3, n=10_000),
}
DEFAULT_NAMES = ("canonical", "d4s2", "d16s2", "d16s3")

_SPEC = re.compile(r"^d(\d+)s(\d+)(?:n([0-9.e+]+))?(?:m(\d+))?(?:v(\d+))?$")


def _count(text: str) -> int:
    value = float(text)
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise ValueError(f"--configs: n must be a positive integer (got {text!r})")
    return int(value)


def parse_configs(text: str | None) -> list[BenchConfig]:
    """Configurations named in ``text`` (None or "all": the four defaults), in the given order."""
    if text is None or text.strip() in ("", "all"):
        return [NAMED[k] for k in DEFAULT_NAMES]
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if item in NAMED:
            out.append(NAMED[item])
            continue
        match = _SPEC.match(item)
        if not match:
            raise ValueError(f"--configs: unknown configuration {item!r}; use one of "
                             f"{', '.join(NAMED)} or a spec like d8s3n1e5m1024v8")
        d, s, n, m, v = match.groups()
        out.append(BenchConfig(item, d=int(d), degree=int(s), n=_count(n) if n else 100_000,
                               m=int(m) if m else 1024, d_v=int(v) if v else 8))
    if not out:
        raise ValueError("--configs: no configuration given")
    return out


def quick_version(cfg: BenchConfig) -> BenchConfig:
    """The tiny ``--quick`` variant: n <= 256 (configs with n <= 1e4: 128), m <= 16 (the tree
    rows of a quick run use n = :data:`QUICK_TREE_N`)."""
    return replace(cfg, n=min(cfg.n, 256 if cfg.n > 10_000 else 128), m=min(cfg.m, 16))


#: n of the tree rows in ``--quick`` runs (a tree at d=16, s=3 has 26163 entries per node)
QUICK_TREE_N = 8


@dataclass(frozen=True)
class ScalingGrids:
    """Grids of the slope table (PERF_ANCHORS §5, S1-S7)."""

    build_n: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    tree_n: tuple[int, ...] = (1_000, 10_000, 100_000)
    sdpa_n: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    r_n: int = 100_000
    r_series: tuple[tuple[int, int], ...] = ((8, 1), (8, 2), (8, 3), (8, 4), (16, 1), (16, 2), (16, 3))
    n_series_d: int = 8
    n_series_degree: int = 2
    m: int = 1024
    d_v: int = 8

    @classmethod
    def quick(cls) -> "ScalingGrids":
        return cls(build_n=(64, 256, 1024), tree_n=(4, 8, 16), sdpa_n=(64, 256, 1024),
                   r_n=256, r_series=((4, 1), (4, 2), (4, 3)), m=16)


SCALING_GRIDS = ScalingGrids()
