"""The documentation stays true: each script's --help appears verbatim in docs/flags.md, the
README's quick-start commands are the Makefile's."""
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

