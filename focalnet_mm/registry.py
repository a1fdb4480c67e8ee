"""Registers FocalNet in every installed OpenMMLab model registry (mmdet, mmseg, mmpretrain).

A library that is not installed is skipped; one that is installed but fails to import is an
error worth seeing, so it is re-raised with the library named.
"""
import importlib
import importlib.util

from .models import FocalNet

#: library module -> registry module holding MODELS
LIBRARIES = {'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry', 'mmpretrain': 'mmpretrain.registry'}


def register_all(module=FocalNet, name='FocalNet'):
    """Add ``module`` under ``name`` to each installed library's MODELS; returns the libraries."""
    registered = []
    for library, registry_module in LIBRARIES.items():
        if importlib.util.find_spec(library) is None:
            continue
        try:
            models = importlib.import_module(registry_module).MODELS
        except Exception as e:  # an installed but broken library must not pass silently
            raise ImportError(f'{library} is installed but {registry_module} failed to import ({e}); '
                              'run "bash tools/setup_env.sh" to repair the environment.') from e
        if models.get(name) is not module:
            models.register_module(name=name, module=module, force=True)
        registered.append(library)
    return registered


REGISTERED_IN = register_all()
