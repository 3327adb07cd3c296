"""List files in the original project's format, parsed and checked before any work starts.

One example per line: ``image_path label_path`` (or only ``image_path`` for an unlabelled
image). Paths are relative to the data directory whether or not they start with ``/``.
Blank lines and lines starting with ``#`` are skipped.
"""
import collections
import os

from deeplab_resnet.common.errors import InputError

Example = collections.namedtuple('Example', ['image', 'label', 'line'])
"""image, label: absolute paths (label None when unlabelled); line: 1-based list line."""

MAX_REPORTED = 5
LIST_HINT = ('pass --data-list, or make the VOC lists with `python -m dataset.tools voc '
             '--voc-root VOCdevkit/VOC2012 --sbd-root benchmark_RELEASE --out DIR`')


def join_data_path(data_dir, path):
    """The original project's rule: a listed path is under data_dir even if it starts with /."""
    return os.path.join(data_dir, path.lstrip('/')) if data_dir else path


def _parse_line(list_path, number, line, data_dir, need_labels):
    """One non-blank list line -> Example; raises InputError naming the file and line."""
    fields = line.split()
    if len(fields) > 2:
        raise InputError('%s:%d: malformed line (expected "image_path label_path", got %d '
                         'fields): %r' % (list_path, number, len(fields), line))
    if len(fields) == 1 and need_labels:
        raise InputError('%s:%d: no label path on this line, but labels are needed: %r'
                         % (list_path, number, line))
    label = join_data_path(data_dir, fields[1]) if len(fields) == 2 else None
    return Example(join_data_path(data_dir, fields[0]), label, number)


def require_list(list_path):
    """Raises InputError, with how to make a list, when list_path is not a file."""
    if not os.path.isfile(list_path):
        raise InputError('%s: list file not found (%s)' % (list_path, LIST_HINT))


def parse_list_collecting(list_path, data_dir='', need_labels=True):
    """Reads a list file, collecting every malformed line instead of stopping at the first.

    Returns: (list of Example, list of one-line problem messages; an empty list is one).
    Raises: InputError for a missing list file.
    """
    require_list(list_path)
    examples, problems = [], []
    with open(list_path, encoding='utf-8-sig', errors='replace') as f:   # BOM dropped
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith('#'):
                continue
            try:
                examples.append(_parse_line(list_path, number, line, data_dir, need_labels))
            except InputError as e:
                problems.append(str(e))
    if not examples and not problems:
        problems.append('%s: the list is empty' % list_path)
    return examples, problems


def parse_list(list_path, data_dir='', need_labels=True):
    """Reads a list file.

    Returns: list of Example.
    Raises: InputError naming the file and line for a missing list, a malformed line (more
      than two fields, or one field where labels are needed) or an empty list.
    """
    examples, problems = parse_list_collecting(list_path, data_dir, need_labels)
    if problems:
        raise InputError(problems[0])
    return examples


def check_files_exist(examples, list_path):
    """Raises InputError listing the first missing files (with list lines) and their count."""
    missing = []
    for ex in examples:
        for path in (ex.image, ex.label):
            if path is not None and not os.path.isfile(path):
                missing.append((ex.line, path))
    if missing:
        shown = '; '.join('line %d: %s' % m for m in missing[:MAX_REPORTED])
        more = ' ...' if len(missing) > MAX_REPORTED else ''
        raise InputError('%s: %d listed file(s) missing: %s%s'
                         % (list_path, len(missing), shown, more))


def load_examples(list_path, data_dir='', need_labels=True):
    """parse_list + check_files_exist."""
    examples = parse_list(list_path, data_dir, need_labels)
    check_files_exist(examples, list_path)
    return examples
