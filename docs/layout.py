"""Writes the package map of docs/layout.md from the package's own docstrings: the parts in
the order of deeplab_resnet.LAYERS, each with its subpackage docstring (what it holds, module
by module). `make layout` runs it; tests/test_package_layers.py fails when the map is stale
or a module is missing from its part's docstring. Reads the files with `ast`: nothing is
imported, so no TensorFlow."""
import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'deeplab_resnet')
LAYOUT = os.path.join(ROOT, 'docs', 'layout.md')
BEGIN = '<!-- package map: written by docs/layout.py from the subpackages\' docstrings -->'
END = '<!-- end of the package map -->'


def docstring(path):
    with open(path) as f:
        return ast.get_docstring(ast.parse(f.read())) or ''


def layers():
    """deeplab_resnet.LAYERS, read from the package's __init__.py without importing it."""
    with open(os.path.join(PACKAGE, '__init__.py')) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ['LAYERS']:
            return tuple(ast.literal_eval(node.value))
    raise SystemExit('deeplab_resnet/__init__.py: no LAYERS')


def package_map():
    """The generated section (between BEGIN and END), as text."""
    lines = [BEGIN, '']
    for i, part in enumerate(layers()):
        text = docstring(os.path.join(PACKAGE, part, '__init__.py'))
        lines.append('### %d. `deeplab_resnet/%s/`' % (i + 1, part))
        lines.append('')
        lines.extend(text.splitlines())
        lines.append('')
    lines.append(END)
    return '\n'.join(lines)


def written(current):
    """layout.md's text with its package map replaced by package_map()."""
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + package_map() + tail


def main():
    with open(LAYOUT) as f:
        current = f.read()
    new = written(current)
    if new != current:
        with open(LAYOUT, 'w') as f:
            f.write(new)
        print('rewrote %s' % os.path.relpath(LAYOUT, ROOT))
    return 0


if __name__ == '__main__':
    sys.exit(main())
