"""dpxattn: differentially private cross-attention that a reviewer can check.

Sub-packages: ``dpxattn.reference`` (exact, mpmath), ``dpxattn.fast`` (torch),
``dpxattn.verification`` (statistical and exact checks), ``dpxattn.benchmarks``.
"""

from __future__ import annotations

from dpxattn.accounting import PrivacyPlan
from dpxattn.errors import BoundError, DPXAttnError, ParameterError, ShapeError, UniformsError

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "PrivacyPlan",
    "DPXAttnError",
    "ParameterError",
    "BoundError",
    "ShapeError",
    "UniformsError",
]
