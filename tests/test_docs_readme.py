"""The documentation stays true: each script's --help appears verbatim in docs/flags.md, the
README's quick-start commands are the Makefile's, and every relative link resolves."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ['train_msc.py', 'evaluate_msc.py', 'evaluate_msc_with_CRF.py', 'inference.py',
           'convert.py']


def script_help(script):
    env = dict(os.environ, COLUMNS='100', TF_CPP_MIN_LOG_LEVEL='3')
    out = subprocess.run([sys.executable, os.path.join(ROOT, script), '--help'], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def read(relpath):
    with open(os.path.join(ROOT, relpath), encoding='utf-8') as f:
        return f.read()


def readme():
    return read('README.md')


@pytest.mark.parametrize('script', SCRIPTS)
def test_flags_doc_lists_every_flag_as_help_prints_it(script):
    text = script_help(script)
    assert text in read(os.path.join('docs', 'flags.md')), (
        '%s --help changed: rewrite docs/flags.md with `python docs/flags.py` (or `make flags`), '
        'or paste its output (COLUMNS=100) into docs/flags.md, section %s' % (script, script))


def test_quick_start_commands_exist():
    text = readme()
    assert '```bash\nmake demo' in text and '\nmake test' in text
    with open(os.path.join(ROOT, 'Makefile')) as f:
        targets = re.findall(r'^([a-z-]+):', f.read(), re.M)
    assert 'demo' in targets and 'test' in targets
    with open(os.path.join(ROOT, '.ci', 'run')) as f:
        assert 'make test' in f.read()


def markdown_files():
    docs = sorted(os.path.join('docs', n) for n in os.listdir(os.path.join(ROOT, 'docs'))
                  if n.endswith('.md'))
    return ['README.md'] + docs


def without_code(text):
    return re.sub(r'`[^`\n]*`', '', re.sub(r'```.*?```', '', text, flags=re.S))


def anchors(relpath):
    """The heading anchors of a Markdown file, as GitHub makes them."""
    headings = re.findall(r'^#+ (.+)$', re.sub(r'```.*?```', '', read(relpath), flags=re.S),
                          re.M)
    return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in headings}


@pytest.mark.parametrize('page', markdown_files())
def test_relative_links_resolve(page):
    """Every relative link or image of README.md and docs/*.md names an existing file, and
    an existing heading when it has an #anchor."""
    targets = re.findall(r'\]\(([^)\s]+)\)', without_code(read(page)))
    broken = []
    for target in targets:
        if re.match(r'[a-z]+:', target):
            continue
        path, _, anchor = target.partition('#')
        relpath = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(os.path.join(ROOT, relpath)):
            broken.append(target)
        elif anchor and (not relpath.endswith('.md') or anchor not in anchors(relpath)):
            broken.append(target)
    assert not broken, '%s has broken links: %s' % (page, ', '.join(broken))


def test_readme_links_every_docs_page():
    text = readme()
    unlinked = [p for p in markdown_files()[1:] if '](%s' % p not in text]
    assert not unlinked, 'README.md has no link to %s' % ', '.join(unlinked)
