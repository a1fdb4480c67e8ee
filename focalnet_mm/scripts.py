"""The scripts of tools/ as modules (tools/ holds scripts, not a package)."""
import importlib.util
import os.path as osp
from types import ModuleType
from typing import Optional


def load_script(path: str, name: Optional[str] = None) -> ModuleType:
    """Import a script as a module, e.g. to call its main()."""
    spec = importlib.util.spec_from_file_location(name or osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
