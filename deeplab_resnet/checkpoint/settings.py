"""Which class count, image mean, class names, colours and server ids a run uses: the user's
flags, else the --dataset descriptor's values, else the checkpoint's provenance record, else
the defaults (21 VOC classes, the Caffe mean, the VOC palette, the class indices as server
ids). A flag (or descriptor value) that contradicts the record is used, with a warning that
says both values (a class count only where the checkpoint's variables have it:
check_class_count).

`restore_settings` is the "restored model" step that evaluation and inference share, before
any graph is built: checkpoint prefix -> provenance record -> settings -> class-count check,
cheapest fact first (the record; the checkpoint's variables only where the record does not
settle it). The module imports no TensorFlow; `restore_settings` loads
TensorFlow (checkpoints) when called.
"""
import collections
import os

from deeplab_resnet.checkpoint import provenance
from deeplab_resnet.common.constants import IMG_MEAN_BGR, NUM_CLASSES_VOC
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.common.names import class_names as default_class_names
from deeplab_resnet.data.colormap import class_palette, read_palette_file

MAX_NAMES_SHOWN = 4


def mean_text(mean):
    return ','.join('%g' % v for v in mean)


def _names_text(names):
    return ','.join(str(n) for n in names[:4]) + (',...' if len(names) > 4 else '')


FLAGS = {'num_classes': '--num-classes', 'img_mean': '--img-mean'}


def _given_by(from_dataset, dataset, setting):
    """How a given value is named in messages: its flag, or the descriptor it came from."""
    if dataset is not None and setting in from_dataset:
        return '--dataset %s' % dataset.path
    return FLAGS.get(setting, setting)


def contradictions(record, num_classes=None, img_mean=None, names=None, names_file=None,
                   labels=None):
    """Warnings for given values that contradict the record (the given value is used), e.g.
    "--num-classes 5 contradicts the checkpoint's record (21); using 5". labels: how the
    class count and mean are named ({'num_classes': '--dataset FILE'}; default: the flags)."""
    record = record or {}
    labels = dict(FLAGS, **(labels or {}))
    out = []
    saved = record.get('num_classes')
    if num_classes is not None and isinstance(saved, int) and saved != num_classes:
        out.append('%s %d contradicts the checkpoint\'s record (%d); using %d'
                   % (labels['num_classes'], num_classes, saved, num_classes))
    saved = record.get('image_mean')
    if img_mean is not None and isinstance(saved, (list, tuple)) and len(saved) == 3:
        try:
            differs = any(abs(float(a) - float(b)) > 1e-3 for a, b in zip(img_mean, saved))
        except (TypeError, ValueError):
            differs = False
        if differs:
            out.append('%s %s contradicts the checkpoint\'s record (%s); using %s'
                       % (labels['img_mean'], mean_text(img_mean), mean_text(saved),
                          mean_text(img_mean)))
    saved = record.get('class_names')
    if names is not None and isinstance(saved, list) and [str(n) for n in saved] != list(names):
        source = labels.get('class_names') or '--class-names %s' % names_file
        out.append('%s (%s) contradicts the checkpoint\'s record (%s); using them'
                   % (source, _names_text(names), _names_text(saved)))
    return out


def _num_classes(record, num_classes, where):
    """(class count, where it came from): the flag, else the record, else 21."""
    if num_classes is not None:
        return num_classes, '--num-classes'
    if 'num_classes' not in record:
        return NUM_CLASSES_VOC, 'default'
    value = record['num_classes']
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError('%s: num_classes must be a positive integer, got %r' % (where, value))
    return value, 'provenance record'


def _img_mean(record, img_mean, where):
    """(B, G, R mean, where it came from): the flag, else the record, else the Caffe mean."""
    if img_mean is not None:
        return tuple(img_mean), '--img-mean'
    if 'image_mean' not in record:
        return tuple(IMG_MEAN_BGR), 'Caffe default'
    value = record['image_mean']
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, (int, float)) for v in value)):
        raise InputError('%s: image_mean must be 3 numbers (B, G, R), got %r' % (where, value))
    return tuple(float(v) for v in value), 'provenance record'


def _class_names(record, num_classes, names, names_file):
    """(names or None, where they came from): the given names, else the record's when it has
    one per class; None means the defaults (VOC's for 21 classes, else class_<i>)."""
    if names is not None:
        if len(names) != num_classes:
            raise InputError('%s: %d class names for %d classes'
                             % (names_file, len(names), num_classes))
        return list(names), names_file
    saved = record.get('class_names')
    if isinstance(saved, list) and len(saved) == num_classes:
        return [str(n) for n in saved], 'provenance record'
    return None, 'VOC' if num_classes == NUM_CLASSES_VOC else 'class_<i>'


def _palette(record, num_classes, palette_file, dataset, where):
    """(colours [num_classes][R, G, B] or None, where they came from): the palette file, else
    the descriptor's, else the record's when it has one per class; None means the VOC
    palette."""
    if palette_file:
        colours, indices = read_palette_file(palette_file)
        table = class_palette(colours, indices, num_classes, palette_file)
        return table.tolist(), '--palette'
    if dataset is not None:
        if len(dataset.palette) != num_classes:
            raise InputError('%s: %d colours for %d classes' % (dataset.path,
                                                                len(dataset.palette),
                                                                num_classes))
        return [list(c) for c in dataset.palette], '--dataset %s' % dataset.path
    saved = record.get('palette')
    if saved is not None:
        if not isinstance(saved, list) or not all(
                isinstance(c, list) and len(c) == 3 and all(
                    isinstance(v, int) and 0 <= v <= 255 for v in c) for c in saved):
            raise InputError('%s: palette must be a list of [R, G, B] colours' % where)
        if len(saved) == num_classes:   # else a flag changed the class count: VOC's
            return [list(c) for c in saved], 'provenance record'
    return None, 'VOC'


def _server_ids(record, num_classes, dataset, where):
    """(the test server's id of each class or None, where it came from): the descriptor's,
    else the record's when it has one per class; None means the class indices themselves."""
    if dataset is not None:
        ids = dataset.server_ids
        if ids is not None and len(ids) != num_classes:
            raise InputError('%s: %d server ids for %d classes' % (dataset.path, len(ids),
                                                                   num_classes))
        return ids, '--dataset %s' % dataset.path if ids is not None else 'class indices'
    saved = record.get('server_ids')
    if saved is not None:
        if not isinstance(saved, list) or not all(
                isinstance(v, int) and 0 <= v <= 255 for v in saved):
            raise InputError('%s: server_ids must be a list of integers in 0..255' % where)
        if len(saved) == num_classes:   # else a flag changed the class count: the indices
            return list(saved), 'provenance record'
    return None, 'class indices'


def resolve(prefix, record, num_classes=None, img_mean=None, names=None, names_file=None,
            warn=None, dataset=None, palette_file=None, from_dataset=()):
    """The run's settings.

    Args:
      prefix: the checkpoint prefix (its record is <prefix>.json), or None (training: no
        checkpoint to read settings from).
      record: provenance.read_record(prefix), or None.
      num_classes, img_mean, names: the user's values, or None when not given.
      names_file: where `names` came from (for messages); given without `names`, the file is
        read here (provenance.read_class_names, one name per class).
      warn: called with each contradiction warning.
      dataset: the --dataset descriptor (descriptor.Descriptor) or None: its class names,
        colours and server ids come before the record's (a --class-names / --palette file
        before them).
      palette_file: --palette FILE or None.
      from_dataset: the settings whose given value is the descriptor's (cli.finish_dataset),
        named so in messages and sources.
    Returns: dict with 'num_classes', 'img_mean' (tuple), 'class_names' (list, defaults
      applied), 'names_known' (names given or recorded), 'palette' ([C][R, G, B] or None: the
      VOC colours), 'server_ids' (C ints or None: the class indices) and 'sources' {setting:
      where from}.
    Raises: InputError for a malformed record value, a class-name or colour count that
      differs, or a bad palette file.
    """
    where = provenance.record_path(prefix) if prefix else 'the run'
    saved = record or {}
    sources = {}
    labels = {key: _given_by(from_dataset, dataset, key) for key in FLAGS}
    count, sources['num_classes'] = _num_classes(saved, num_classes, where)
    if num_classes is not None:
        sources['num_classes'] = labels['num_classes']
    if names is None and names_file:
        names = provenance.read_class_names(names_file, count, sources['num_classes'])
    elif names is None and dataset is not None:
        names, names_file = dataset.class_names, dataset.path
        labels['class_names'] = '--dataset %s' % dataset.path
    for message in contradictions(record, num_classes, img_mean, names, names_file, labels):
        if warn:
            warn(message)
    mean, sources['img_mean'] = _img_mean(saved, img_mean, where)
    if img_mean is not None:
        sources['img_mean'] = labels['img_mean']
    names, sources['class_names'] = _class_names(saved, count, names, names_file)
    if labels.get('class_names'):
        sources['class_names'] = labels['class_names']
    palette, sources['palette'] = _palette(saved, count, palette_file, dataset, where)
    server_ids, sources['server_ids'] = _server_ids(saved, count, dataset, where)
    return {'num_classes': count, 'img_mean': mean, 'names_known': names is not None,
            'class_names': default_class_names(count, names), 'palette': palette,
            'server_ids': server_ids, 'sources': sources}


Restored = collections.namedtuple('Restored', ['prefix', 'record', 'settings', 'warnings',
                                               'found_in'], defaults=(None,))
Restored.__doc__ = """A checkpoint and the settings a run uses with it (restore_settings).

  prefix: the checkpoint prefix; record: its provenance record (dict) or None;
  settings: resolve's dict; warnings: tuple of messages for flags that contradict the
    record, for the caller to show once the input is known to fit;
  found_in: the directory the prefix is the newest whole checkpoint of (a directory was
    given), else None: a restore falls back to the directory's newest whole checkpoint when
    a running training has rotated the prefix away meanwhile (predictor.restore_folded).
"""


def check_class_count(prefix, record, settings):
    """The run's class count against the checkpoint, before any graph is built.

    A count the record agrees with (taken from it, or a flag equal to it) is accepted without
    reading the checkpoint; otherwise (no record, no count in it, or a flag that contradicts
    it) the checkpoint's classifier decides: a flag that fits the variables is used (the
    record's contradiction warning stays), one that does not is an InputError naming the
    checkpoint, its class count and the flag (checkpoints.check_class_count).
    """
    if (record or {}).get('num_classes') == settings['num_classes']:
        return
    from deeplab_resnet.checkpoint import checkpoints   # TensorFlow
    checkpoints.check_class_count(prefix, settings['num_classes'],
                                  settings['sources']['num_classes'])


def restore_settings(checkpoint_path, num_classes=None, img_mean=None, names_file=None,
                     dataset=None, palette_file=None, from_dataset=()):
    """The "restored model" step: checkpoint -> provenance record -> settings -> class count.

    Args:
      checkpoint_path: a checkpoint prefix or a directory (its latest checkpoint).
      num_classes, img_mean, names_file: the flags, None when not given.
      dataset, palette_file, from_dataset: as resolve takes them (cli.dataset_settings).
    Returns: Restored (its warnings not yet shown).
    Raises: InputError for a missing or unreadable checkpoint or record, a class-names file
      of the wrong length, or a class count the checkpoint does not have.
    """
    from deeplab_resnet.checkpoint import checkpoints   # TensorFlow
    prefix = checkpoints.resolve_checkpoint(checkpoint_path)
    record = provenance.read_record(prefix)
    pending = []
    settings = resolve(prefix, record, num_classes, img_mean, names_file=names_file,
                       warn=pending.append, dataset=dataset, palette_file=palette_file,
                       from_dataset=from_dataset)
    check_class_count(prefix, record, settings)
    found_in = checkpoint_path if os.path.isdir(checkpoint_path) else None
    return Restored(prefix, record, settings, tuple(pending), found_in)


def followed(restored, prefix):
    """`restored` for the checkpoint actually restored (restore_folded's fallback): its
    prefix and record."""
    if prefix == restored.prefix:
        return restored
    return restored._replace(prefix=prefix, record=provenance.read_record(prefix))


def describe(settings):
    """'21 classes (provenance record), image mean B,G,R 104.007,116.669,122.679 (Caffe
    default), class names: provenance record (bg, one, two, three), colours: VOC' (names shown
    when given or recorded, at most MAX_NAMES_SHOWN; server ids when not the indices)."""
    s = settings['sources']
    names = ''
    if settings['names_known']:
        shown = settings['class_names'][:MAX_NAMES_SHOWN]
        names = ' (%s%s)' % (', '.join(shown), ', ...' if len(settings['class_names'])
                             > MAX_NAMES_SHOWN else '')
    text = ('%d classes (%s), image mean B,G,R %s (%s), class names: %s%s, colours: %s'
            % (settings['num_classes'], s['num_classes'], mean_text(settings['img_mean']),
               s['img_mean'], s['class_names'], names, s.get('palette', 'VOC')))
    if settings.get('server_ids') is not None:
        text += ', server ids: %s' % s['server_ids']
    return text


def summary_line(restored, run=None):
    """The start-up line of evaluation and inference: 'restored PREFIX: <describe>[; <run>];
    <provenance.record_summary>'. run: what the run does (images, scales, ...), or None."""
    parts = ['restored %s: %s' % (restored.prefix, describe(restored.settings))]
    if run:
        parts.append(run)
    path = provenance.record_path(restored.prefix) if restored.record is not None else None
    parts.append(provenance.record_summary(restored.record, path))
    return '; '.join(parts)
