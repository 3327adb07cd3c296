"""The dataset descriptor: `dataset.json`, one small file that tells every script what a
dataset is, so that `--dataset FILE` replaces `--data-dir`, `--num-classes`, `--ignore-label`,
`--class-names`, colours and the server's ids.

    {
      "name": "cityscapes",                  # free text, for messages
      "data_dir": "..",                      # list paths are joined under this folder, itself
                                             # relative to the descriptor's folder (so the
                                             # dataset can move as a whole)
      "num_classes": 19,
      "ignore_label": 255,
      "class_names": ["road", ...],          # num_classes names
      "palette": [[128, 64, 128], ...],      # num_classes [R, G, B] colours
      "splits": {"train": "train.txt", ...}, # split -> list file, relative to the descriptor
      "server_ids": [7, 8, ...],             # optional: the test server's id of each class
      "img_mean": [104.008, ...],            # optional: B,G,R mean the network subtracts
                                             # (absent: the network's Caffe mean)
      "data_mean": [..., ..., ...]           # optional: the data's own B,G,R mean (facts only)
    }

NumPy-free and TensorFlow-free: it is read while flags are parsed.
"""
import collections
import json
import os

from deeplab_resnet.common.constants import IGNORE_LABEL
from deeplab_resnet.common.errors import InputError

DESCRIPTOR_NAME = 'dataset.json'
FORMAT_VERSION = 1

Descriptor = collections.namedtuple('Descriptor', [
    'path',          # absolute path of the descriptor file
    'name',          # str
    'data_dir',      # absolute folder the list paths are joined under
    'num_classes',   # int
    'ignore_label',  # int
    'class_names',   # list of num_classes str
    'palette',       # list of num_classes [R, G, B] ints
    'splits',        # dict split -> absolute list path
    'server_ids',    # list of num_classes ints, or None (indices are the server's ids)
    'img_mean',      # [B, G, R] floats, or None (the network's mean)
    'data_mean',     # [B, G, R] floats, or None
])


def _fail(path, what):
    raise InputError('%s: %s' % (path, what))


def _int_list(path, key, value, count, low, high):
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
                       for v in value)):
        _fail(path, '"%s" must be a list of %d integers in %d..%d' % (key, count, low, high))
    return value


def _mean(path, key, value):
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        _fail(path, '"%s" must be three numbers, B,G,R' % key)
    return [float(v) for v in value]


def read(path):
    """dataset.json -> Descriptor, with every path made absolute.

    Raises: InputError naming the file and the field when it is missing, not JSON or wrong.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        _fail(path, 'dataset descriptor not found (python -m dataset.tools NAME writes one)')
    try:
        with open(path, encoding='utf-8-sig') as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        _fail(path, 'not a readable JSON dataset descriptor (%s)' % e.__class__.__name__)
    if not isinstance(raw, dict):
        _fail(path, 'a dataset descriptor is a JSON object')
    for key in ('data_dir', 'num_classes', 'class_names', 'palette', 'splits'):
        if key not in raw:
            _fail(path, 'no "%s" in the dataset descriptor' % key)
    folder = os.path.dirname(path)
    num_classes = raw['num_classes']
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not (
            1 <= num_classes <= 256):
        _fail(path, '"num_classes" must be an integer in 1..256')
    ignore_label = raw.get('ignore_label', IGNORE_LABEL)
    if not isinstance(ignore_label, int) or not 0 <= ignore_label <= 255 or (
            ignore_label < num_classes):
        _fail(path, '"ignore_label" must be an integer in %d..255' % num_classes)
    names = raw['class_names']
    if (not isinstance(names, list) or len(names) != num_classes
            or not all(isinstance(n, str) and n.strip() for n in names)):
        _fail(path, '"class_names" must be a list of %d non-empty names' % num_classes)
    palette = raw['palette']
    if not isinstance(palette, list) or len(palette) != num_classes:
        _fail(path, '"palette" must be a list of %d [R, G, B] colours' % num_classes)
    for colour in palette:
        _int_list(path, 'palette', colour, 3, 0, 255)
    splits = raw['splits']
    if not isinstance(splits, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in splits.items()):
        _fail(path, '"splits" must map split names to list files')
    server_ids = raw.get('server_ids')
    if server_ids is not None:
        _int_list(path, 'server_ids', server_ids, num_classes, 0, 255)
    if not isinstance(raw['data_dir'], str):
        _fail(path, '"data_dir" must be a folder (relative to the descriptor\'s)')
    return Descriptor(
        path=path, name=str(raw.get('name', os.path.basename(folder))),
        data_dir=os.path.normpath(os.path.join(folder, raw['data_dir'])),
        num_classes=num_classes, ignore_label=ignore_label, class_names=list(names),
        palette=[list(c) for c in palette],
        splits={k: os.path.normpath(os.path.join(folder, v)) for k, v in splits.items()},
        server_ids=server_ids, img_mean=_mean(path, 'img_mean', raw.get('img_mean')),
        data_mean=_mean(path, 'data_mean', raw.get('data_mean')))


def split_list(descriptor, split):
    """The list file of `split`. Raises InputError naming the descriptor and its splits."""
    if split not in descriptor.splits:
        _fail(descriptor.path, 'no split "%s" (it has: %s)'
              % (split, ', '.join(sorted(descriptor.splits)) or 'none'))
    return descriptor.splits[split]


def write(path, name, data_dir, num_classes, class_names, palette, splits, ignore_label=
          IGNORE_LABEL, server_ids=None, img_mean=None, data_mean=None):
    """Writes a dataset descriptor atomically; `data_dir` and the split files may be given as
    absolute paths or relative to the descriptor's folder and are stored relative to it.

    Args:
      palette: num_classes [R, G, B] colours (lists, tuples or an array).
      splits: dict split name -> list file.
    Returns: the Descriptor as read back (so a bad value fails here, not in a later script).
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)

    def relative(p):
        return os.path.relpath(os.path.join(folder, p), folder)

    raw = collections.OrderedDict([
        ('format', FORMAT_VERSION), ('name', name), ('data_dir', relative(data_dir)),
        ('num_classes', int(num_classes)), ('ignore_label', int(ignore_label)),
        ('class_names', list(class_names)),
        ('palette', [[int(v) for v in colour] for colour in palette]),
        ('splits', collections.OrderedDict((k, relative(v)) for k, v in splits.items()))])
    if server_ids is not None:
        raw['server_ids'] = [int(v) for v in server_ids]
    if img_mean is not None:
        raw['img_mean'] = [float(v) for v in img_mean]
    if data_mean is not None:
        raw['data_mean'] = [round(float(v), 3) for v in data_mean]
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(raw, f, indent=1)
        f.write('\n')
    os.replace(tmp, path)
    return read(path)
