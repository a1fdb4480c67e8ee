from .archs import ARCHS, resolve_arch
from .focal_modulation import FocalModulation, FocalNetBlock, set_focal_impl
from .focalnet import FocalNet

__all__ = ['ARCHS', 'resolve_arch', 'FocalModulation', 'FocalNetBlock', 'FocalNet',
           'set_focal_impl']
