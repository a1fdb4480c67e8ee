"""Building models on the meta device, for tests that need only their structure (parameter
counts, shapes, optimizer groups) or that overwrite every value: no memory, and none of the
seconds that random initialisation takes."""
import contextlib
import functools

import pytest
import torch


@contextlib.contextmanager
def on_meta():
    """Modules built inside hold meta tensors. ``torch.linspace`` stays on the CPU: timm reads its
    drop-path rates with ``.tolist()``. timm's FocalNet skips its ``trunc_normal_`` init, which on
    meta tensors runs PyTorch's Python reference kernels (~1 s for L/XL/H) for values that do not
    exist; its modules and shapes are unchanged."""
    with pytest.MonkeyPatch.context() as mp, torch.device('meta'):
        mp.setattr(torch, 'linspace', functools.partial(torch.linspace, device='cpu'))
        try:
            import timm.models.focalnet as timm_focalnet
        except ImportError:
            pass
        else:
            mp.setattr(timm_focalnet, '_init_weights', lambda *args, **kwargs: None)
        yield
