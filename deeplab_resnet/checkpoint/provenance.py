"""The provenance record of a checkpoint: a small JSON file next to it, `<prefix>.json`.

It says where the weights came from and what the network expects of its input (class count,
channel order, image mean, ignore label), so that later tools can check their settings
against the checkpoint instead of trusting the user to remember them.
"""
import collections
import datetime
import hashlib
import json
import os
import re
import subprocess

from deeplab_resnet.common.constants import CHANNEL_ORDER
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data.class_weights import record as class_weights_record

RECORD_SUFFIX = '.json'


def record_path(ckpt_prefix):
    return ckpt_prefix + RECORD_SUFFIX


def file_sha256(path, chunk_size=1 << 22):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def write_record(ckpt_prefix, record):
    """Writes `record` (a JSON-serialisable dict) to <ckpt_prefix>.json, atomically.
    Returns the path written."""
    path = record_path(ckpt_prefix)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)
    return path


def read_record(ckpt_prefix):
    """<ckpt_prefix>.json -> dict, or None when the checkpoint has no record.
    Raises InputError (naming the file) when the record exists but is not a JSON object."""
    path = record_path(ckpt_prefix)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError('%s: unreadable provenance record (%s)' % (path, e.__class__.__name__))
    if not isinstance(record, dict):
        raise InputError('%s: provenance record is not a JSON object' % path)
    return record



def record_summary(record, path=None):
    """What a checkpoint's record says, in one line for start-up messages: 'record by
    train_msc.py (PATH), step 1000, 21 classes, converted from X.caffemodel (sha256
    0123456789ab...), trained on LIST, input size 321,321' (the parts the record has), or
    'no provenance record' for None. path: where the record is (shown when given)."""
    if record is None:
        return 'no provenance record'
    parts = ['record by %s%s' % (record.get('created_by', 'an unknown tool'),
                                 ' (%s)' % path if path else '')]
    if record.get('step') is not None:
        parts.append('step %s' % record['step'])
    if record.get('num_classes') is not None:
        parts.append('%s classes' % record['num_classes'])
    source = record.get('source')
    if isinstance(source, dict) and source.get('file'):
        parts.append('converted from %s (sha256 %s...)' % (source['file'],
                                                          str(source.get('sha256'))[:12]))
    if record.get('trained_on'):
        parts.append('trained on %s' % record['trained_on'])
    if record.get('input_size'):
        parts.append('input size %s' % ','.join(str(v) for v in record['input_size']))
    return ', '.join(parts)


# ----------------------------------------------------------------------------- what a run saw

AUTHORS_VOC12_MARKER = 'train2_iter_20000'
AUTHORS_VOC12_TRAINED_ON = "voc12_trainval (authors' release)"
HE_INIT = 'none (He initialisation)'
# kazuto1011/deeplab-pytorch's released DeepLab-v2 ResNet-101 models (GitHub release v1.0,
# deeplabv2_resnet101_msc-<marker>-<iterations>.pth): file-name marker -> what each was
# trained on (the train split of its configs/<dataset>.yaml).
KAZUTO_RELEASES = (
    ('cocostuff164k', 'cocostuff164k_train2017 (kazuto1011/deeplab-pytorch release)'),
    ('cocostuff10k', 'cocostuff10k_train (kazuto1011/deeplab-pytorch release)'),
    ('vocaug', 'voc12_train_aug (kazuto1011/deeplab-pytorch release)'),
)
_VOC_ID = re.compile(r'^\d{4}_\d{6}$')


def image_id(path):
    """An image's name for the overlap guard: its basename without extension."""
    return os.path.splitext(os.path.basename(path))[0]


def listed_images(list_path):
    """The image paths of a list file as written in it (first field of every line that
    datalist.parse_list reads). Raises InputError when the list cannot be read."""
    try:
        with open(list_path, encoding='utf-8-sig', errors='replace') as f:   # BOM dropped
            lines = [raw.strip() for raw in f]
    except OSError as e:
        raise InputError('%s: cannot read the list (%s)' % (list_path, e.__class__.__name__))
    return [line.split()[0] for line in lines if line and not line.startswith('#')]


def list_info(list_path):
    """What a record says about a training list: {'path', 'entries', 'sha256'} (the digest of
    the listed image paths as written in the list, sorted, newline-joined) and 'images' (the
    sorted image ids, basenames without extension, for the evaluation overlap guard)."""
    paths = listed_images(list_path)
    digest = hashlib.sha256('\n'.join(sorted(paths)).encode('utf-8')).hexdigest()
    return {'path': os.path.abspath(list_path), 'entries': len(paths), 'sha256': digest,
            'images': sorted(set(image_id(p) for p in paths))}


def git_commit(root=None):
    """`git rev-parse HEAD` of the project checkout, or None (not a git checkout, no git)."""
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.match(r'^[0-9a-f]{40}$', commit) else None


def read_class_names(path, num_classes=None, flag='--num-classes'):
    """One name per line (blank lines skipped): the one reader of class-name files.

    num_classes: when given, the file must hold exactly that many names (`flag` names where
      the count came from in the message).
    Raises: InputError naming the file (unreadable, or the wrong number of names).
    """
    try:
        with open(path, encoding='utf-8') as f:
            names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError('%s: cannot read the class names (%s)' % (path, e.__class__.__name__))
    if num_classes is not None and len(names) != num_classes:
        raise InputError('%s: %d class names for %d classes (%s)'
                         % (path, len(names), num_classes, flag))
    return names


def initialisation(restore_prefix, parent_record=None, classifier_restored=True):
    """What a training run starts from: {'checkpoint', 'description', 'trained_on',
    'classifier_restored'}; the parent's caffemodel `source` is carried by training_record."""
    if restore_prefix is None:
        return collections.OrderedDict([('checkpoint', None), ('description', HE_INIT),
                                        ('trained_on', None), ('classifier_restored', False)])
    parent = parent_record or {}
    source = parent.get('source') if isinstance(parent.get('source'), dict) else None
    description = restore_prefix
    if source and source.get('file'):
        description = '%s (converted from %s, sha256 %s)' % (
            restore_prefix, source.get('file'), source.get('sha256'))
    return collections.OrderedDict([
        ('checkpoint', os.path.abspath(restore_prefix)), ('description', description),
        ('trained_on', parent.get('trained_on')), ('classifier_restored', classifier_restored),
        ('source', source)])


def _json_value(value):
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


NOT_FLAGS = ('descriptor', 'from_dataset', 'split_list')   # parse results kept on args


def training_record(args, train_list, init, step, class_names, distribution=None,
                    palette=None, server_ids=None, class_weights=None):
    """The record of a snapshot written by train_msc.py.

    Args: args (train_msc's flags), train_list (list_info of args.data_list), init
      (initialisation(...)), step (the global step saved), class_names (list of str),
      distribution (distribute.describe: replicas, workers, strategy; None for one device),
      palette (the class colours themselves, [C][R, G, B], so that evaluation and inference
      draw them without the file), server_ids (the test server's id of each class, or None),
      class_weights (class_weights.ClassWeights of --class-weights, or None). The loss's
      opt-in settings (class_weights: path, sha256, method, values; top_k_pixels,
      top_k_pixels_warmup) are top-level keys that resuming compares (snapshots.py).
    """
    descriptor = getattr(args, 'descriptor', None)
    import tensorflow as tf
    from deeplab_resnet.network.model import network_blocks
    return collections.OrderedDict([
        ('created_by', 'train_msc.py'),
        ('network_blocks', list(network_blocks())),   # [3, 4, 23, 3]: ResNet-101
        ('created_utc', datetime.datetime.now(datetime.timezone.utc)
         .strftime('%Y-%m-%dT%H:%M:%SZ')),
        ('step', int(step)),
        ('num_classes', args.num_classes),
        ('class_names', list(class_names)),
        ('palette', [[int(v) for v in colour] for colour in palette] if palette is not None
         else None),
        ('server_ids', [int(v) for v in server_ids] if server_ids is not None else None),
        ('dataset', descriptor.path if descriptor is not None else None),
        ('channel_order', CHANNEL_ORDER),
        ('image_mean', [float(v) for v in args.img_mean]),
        ('input_size', [int(v) for v in args.input_size]),
        ('scales', [float(v) for v in args.scales]),
        ('ignore_label', args.ignore_label),
        ('class_weights', class_weights_record(class_weights)),
        ('top_k_pixels', args.top_k_pixels),
        ('top_k_pixels_warmup', args.top_k_pixels_warmup),
        ('distribution', distribution),
        ('initialised_from', init),
        ('source', init.get('source')),
        ('trained_on', train_list['path']),
        ('train_list', collections.OrderedDict(
            [('path', train_list['path']), ('data_dir', args.data_dir),
             ('entries', train_list['entries']), ('sha256', train_list['sha256'])])),
        ('tensorflow_version', tf.__version__),
        ('git_commit', git_commit()),
        ('flags', collections.OrderedDict(sorted((k, _json_value(v))
                                                 for k, v in vars(args).items()
                                                 if k not in NOT_FLAGS))),
        ('train_images', train_list['images']),
    ])


# ----------------------------------------------------------------------------- guards

def is_voc12_trainval(trained_on):
    """A record's `trained_on` naming VOC 2012 train+val (e.g. the authors' release)."""
    if not isinstance(trained_on, str):
        return False
    text = trained_on.lower().replace(' ', '').replace('_', '').replace('-', '')
    return 'trainval' in text and ('voc12' in text or 'voc2012' in text)


def looks_like_voc_id(name):
    return bool(_VOC_ID.match(name))


def training_overlap(record, image_ids):
    """Which of `image_ids` the checkpoint was trained on, as far as its record tells.

    By name: the record's `train_images`; and, when the record (or the checkpoint it was
    initialised from) says it was trained on VOC 2012 train+val (the authors' release), every
    id shaped like a VOC id (YYYY_NNNNNN), since VOC 2012 trainval holds all labelled VOC 2012
    images. Returns (sorted overlapping ids, basis string or None when the record says nothing).
    """
    record = record or {}
    basis, seen = [], set()
    names = record.get('train_images')
    if isinstance(names, list):
        seen = set(str(n) for n in names)
        basis.append('its training images')
    init = record.get('initialised_from')
    inherited = init.get('trained_on') if isinstance(init, dict) else None
    voc = [t for t in (record.get('trained_on'), inherited) if is_voc12_trainval(t)]
    if voc:
        basis.append('trained on %s' % voc[0])
    overlap = sorted(i for i in set(image_ids)
                     if i in seen or (voc and looks_like_voc_id(i)))
    return overlap, ('; '.join(basis) or None)
