"""Which class count, image mean and class names a run uses: the user's flags, else the
checkpoint's provenance record, else the defaults (21 VOC classes, the Caffe mean). A flag
that contradicts the record is used, with a warning that says both values. Shared by the
evaluation scripts and inference.py (NumPy-free, TensorFlow-free).
"""
from deeplab_resnet import provenance
from deeplab_resnet.colormap import class_names as default_class_names
from deeplab_resnet.constants import IMG_MEAN_BGR, NUM_CLASSES_VOC
from deeplab_resnet.errors import InputError


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


def resolve(prefix, record, num_classes=None, img_mean=None, names=None, names_file=None,
            warn=None):
    """The run's settings.

    Args:
      prefix: the checkpoint prefix (its record is <prefix>.json).
      record: provenance.read_record(prefix), or None.
      num_classes, img_mean, names: the user's values, or None when not given.
      names_file: where `names` came from (for messages).
      warn: called with each contradiction warning.
    Returns: dict with 'num_classes', 'img_mean' (tuple), 'class_names' (list, defaults
      applied), 'names_known' (names given or recorded) and 'sources' {setting: where from}.
    Raises: InputError for a malformed record value or a class-name count that differs.
    """
    for message in contradictions(record, num_classes, img_mean, names, names_file):
        if warn:
            warn(message)
    record = record or {}
    where = provenance.record_path(prefix)
    sources = {}
    if num_classes is not None:
        sources['num_classes'] = '--num-classes'
    elif 'num_classes' in record:
        num_classes = record['num_classes']
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise InputError('%s: num_classes must be a positive integer, got %r'
                             % (where, num_classes))
        sources['num_classes'] = 'provenance record'
    else:
        num_classes, sources['num_classes'] = NUM_CLASSES_VOC, 'default'
    if img_mean is not None:
        img_mean, sources['img_mean'] = tuple(img_mean), '--img-mean'
    elif 'image_mean' in record:
        value = record['image_mean']
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, (int, float)) for v in value)):
            raise InputError('%s: image_mean must be 3 numbers (B, G, R), got %r'
                             % (where, value))
        img_mean, sources['img_mean'] = tuple(float(v) for v in value), 'provenance record'
    else:
        img_mean, sources['img_mean'] = tuple(IMG_MEAN_BGR), 'Caffe default'
    if names is not None:
        if len(names) != num_classes:
            raise InputError('%s: %d class names for %d classes'
                             % (names_file, len(names), num_classes))
        sources['class_names'] = names_file
    elif isinstance(record.get('class_names'), list) and len(record['class_names']) == num_classes:
        names, sources['class_names'] = [str(n) for n in record['class_names']], \
            'provenance record'
    else:
        sources['class_names'] = 'VOC' if num_classes == NUM_CLASSES_VOC else 'class_<i>'
    return {'num_classes': num_classes, 'img_mean': img_mean, 'names_known': names is not None,
            'class_names': default_class_names(num_classes, names), 'sources': sources}
