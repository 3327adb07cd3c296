"""Rewrites docs/flags.md from the five scripts' --help: `python docs/flags.py` (or `make flags`).

Each script's --help is run as tests/test_docs_readme.py runs it (COLUMNS=100,
TF_CPP_MIN_LOG_LEVEL=3, from the repository root), and pasted verbatim into a fenced block
under the script's name. The test compares the file with --help on its own; this only saves
pasting by hand.
"""
import os
import subprocess
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
FLAGS_MD = os.path.join(DOCS, 'flags.md')
SCRIPTS = ('train_msc.py', 'evaluate_msc.py', 'evaluate_msc_with_CRF.py', 'inference.py',
           'convert.py')
HEADER = """# Flags

Every flag of every script, exactly as `--help` prints it (at `COLUMNS=100`).
`python docs/flags.py` (or `make flags`) rewrites this file from the scripts;
`tests/test_docs_readme.py` fails when a script's `--help` is no longer here word for word.
"""


def script_help(script, python=sys.executable):
    """The --help text of one script (str, stripped), run as the test runs it."""
    env = dict(os.environ, COLUMNS='100', TF_CPP_MIN_LOG_LEVEL='3')
    out = subprocess.run([python, os.path.join(ROOT, script), '--help'], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit('%s --help failed (exit %d):\n%s' % (script, out.returncode, out.stderr))
    return out.stdout.strip()


def flags_markdown(helps):
    """[(script, help text)] -> the text of docs/flags.md."""
    parts = [HEADER]
    for script, text in helps:
        parts.append('## `%s`\n\n```text\n%s\n```\n' % (script, text))
    return '\n'.join(parts)


def main():
    text = flags_markdown([(script, script_help(script)) for script in SCRIPTS])
    with open(FLAGS_MD, 'w', encoding='utf-8') as f:
        f.write(text)
    print('wrote %s (%d lines)' % (os.path.relpath(FLAGS_MD, ROOT), text.count('\n')))


if __name__ == '__main__':
    main()
