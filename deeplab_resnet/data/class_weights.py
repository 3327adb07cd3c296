"""Class weights from a dataset's pixel counts, and the weights file that `python -m
dataset.tools check --class-weights OUT` writes and `train_msc.py --class-weights FILE` reads.
NumPy only (no TensorFlow).

Two recipes:
  median-frequency (Eigen and Fergus 2015): freq(c) = pixels of c / the labelled pixels of the
    images holding c (ignored pixels left out); weight(c) = median over the present classes of
    freq / freq(c).
  inverse-log (ENet, Paszke et al. 2016): p(c) = pixels of c / all labelled pixels;
    weight(c) = 1 / ln(1.02 + p(c)).
A class with no pixel in the list gets weight 0 (it cannot be learned from this list).

The file (JSON):
  {"format": "deeplab-class-weights", "dataset": NAME, "data_list": PATH, "method": METHOD,
   "num_classes": C, "classes": [{"index": i, "name": NAME, "weight": w, "pixels": n,
   "image_pixels": m}, ...], "absent": [indices of classes without pixels]}
Only "classes"[i]["weight"] (in index order) is read back; the rest documents the weights.
"""
import collections
import hashlib
import json
import math

import numpy as np

from deeplab_resnet.common.constants import CLASS_WEIGHT_METHODS, ENET_WEIGHT_C
from deeplab_resnet.common.errors import InputError

FORMAT = 'deeplab-class-weights'

ClassWeights = collections.namedtuple('ClassWeights', ['path', 'sha256', 'values', 'method'])
"""A weights file as read: path (str), sha256 (hex of the file's bytes), values (tuple of C
Python floats, class index order), method (str or None)."""


def median_frequency(pixels, image_pixels):
    """Median-frequency balancing.

    Args:
      pixels: [C] int, the pixels of each class over the list.
      image_pixels: [C] int, for each class the labelled (class-valued, not ignored) pixels of
        the images holding it.
    Returns: [C] float64 weights, 0 for a class without pixels.
    """
    pixels = np.asarray(pixels, np.float64)
    image_pixels = np.asarray(image_pixels, np.float64)
    present = pixels > 0
    weights = np.zeros(len(pixels))
    if present.any():
        freq = pixels[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights


def inverse_log(pixels, c=ENET_WEIGHT_C):
    """ENet's weighting: 1 / ln(c + p(class)), p = the class's share of all labelled pixels.

    Args: pixels: [C] int, the pixels of each class over the list.
    Returns: [C] float64 weights, 0 for a class without pixels.
    """
    pixels = np.asarray(pixels, np.float64)
    present = pixels > 0
    weights = np.zeros(len(pixels))
    if present.any():
        weights[present] = 1.0 / np.log(c + pixels[present] / pixels.sum())
    return weights


def compute(method, pixels, image_pixels):
    """[C] float64 weights by `method` (one of CLASS_WEIGHT_METHODS)."""
    if method == 'median-frequency':
        return median_frequency(pixels, image_pixels)
    if method == 'inverse-log':
        return inverse_log(pixels)
    raise ValueError('unknown class-weight method %r (one of %s)'
                     % (method, ', '.join(CLASS_WEIGHT_METHODS)))


def write(path, method, pixels, image_pixels, class_names, dataset=None, data_list=None):
    """Computes the weights and writes the file. Returns (weights [C] float64, indices of the
    classes without pixels)."""
    weights = compute(method, pixels, image_pixels)
    absent = [int(c) for c in np.flatnonzero(np.asarray(pixels) == 0)]
    classes = [collections.OrderedDict([
        ('index', c), ('name', str(class_names[c])), ('weight', float(weights[c])),
        ('pixels', int(pixels[c])), ('image_pixels', int(image_pixels[c]))])
        for c in range(len(weights))]
    doc = collections.OrderedDict([
        ('format', FORMAT), ('dataset', dataset), ('data_list', data_list),
        ('method', method), ('num_classes', len(weights)), ('classes', classes),
        ('absent', absent)])
    try:
        with open(path, 'w') as f:
            json.dump(doc, f, indent=1)
            f.write('\n')
    except OSError as e:
        raise InputError('%s: cannot write the class weights (%s)' % (path, e.strerror or e))
    return weights, absent


def read(path, num_classes, flag='--num-classes'):
    """Reads and checks a weights file for a run of `num_classes` classes.

    Returns: ClassWeights.
    Raises: InputError (one line naming the file) when it cannot be read or parsed, holds
      another class count, a negative or non-finite weight, or only zeros.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise InputError('%s: cannot read the class weights (%s)' % (path, e.strerror or e))
    try:
        doc = json.loads(data.decode('utf-8'))
        classes = doc['classes']
        values = [c['weight'] for c in classes]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise InputError('%s: not a class-weights file (JSON with "classes": [{"weight": w}, '
                         '...], as python -m dataset.tools check --class-weights writes): %s'
                         % (path, e))
    if len(values) != num_classes:
        raise InputError('%s: weights for %d classes, this run has %s %d'
                         % (path, len(values), flag, num_classes))
    for i, v in enumerate(values):
        name = classes[i].get('name') if isinstance(classes[i], dict) else None
        what = 'class %d%s' % (i, ' (%s)' % name if name else '')
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError('%s: %s: weight %r is not a number' % (path, what, v))
        if not math.isfinite(v) or v < 0:
            raise InputError('%s: %s: weight %r is %s (weights are finite and >= 0)'
                             % (path, what, v, 'negative' if v < 0 else 'not finite'))
    if not any(values):
        raise InputError('%s: every weight is 0 (the loss would be 0)' % path)
    return ClassWeights(path, hashlib.sha256(data).hexdigest(), tuple(float(v) for v in values),
                        doc.get('method') if isinstance(doc, dict) else None)


def record(weights):
    """The snapshot record's 'class_weights' entry: None, or path, sha256, method, values."""
    if weights is None:
        return None
    return collections.OrderedDict([('path', weights.path), ('sha256', weights.sha256),
                                    ('method', weights.method),
                                    ('values', list(weights.values))])
