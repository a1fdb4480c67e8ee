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


def optimizer_groups(model, optim_wrapper_cfg):
    """{parameter name: the optimizer param group mmengine puts it in} for ``optim_wrapper_cfg``
    (meta parameters are fine); every parameter must land in exactly one group."""
    from mmengine.optim import build_optim_wrapper
    wrapper = build_optim_wrapper(model, optim_wrapper_cfg)
    groups = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert len(groups) == len(named)
    return {name: groups[id(p)] for name, p in named.items()}


def norm_parameter_names(model, types=(torch.nn.LayerNorm, torch.nn.GroupNorm)):
    """Names of the parameters that belong to normalization layers."""
    return {f'{m_name}.{p_name}' if m_name else p_name
            for m_name, m in model.named_modules() if isinstance(m, types)
            for p_name, _ in m.named_parameters(recurse=False)}
