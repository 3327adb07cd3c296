"""Which class count, image mean and class names a run uses: the user's flags, else the
checkpoint's provenance record, else the defaults (21 VOC classes, the Caffe mean). A flag
that contradicts the record is used, with a warning that says both values (a class count
only where the checkpoint's variables have it: check_class_count).

`restore_settings` is the "restored model" step that evaluation and inference share, before
any graph is built: checkpoint prefix -> provenance record -> settings -> class-count check,
cheapest fact first (the record; the checkpoint's variables only where the record does not
settle it). The module imports no TensorFlow; `restore_settings` loads
TensorFlow (checkpoints) when called.
"""
import collections
import os

from deeplab_resnet import provenance
from deeplab_resnet.colormap import class_names as default_class_names
from deeplab_resnet.constants import IMG_MEAN_BGR, NUM_CLASSES_VOC
from deeplab_resnet.errors import InputError

MAX_NAMES_SHOWN = 4


def mean_text(mean):
    return ','.join('%g' % v for v in mean)


def _names_text(names):
    return ','.join(str(n) for n in names[:4]) + (',...' if len(names) > 4 else '')


def contradictions(record, num_classes=None, img_mean=None, names=None, names_file=None):
    """Warnings for given values that contradict the record (the given value is used), e.g.
    "--num-classes 5 contradicts the checkpoint's record (21); using 5"."""
    record = record or {}
    out = []
    saved = record.get('num_classes')
    if num_classes is not None and isinstance(saved, int) and saved != num_classes:
        out.append('--num-classes %d contradicts the checkpoint\'s record (%d); using %d'
                   % (num_classes, saved, num_classes))
    saved = record.get('image_mean')
    if img_mean is not None and isinstance(saved, (list, tuple)) and len(saved) == 3:
        try:
            differs = any(abs(float(a) - float(b)) > 1e-3 for a, b in zip(img_mean, saved))
        except (TypeError, ValueError):
            differs = False
        if differs:
            out.append('--img-mean %s contradicts the checkpoint\'s record (%s); using %s'
                       % (mean_text(img_mean), mean_text(saved), mean_text(img_mean)))
    saved = record.get('class_names')
    if names is not None and isinstance(saved, list) and [str(n) for n in saved] != list(names):
        out.append('--class-names %s (%s) contradicts the checkpoint\'s record (%s); using %s'
                   % (names_file, _names_text(names), _names_text(saved), names_file))
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


def resolve(prefix, record, num_classes=None, img_mean=None, names=None, names_file=None,
            warn=None):
    """The run's settings.

    Args:
      prefix: the checkpoint prefix (its record is <prefix>.json).
      record: provenance.read_record(prefix), or None.
      num_classes, img_mean, names: the user's values, or None when not given.
      names_file: where `names` came from (for messages); given without `names`, the file is
        read here (provenance.read_class_names, one name per class).
      warn: called with each contradiction warning.
    Returns: dict with 'num_classes', 'img_mean' (tuple), 'class_names' (list, defaults
      applied), 'names_known' (names given or recorded) and 'sources' {setting: where from}.
    Raises: InputError for a malformed record value or a class-name count that differs.
    """
    where = provenance.record_path(prefix)
    saved = record or {}
    sources = {}
    count, sources['num_classes'] = _num_classes(saved, num_classes, where)
    if names is None and names_file:
        names = provenance.read_class_names(names_file, count, sources['num_classes'])
    for message in contradictions(record, num_classes, img_mean, names, names_file):
        if warn:
            warn(message)
    mean, sources['img_mean'] = _img_mean(saved, img_mean, where)
    names, sources['class_names'] = _class_names(saved, count, names, names_file)
    return {'num_classes': count, 'img_mean': mean, 'names_known': names is not None,
            'class_names': default_class_names(count, names), 'sources': sources}


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
    from deeplab_resnet import checkpoints   # TensorFlow
    checkpoints.check_class_count(prefix, settings['num_classes'],
                                  settings['sources']['num_classes'])


def restore_settings(checkpoint_path, num_classes=None, img_mean=None, names_file=None):
    """The "restored model" step: checkpoint -> provenance record -> settings -> class count.

    Args:
      checkpoint_path: a checkpoint prefix or a directory (its latest checkpoint).
      num_classes, img_mean, names_file: the flags, None when not given.
    Returns: Restored (its warnings not yet shown).
    Raises: InputError for a missing or unreadable checkpoint or record, a class-names file
      of the wrong length, or a class count the checkpoint does not have.
    """
    from deeplab_resnet import checkpoints   # TensorFlow
    prefix = checkpoints.resolve_checkpoint(checkpoint_path)
    record = provenance.read_record(prefix)
    pending = []
    settings = resolve(prefix, record, num_classes, img_mean, names_file=names_file,
                       warn=pending.append)
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
    default), class names: provenance record (bg, one, two, three)' (names shown when given
    or recorded, at most MAX_NAMES_SHOWN)."""
    s = settings['sources']
    names = ''
    if settings['names_known']:
        shown = settings['class_names'][:MAX_NAMES_SHOWN]
        names = ' (%s%s)' % (', '.join(shown), ', ...' if len(settings['class_names'])
                             > MAX_NAMES_SHOWN else '')
    return ('%d classes (%s), image mean B,G,R %s (%s), class names: %s%s'
            % (settings['num_classes'], s['num_classes'], mean_text(settings['img_mean']),
               s['img_mean'], s['class_names'], names))


def summary_line(restored, run=None):
    """The start-up line of evaluation and inference: 'restored PREFIX: <describe>[; <run>];
    <provenance.record_summary>'. run: what the run does (images, scales, ...), or None."""
    parts = ['restored %s: %s' % (restored.prefix, describe(restored.settings))]
    if run:
        parts.append(run)
    path = provenance.record_path(restored.prefix) if restored.record is not None else None
    parts.append(provenance.record_summary(restored.record, path))
    return '; '.join(parts)
