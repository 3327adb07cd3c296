"""The package's structure, read from its files with `ast` (nothing is imported): every module
belongs to a part named in deeplab_resnet.LAYERS, imports only from its own part or lower ones
(lazy imports inside functions included), and no modules import each other in a circle; the
parts' docstrings name every module, and docs/layout.md's package map is made from them."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'deeplab_resnet')
sys.path.insert(0, os.path.join(ROOT, 'docs'))
import layout  # noqa: E402  (docs/layout.py)

LAYERS = layout.layers()


def package_modules():
    """{'deeplab_resnet.part.name': path} of every module file in the package."""
    found = {}
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        for name in files:
            if name.endswith('.py'):
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3]
                dotted = rel.replace(os.sep, '.')
                found[dotted[:-len('.__init__')] if dotted.endswith('.__init__') else dotted] = \
                    os.path.join(folder, name)
    return found


def imported_modules(path, modules):
    """The package modules `path` imports anywhere in it: `from a.b import c` counts as a.b.c
    where that is a module, else as a.b; `import a.b` as a.b."""
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = '%s.%s' % (node.module, a.name)
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def part_of(module):
    """'deeplab_resnet.data.labels' -> 'data'; the package itself -> None."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else None


def find_cycle(graph):
    """A list of modules that import each other in a circle, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 'open':
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


MODULES = package_modules()
GRAPH = {m: imported_modules(p, MODULES) - {m} for m, p in MODULES.items()}


def test_every_module_is_in_a_part_of_the_layer_order():
    assert len(set(LAYERS)) == len(LAYERS)
    folders = sorted(d for d in os.listdir(PACKAGE)
                     if os.path.isdir(os.path.join(PACKAGE, d)) and d != '__pycache__')
    assert folders == sorted(LAYERS)
    loose = [m for m in MODULES if part_of(m) not in LAYERS and m != 'deeplab_resnet']
    assert loose == [], 'modules outside the parts: %s' % loose
    assert all(os.path.isfile(os.path.join(PACKAGE, p, '__init__.py')) for p in LAYERS)


def test_nothing_imports_upward():
    upward = []
    for module, deps in sorted(GRAPH.items()):
        here = part_of(module)
        if here is None:   # the package's __init__: its face, above every part
            continue
        for dep in sorted(deps):
            there = part_of(dep)
            if there is None or LAYERS.index(there) > LAYERS.index(here):
                upward.append('%s -> %s' % (module, dep))
    assert upward == []


def test_no_circle():
    assert find_cycle(GRAPH) is None


def test_the_checks_find_what_they_look_for():
    """The graph reader and the cycle search on hand-made cases."""
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) is None
    lazy = GRAPH['deeplab_resnet.predict.segment']   # imports devices inside a function
    assert 'deeplab_resnet.runtime.devices' in lazy
    assert 'deeplab_resnet.common.errors' in GRAPH['deeplab_resnet.data.labels']


def test_the_package_reaches_nothing_outside_it():
    """No module of the package imports the scripts, dataset/, benchmarks/ or tests/."""
    outside = {'dataset', 'benchmarks', 'tests', 'train_msc', 'evaluate_msc',
               'evaluate_msc_with_CRF', 'inference', 'convert'}
    bad = []
    for module, path in MODULES.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            bad += ['%s -> %s' % (module, n) for n in names if n.split('.')[0] in outside]
    assert bad == []


def test_each_part_names_its_modules_and_the_map_is_current():
    for part in LAYERS:
        text = layout.docstring(os.path.join(PACKAGE, part, '__init__.py'))
        assert text.startswith(part + ': ')
        files = sorted(f for f in os.listdir(os.path.join(PACKAGE, part))
                       if f.endswith('.py') and f != '__init__.py')
        missing = [f for f in files if '`%s`' % f not in text]
        assert missing == [], '%s/__init__.py does not name %s' % (part, missing)
    with open(layout.LAYOUT) as f:
        current = f.read()
    assert layout.written(current) == current, 'docs/layout.md is stale: run make layout'


def test_no_two_modules_share_a_name():
    """A reader never has to ask which `convert.py` or `inference.py` is meant: module names
    are unique across the package, the scripts and dataset/."""
    names = {}
    for module in MODULES:
        if not module.endswith('__init__') and part_of(module):
            names.setdefault(module.rsplit('.', 1)[1], []).append(module)
    for top in ('.', 'dataset'):
        for f in os.listdir(os.path.join(ROOT, top)):
            if f.endswith('.py') and f != '__init__.py':
                names.setdefault(f[:-3], []).append(os.path.join(top, f))
    shared = {n: where for n, where in names.items() if len(where) > 1 and n != '__init__'}
    assert shared == {}


NUMPY_ONLY = ('deeplab_resnet.evaluation.metrics', 'deeplab_resnet.evaluation.plots',
              'deeplab_resnet.data.colormap', 'deeplab_resnet.data.labels',
              'deeplab_resnet.data.descriptor', 'deeplab_resnet.data.datalist',
              'deeplab_resnet.common.names', 'deeplab_resnet.common.cli', 'dataset.tools')


def test_numpy_only_modules_load_without_tensorflow():
    """One process imports them one after the other and names the first that brings
    TensorFlow in."""
    code = ('import importlib, sys\n'
            'for m in %r:\n'
            '    importlib.import_module(m)\n'
            '    if "tensorflow" in sys.modules:\n'
            '        sys.exit("%%s imports tensorflow" %% m)\n' % (NUMPY_ONLY,))
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
