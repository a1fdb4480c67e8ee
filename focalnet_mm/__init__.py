"""focalnet-mm: FocalNet backbones for MMDetection, MMSegmentation and MMPretrain.

Importing this package applies the stack's compatibility fixes and registers ``FocalNet`` in
every installed OpenMMLab library, so configs need only
``custom_imports = dict(imports=['focalnet_mm'], allow_failed_imports=False)``.
"""
from . import compat

compat.apply()

from .models import ARCHS, FocalNet  # noqa: E402
from .registry import HOOK_REGISTERED_IN, REGISTERED_IN  # noqa: E402
from .version import __version__  # noqa: E402
from .weights import sources as _sources  # noqa: E402,F401  (registers focalnet:// with mmengine)

__all__ = ['ARCHS', 'FocalNet', 'REGISTERED_IN', 'HOOK_REGISTERED_IN', '__version__']
