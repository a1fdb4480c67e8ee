"""focalnet-mm: FocalNet backbones for MMDetection, MMSegmentation and MMPretrain.

Importing this package registers ``FocalNet`` and the types that keep a run safe (hooks, loop,
optimizer wrappers, data set wrapper, runners: :mod:`focalnet_mm.registry`) in every installed
OpenMMLab library, so configs need only
``custom_imports = dict(imports=['focalnet_mm'], allow_failed_imports=False)`` (which
``configs/_base_/safe_training.py`` holds). It also applies
the fixes of :mod:`focalnet_mm.compat` that the installed versions need (each one logged once).
"""
from . import compat

compat.apply()

from .archs import ARCHS  # noqa: E402
from .models import FocalNet  # noqa: E402
from .registry import HOOK_REGISTERED_IN, REGISTERED_IN  # noqa: E402
from .version import __version__  # noqa: E402
from .weights import io as _weights_io  # noqa: E402,F401  (registers focalnet:// with mmengine)

__all__ = ['ARCHS', 'FocalNet', 'REGISTERED_IN', 'HOOK_REGISTERED_IN', '__version__']
