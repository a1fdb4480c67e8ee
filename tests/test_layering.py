"""The package imports downwards only (docs/architecture.md "Floors"): no cycle, nothing points
back up. Each top-level module or package of focalnet_mm stands on one floor below."""
import ast
import glob
import os.path as osp

from conftest import REPO_ROOT

#: a part may import parts of lower rank (and itself); equal ranks may not import each other
LAYERS = {'archs': 0, 'compat': 0, 'version': 0, 'ops': 0, 'scripts': 0, 'commands': 0,  # foundations
          'weights': 1,  # checkpoint files -> a backbone's state dict
          'models': 2,  # the backbone
          'engine': 3, 'visualization': 3,  # training machinery; hooks reading the backbone
          'registry': 4, 'checks': 4, 'config': 4, 'deploy': 4,  # registration; what the tools use
          'runner_building': 5,  # a Runner from a prepared config
          '__init__': 6, '__main__': 6}


def part(module: str) -> str:
    """'focalnet_mm.weights.io' -> 'weights'; 'focalnet_mm' -> '__init__'."""
    return (module.split('.') + ['__init__'])[1]


def imports_of(source: str, module: str, is_package: bool = False):
    """focalnet_mm modules that ``source`` (module ``module``) imports, also inside functions."""
    package = module.split('.') if is_package else module.split('.')[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split('.')[0] == 'focalnet_mm')
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = '.'.join(base + ([node.module] if node.module else []))
            if target == 'focalnet_mm':  # `from . import compat`
                yield from (f'focalnet_mm.{a.name}' for a in node.names)
            elif target.split('.')[0] == 'focalnet_mm':
                yield target


def test_imports_point_down():
    upward = []
    for path in sorted(glob.glob(osp.join(REPO_ROOT, 'focalnet_mm', '**', '*.py'), recursive=True)):
        relative = osp.relpath(path, REPO_ROOT)
        is_package = relative.endswith('__init__.py')
        module = osp.dirname(relative) if is_package else relative[:-3]
        module = module.replace(osp.sep, '.')
        with open(path) as f:
            targets = list(imports_of(f.read(), module, is_package))
        for name in {part(module)} | {part(target) for target in targets}:
            assert name in LAYERS, f'focalnet_mm/{name} stands on no floor: add it to LAYERS here'
        for target in targets:
            if part(target) != part(module) and LAYERS[part(target)] >= LAYERS[part(module)]:
                upward.append(f'{relative} imports {target}')
    assert not upward, upward


def test_relative_imports_are_resolved():
    source = 'from ..models.focalnet import FocalNet\nfrom . import io\nfrom .. import compat\n'
    assert list(imports_of(source, 'focalnet_mm.weights.loading')) == [
        'focalnet_mm.models.focalnet', 'focalnet_mm.weights', 'focalnet_mm.compat']
    assert list(imports_of('from .io import x\n', 'focalnet_mm.weights', is_package=True)) == [
        'focalnet_mm.weights.io']


def _module_graph():
    """{module: focalnet_mm modules it imports} over the package (imports inside functions too)."""
    graph = {}
    for path in sorted(glob.glob(osp.join(REPO_ROOT, 'focalnet_mm', '**', '*.py'), recursive=True)):
        relative = osp.relpath(path, REPO_ROOT)
        is_package = relative.endswith('__init__.py')
        module = (osp.dirname(relative) if is_package else relative[:-3]).replace(osp.sep, '.')
        with open(path) as f:
            graph[module] = set(imports_of(f.read(), module, is_package))
    return graph


def _cycle(graph):
    """One import cycle among the modules of ``graph`` (a package counts as its __init__), or []."""
    state, stack = {}, []

    def visit(module):
        state[module] = 'open'
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in graph or target == module:
                continue
            if state.get(target) == 'open':
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[module] = 'done'
        stack.pop()
        return []

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return []


def test_no_import_cycle():
    """No module imports itself back through others (a package's own __init__ aside: it
    imports its submodules, which may import their siblings through it)."""
    graph = {m: {t for t in targets if not (m.startswith(t + '.') and t.count('.') >= 1)}
             for m, targets in _module_graph().items()}
    assert _cycle(graph) == []


def test_a_cycle_is_found():
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert _cycle({'a': {'b'}, 'b': set()}) == []
