from ..archs import ARCHS, resolve_arch
from .focal_modulation import FocalModulation, FocalNetBlock
from .focalnet import FocalNet, set_focal_impl

__all__ = ['ARCHS', 'resolve_arch', 'FocalModulation', 'FocalNetBlock', 'FocalNet',
           'set_focal_impl']
