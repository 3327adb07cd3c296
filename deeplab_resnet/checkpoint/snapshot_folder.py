"""The files of one snapshot folder (--snapshot-dir, or any directory holding checkpoints and a
`checkpoint` state file): which snapshots it holds, which are whole, and the state file.

The one reader and writer of state files. Everything here stays inside the folder:

- The state file is read by base names: an entry `../model.ckpt-4` or `/old/place/model.ckpt-4`
  names `FOLDER/model.ckpt-4`, so a moved or copied folder resumes (and is evaluated) from its
  own files, and nothing outside the folder is ever read, listed or deleted.
- The state file is written here with names relative to the folder, after the snapshots' files
  have been flushed to the disk (fsync), and is flushed itself (write_state).
- A snapshot is *whole* when its index parses and its data files have the sizes the index
  implies (the restore's checksums check the bytes); a training snapshot's provenance record,
  when it has one, must be a JSON object with a numeric step and input position
  (problem / record_problem).
- Broken snapshots are moved to FOLDER/corrupt/ (move_to_corrupt); files that no listed
  snapshot owns (TensorFlow's `*.tempstate*` files, a save cut short, `checkpoint.tmp*`) are
  removed (remove_orphans).
"""
import errno
import os
import re
import shutil

from deeplab_resnet.checkpoint.provenance import RECORD_SUFFIX, read_record
from deeplab_resnet.common.constants import CHECKPOINT_NAME
from deeplab_resnet.common.errors import InputError

STATE_FILE = 'checkpoint'
CORRUPT_DIR = 'corrupt'

_ENTRY = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"(.*)"\s*$')
_STEP = re.compile(re.escape(CHECKPOINT_NAME) + r'-(\d+)')
# Files of the snapshot model.ckpt-<step> and what a save leaves behind: .index, .data-*,
# .json, their *.tempstate* / .tmp siblings, TensorFlow's <prefix>_temp/ directory.
_SNAPSHOT_FILE = re.compile(re.escape(CHECKPOINT_NAME) + r'-(\d+)(\.|_temp)')
_DATA_FILE = re.compile(r'\.data-(\d{5})-of-(\d{5})$')


# ----------------------------------------------------------------------------- the state file

def _unescape(text):
    return re.sub(r'\\(.)', r'\1', text)


def read_state(directory):
    """The snapshot names a folder's state file lists, oldest first, the newest
    (model_checkpoint_path) last, each the base name of its entry; None without a state file
    (or one that cannot be read)."""
    try:
        with open(os.path.join(directory, STATE_FILE), encoding='utf-8',
                  errors='replace') as f:
            lines = f.readlines()
    except OSError:
        return None
    latest, names = None, []
    for line in lines:
        match = _ENTRY.match(line)
        if not match:
            continue
        name = os.path.basename(_unescape(match.group(2)).replace('\\', '/').rstrip('/'))
        if not name or name in ('.', '..'):
            continue
        if match.group(1) == 'model_checkpoint_path':
            latest = name
        elif name not in names:
            names.append(name)
    if latest is not None:
        names = [n for n in names if n != latest] + [latest]
    return names


def _quote(name):
    return name.replace('\\', '\\\\').replace('"', '\\"')


def write_state(directory, names, fsync=None):
    """Writes the folder's state file listing `names` (base names, oldest first; the last is
    the newest): to a temporary file, flushed, renamed over the state file, then the folder
    flushed. Write (and flush) the snapshots' files before calling this."""
    fsync = fsync or os.fsync
    path = os.path.join(directory, STATE_FILE)
    text = ''
    if names:
        text = 'model_checkpoint_path: "%s"\n' % _quote(names[-1])
        text += ''.join('all_model_checkpoint_paths: "%s"\n' % _quote(n) for n in names)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
        f.write(text)
        f.flush()
        fsync(f.fileno())
    os.replace(path + '.tmp', path)
    sync_dir(directory, fsync)


def sync_file(path, fsync=None):
    """Flushes a written file to the disk (fsync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        (fsync or os.fsync)(fd)
    finally:
        os.close(fd)


def sync_dir(directory, fsync=None):
    """Flushes a folder's entries (new and renamed names) to the disk; a no-op where
    directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        (fsync or os.fsync)(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- the snapshots

def step_of(name):
    match = _STEP.fullmatch(name)
    return int(match.group(1)) if match else None


def owned_files(directory, name):
    """The file names (in `directory`) that make up snapshot `name`: name.index,
    name.data-NNNNN-of-NNNNN, name.json."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    return sorted(e for e in entries if e.startswith(name + '.') and _owned(name, e[len(name):]))


def _owned(name, suffix):
    return suffix in ('.index', RECORD_SUFFIX) or bool(_DATA_FILE.fullmatch(suffix))


def on_disk(directory):
    """Training snapshot names (model.ckpt-<step>) with an index or data file in the folder,
    by step."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    names = set()
    for entry in entries:
        match = _SNAPSHOT_FILE.match(entry)
        if match and match.group(2) == '.':
            name = '%s-%s' % (CHECKPOINT_NAME, match.group(1))
            if _owned(name, entry[len(name):]) and not entry.endswith(RECORD_SUFFIX):
                names.add(name)
    return sorted(names, key=step_of)


def problem(prefix):
    """Why the checkpoint at `prefix` is not whole, or None when it is: the index parses and
    every data file it needs is there with the size its tensors imply."""
    import numpy as np
    import tensorflow as tf
    directory, name = os.path.split(prefix)
    files = owned_files(directory or '.', name)
    if name + '.index' not in files:
        return 'its index file is missing' if files else 'its files are missing'
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
    except Exception as e:   # a cut or garbled index
        return 'its index cannot be read (%s)' % e.__class__.__name__
    data = [f for f in files if _DATA_FILE.search(f)]
    shards = set(int(_DATA_FILE.search(f).group(2)) for f in data)
    if not data or len(shards) != 1 or len(data) != shards.pop():
        return 'its data files are missing (%s)' % (', '.join(data) or 'none')
    size = sum(os.path.getsize(os.path.join(directory or '.', f)) for f in data)
    expected, exact = 0, True
    for key, shape in shapes.items():
        dtype = dtypes[key]
        if dtype == tf.string:
            exact = False
            continue
        expected += int(np.prod(shape, dtype=np.int64)) * dtype.size
    if size < expected or (exact and size != expected):
        return 'its data hold %d bytes, its index implies %d' % (size, expected)
    return None


def record_problem(prefix):
    """Why a snapshot's provenance record cannot be used, or None when it can (or there is
    none): not a JSON object, or a step or input position that is not a whole number."""
    try:
        record = read_record(prefix)
    except InputError as e:
        return str(e).split(': ', 1)[-1]
    if record is None:
        return None
    saved_input = record.get('input')
    if saved_input is not None and not isinstance(saved_input, dict):
        return 'its record\'s input is %r, not an object' % (saved_input,)
    for key, value in (('step', record.get('step')),
                       ('input position', (saved_input or {}).get('position'))):
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                      and value >= 0):
            return 'its record\'s %s is %r, not a whole number' % (key, value)
    return None


def newest_whole(directory, names=None):
    """The newest whole snapshot prefix among `names` (default: the state file's), without
    checking records; None when none is whole."""
    names = read_state(directory) if names is None else names
    for name in reversed(names or []):
        prefix = os.path.join(directory, name)
        if problem(prefix) is None:
            return prefix
    return None


def move_to_corrupt(directory, name):
    """Moves the files of snapshot `name` into FOLDER/corrupt/ (replacing older copies there).
    Returns the corrupt/ folder's path."""
    target = os.path.join(directory, CORRUPT_DIR)
    os.makedirs(target, exist_ok=True)
    for f in owned_files(directory, name):
        os.replace(os.path.join(directory, f), os.path.join(target, f))
    return target


def orphans(directory, names):
    """Entries of the folder that no snapshot in `names` owns and that a save leaves behind:
    model.ckpt-<step>.* files (temporary, cut short, of unlisted snapshots),
    model.ckpt-<step>_temp/, checkpoint.tmp*, best.tmp/."""
    keep = set()
    for name in names:
        keep.update(owned_files(directory, name))
    found = []
    if not os.path.isdir(directory):
        return found
    for entry in sorted(os.listdir(directory)):
        if entry in keep:
            continue
        if (_SNAPSHOT_FILE.match(entry) or entry.startswith(STATE_FILE + '.tmp')
                or entry == 'best.tmp'):
            found.append(entry)
    return found


def remove_orphans(directory, names):
    """Removes orphans(directory, names). Returns their names."""
    found = orphans(directory, names)
    for entry in found:
        remove(os.path.join(directory, entry))
    return found


def remove(path):
    """Removes a file, or a directory tree (not following links); quietly when it is gone."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    except OSError:
        pass


def is_no_space(error):
    """An OSError ENOSPC / EDQUOT, or TensorFlow's error for it (ResourceExhaustedError,
    the class out-of-memory also raises, or another OpError saying 'No space left')."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC))
    text = str(getattr(error, 'message', '') or error)
    return 'No space left on device' in text or 'Disk quota exceeded' in text
