"""The one fix that must run before mmpretrain is first imported: stdlib only, no package imports.

mmpretrain 1.2.0 imports its multimodal models (BLIP, ...) whenever transformers >= 4.28 is
installed; under transformers 5.x they fail to define ("NoneType takes no arguments"), and because
``mmdet.models`` imports mmpretrain, detection breaks too. With transformers >= 5 we switch
mmpretrain's ``WITH_MULTIMODAL`` flag off right after its dependency module runs; those models then
raise mmpretrain's own "requires transformers" message, everything else imports.

``import focalnet_mm`` applies it, and tools/setup_env.sh adds a ``.pth`` file to the environment
that runs this file (by path, without importing focalnet_mm) at interpreter start, so that even
``import mmdet.models`` before ``import focalnet_mm`` works.
"""
import importlib.abc
import importlib.metadata
import sys

TARGET = 'mmpretrain.utils.dependency'


def transformers_major():
    try:
        return int(importlib.metadata.version('transformers').split('.')[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


class AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``patch(module)`` right after module ``name`` is first executed."""

    focalnet_mm_fix = True  # recognised across copies of this file (run by path and imported)

    def __init__(self, name, patch):
        self.name, self.patch = name, patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                exec_module, patch = spec.loader.exec_module, self.patch

                def exec_and_patch(module):
                    exec_module(module)
                    patch(module)

                spec.loader.exec_module = exec_and_patch
                return spec
        return None


def disable_mmpretrain_multimodal(dependency_module):
    dependency_module.WITH_MULTIMODAL = False


def keep_mmpretrain_importable():
    if (transformers_major() or 0) < 5:
        return
    if TARGET in sys.modules:
        disable_mmpretrain_multimodal(sys.modules[TARGET])
    elif not any(getattr(f, 'focalnet_mm_fix', False) and getattr(f, 'name', None) == TARGET
                 for f in sys.meta_path):
        sys.meta_path.insert(0, AfterImport(TARGET, disable_mmpretrain_multimodal))


if __name__ == '<run_path>':  # executed by the .pth file at interpreter start
    keep_mmpretrain_importable()
