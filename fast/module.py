"""``PrivateCrossAttention``: an ``nn.Module`` that answers queries from a built DP structure.

Paper: DPTreeCrossAttention.Query (v2 §3); spec PAPER.md §3.5 (queries are
post-processing of the released structure, so any number of forward passes, adaptive ones
included, cost no privacy); DESIGN §2, §4.

The module holds a built :class:`dpxattn.fast.cross_attention.DPCrossAttention`. Its released
tensors are registered as **buffers** (never parameters): they move with ``.to(device)`` and are
saved in ``state_dict``, they never require gradients, and nothing can flow into the private
side (which is not stored anywhere). Gradients with respect to the query do flow through
``forward`` (e.g. for a gradient-ascent search of the error envelope).

Shapes: ``forward(Q)`` takes (..., d) and returns (..., d_v) in Q's dtype; leading dimensions
are flattened into m tokens and restored.
"""

from __future__ import annotations

import torch
from torch import nn

from dpxattn.fast.cross_attention import DPCrossAttention

__all__ = ["PrivateCrossAttention"]


class PrivateCrossAttention(nn.Module):
    """Cross-attention of model queries against a private key/value set, released with DP.

    Build with :meth:`from_private` (K, V and the privacy parameters; K and V are not kept) or
    wrap an existing structure. ``forward(Q)`` = ``structure.query(Q)``;
    :meth:`error_bound` / :meth:`hp_error_bound` certify the same answers; ``privacy`` is the
    structure's plan.
    """

    def __init__(self, structure: DPCrossAttention) -> None:
        super().__init__()
        if not isinstance(structure, DPCrossAttention):
            raise TypeError("structure must be a dpxattn.fast.DPCrossAttention")
        self._structure = structure
        for name, tensor in structure.released_tensors().items():
            self.register_buffer(name, tensor, persistent=True)

    @classmethod
    def from_private(cls, K, V, **build_kwargs) -> "PrivateCrossAttention":
        """Build the DP structure (``DPCrossAttention.build(K, V, **build_kwargs)``) and wrap it."""
        return cls(DPCrossAttention.build(K, V, **build_kwargs))

    @property
    def structure(self) -> DPCrossAttention:
        return self._structure

    @property
    def privacy(self):
        return self._structure.privacy

    def _flat(self, Q: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        if Q.dim() < 1:
            raise ValueError("Q must have at least one dimension (..., d)")
        lead = tuple(Q.shape[:-1])
        return Q.reshape(-1, Q.shape[-1]), lead

    def forward(self, Q: torch.Tensor) -> torch.Tensor:
        flat, lead = self._flat(Q)
        return self._structure.query(flat).reshape(*lead, self._structure.d_v)

    def error_bound(self, Q: torch.Tensor) -> torch.Tensor:
        flat, lead = self._flat(Q)
        return self._structure.error_bound(flat).reshape(*lead, self._structure.d_v)

    def hp_error_bound(self, Q: torch.Tensor, failure_prob) -> torch.Tensor:
        flat, lead = self._flat(Q)
        return self._structure.hp_error_bound(flat, failure_prob).reshape(
            *lead, self._structure.d_v)

    def _apply(self, fn, recurse=True):
        """Move the structure with the buffers; its released numbers stay float64 (a cast such
        as ``.float()`` moves device only: queries may still be float32)."""
        super()._apply(fn, recurse)
        device = next(iter(self.buffers())).device
        dtypes_ok = all(b.dtype == torch.float64 for b in self.buffers())
        if not dtypes_ok or device != self._structure.device:
            self._structure = self._structure.to(device)
            for name, tensor in self._structure.released_tensors().items():
                self._buffers[name] = tensor
        return self

    def extra_repr(self) -> str:
        return repr(self._structure)
