"""weights/ is a floor of its own: its modules import each other in one direction only (no circle,
imports inside functions included) and nothing of the package above them (only archs.py)."""
import ast
import glob
import os.path as osp

from conftest import REPO_ROOT

WEIGHTS = osp.join(REPO_ROOT, 'focalnet_mm', 'weights')


def package_imports(path):
    """(weights modules, other focalnet_mm modules) that a module imports, at any depth."""
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import ... / from . import x
                inside.update([node.module.split('.')[0]] if node.module
                              else [alias.name for alias in node.names])
            elif node.level > 1:
                outside.add(node.module)
            elif (node.module or '').startswith('focalnet_mm.weights'):
                inside.add(node.module.split('.')[2] if node.module.count('.') > 1 else '?')
            elif (node.module or '').startswith('focalnet_mm'):
                outside.add(node.module)
        elif isinstance(node, ast.Import):
            outside.update(a.name for a in node.names if a.name.startswith('focalnet_mm'))
    return inside, outside


def test_weights_modules_form_no_import_circle_and_import_nothing_above():
    graph = {}
    for path in sorted(glob.glob(osp.join(WEIGHTS, '*.py'))):
        name = osp.splitext(osp.basename(path))[0]
        inside, outside = package_imports(path)
        assert outside <= {'archs'}, (name, outside)  # never models/, engine/, deploy, tools
        if name != '__init__':  # the package imports its modules; they never import it
            assert '?' not in inside and '__init__' not in inside, (name, inside)
            graph[name] = inside
    assert {'integrity', 'download', 'sources', 'io', 'formats', 'adapt', 'loading'} <= set(graph)

    done, path = set(), []

    def visit(module):
        assert module not in path, 'import circle: ' + ' -> '.join(path[path.index(module):] + [module])
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            visit(imported)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)
