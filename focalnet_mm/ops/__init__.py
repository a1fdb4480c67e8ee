"""Fast paths for FocalNet (see :mod:`focalnet_mm.ops.focal_context`)."""
from .focal_context import (CPU_FAST_MIN_POSITIONS, ENV_VAR, IMPLS, aggregate_context_channels_last,
                            auto_impl, focal_modulation_channels_last, resolve_impl, set_focal_impl,
                            set_impl, triton_available)

__all__ = ['CPU_FAST_MIN_POSITIONS', 'ENV_VAR', 'IMPLS', 'aggregate_context_channels_last',
           'auto_impl', 'focal_modulation_channels_last', 'resolve_impl', 'set_focal_impl',
           'set_impl', 'triton_available']
