"""The package's console commands: every tool it ships, run by name from any folder.

``focalnet-mm TOOL ARGS...`` (or ``python -m focalnet_mm TOOL ARGS...``) runs the script
``TOOL`` of the tools shipped in ``focalnet_mm/.mim/tools`` (in a clone: ``tools/``), with mmdet's
command line as in the docs: ``focalnet-mm train CONFIG``, ``focalnet-mm check-dataset CONFIG``,
``focalnet-mm analyze-logs plot_curve ...``. A tool's name is its file name with ``-`` for ``_``
(``tools/analysis_tools/get_flops.py`` is ``get-flops``); ``focalnet-mm`` alone lists them.
Python tools run in this process (:func:`runpy.run_path`, as ``python tools/TOOL.py`` would),
shell tools (``dist-train``, ``slurm-train``, ...) with bash.

``focalnet-download-weights`` is ``focalnet-mm download-weights`` under its own name.
"""
import os
import os.path as osp
import runpy
import subprocess
import sys
from typing import Dict, List, Optional

#: tools of a clone that make no sense for an installed package (they build the clone's .venv)
CLONE_ONLY = {'setup-env'}


def tools_folder() -> str:
    """``focalnet_mm/.mim/tools``: copies in an installed wheel, a link to ``tools/`` in a clone."""
    return osp.join(osp.dirname(osp.abspath(__file__)), '.mim', 'tools')


def available_tools(folder: Optional[str] = None) -> Dict[str, str]:
    """Tool name -> script path, for every ``.py`` and ``.sh`` script under ``folder``."""
    folder = folder or tools_folder()
    tools = {}
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '_')))
        for name in sorted(files):
            stem, ext = osp.splitext(name)
            if ext in ('.py', '.sh') and not stem.startswith('_'):
                tools.setdefault(stem.replace('_', '-'), osp.join(root, name))
    return {name: path for name, path in sorted(tools.items()) if name not in CLONE_ONLY}


def first_doc_line(path: str) -> str:
    """The first line of a script's docstring or leading comment (without importing it)."""
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip().lstrip('#').strip().strip('"').strip("'").strip()
            if line and not line.startswith(('!', 'Copyright', '-*-', 'usage')):
                return line
    return ''


def usage(tools: Dict[str, str]) -> str:
    width = max(map(len, tools))
    lines = ['usage: focalnet-mm TOOL [ARGS...]   (python -m focalnet_mm TOOL ...; '
             'focalnet-mm TOOL -h for its options)', '', 'tools:']
    lines += [f'  {name:<{width}}  {first_doc_line(path)[:90]}' for name, path in tools.items()]
    return '\n'.join(lines)


def run_tool(path: str, args: List[str]) -> int:
    """Run one tool as ``python TOOL ARGS`` / ``bash TOOL ARGS`` would; its exit status."""
    if path.endswith('.sh'):
        return subprocess.call(['bash', path, *args])
    argv, sys.argv = sys.argv, [path, *args]
    try:
        runpy.run_path(path, run_name='__main__')
    except SystemExit as e:  # the tools end with sys.exit(main())
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = argv
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    tools = available_tools()
    if not tools:
        print(f'error: no tools in {tools_folder()}: the package was installed without its '
              'tools; reinstall it with pip install (a wheel or sdist carries them)', file=sys.stderr)
        return 1
    if not argv or argv[0] in ('-h', '--help', 'help', '--list'):
        print(usage(tools))
        return 0
    name, args = argv[0], argv[1:]
    if name not in tools:
        close = [t for t in tools if name.replace('_', '-') in t]
        hint = f' (did you mean {", ".join(close)}?)' if close else ''
        print(f'error: focalnet-mm has no tool {name!r}{hint}; focalnet-mm lists them',
              file=sys.stderr)
        return 2
    return run_tool(tools[name], args)


def download_weights(argv: Optional[List[str]] = None) -> int:
    """``focalnet-download-weights``: ``focalnet-mm download-weights`` under its own name."""
    return main(['download-weights', *(sys.argv[1:] if argv is None else argv)])


if __name__ == '__main__':
    sys.exit(main())
