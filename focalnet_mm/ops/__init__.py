"""Tensor ops for FocalNet (see :mod:`focalnet_mm.ops.focal_context`); no modules in here."""
from .focal_context import (
    AUTO_TABLE,
    CHOICES,
    CPU_FAST_MIN_POSITIONS,
    ENV_VAR,
    IMPLS,
    aggregate_context,
    auto_impl,
    requested_impl,
    resolve_impl,
    triton_available,
)

__all__ = ['AUTO_TABLE', 'CHOICES', 'CPU_FAST_MIN_POSITIONS', 'ENV_VAR', 'IMPLS',
           'aggregate_context', 'auto_impl', 'requested_impl', 'resolve_impl', 'triton_available']
