"""One validator for label masks, shared by evaluation, training data checks and the dataset
tools: a mask must have its image's size and hold only class indices 0..C-1 or the ignore
label. NumPy and PIL only (no TensorFlow), so the checks run before any graph is built.
"""
import numpy as np
from PIL import Image

from deeplab_resnet.common.constants import IGNORE_LABEL
from deeplab_resnet.common.errors import InputError

MAX_VALUES_SHOWN = 10


def out_of_range_values(labels, num_classes, ignore_label=IGNORE_LABEL):
    """Distinct label values that are neither a class index nor the ignore label.

    Args:
      labels: integer array of any shape (e.g. an [H, W] uint8 mask).
      num_classes: C; valid classes are 0..C-1.
      ignore_label: the void value, allowed anywhere.
    Returns: sorted list of Python ints (empty when the mask is valid), so a caller can raise
      an InputError naming the file and the bad values.
    """
    values = np.unique(np.asarray(labels))
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_label)]
    return [int(v) for v in bad]


def image_size(path):
    """(height, width) from the image header, without decoding the pixels.

    Raises: InputError naming the file when it cannot be opened as an image.
    """
    try:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except Image.DecompressionBombError:
            w, h = _size_past_pixel_limit(path)
    except Exception as e:   # PIL raises many types for corrupt files
        raise InputError('%s: cannot decode image (%s)' % (path, e.__class__.__name__))
    return h, w


def _size_past_pixel_limit(path):
    """(w, h) of an image above twice PIL's pixel limit, which Image.open refuses even for
    the header: read with the limit off for the header only (nothing is decoded); whether it
    is decoded is memory.check_fits's decision."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            return img.size
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def size_mismatch(example, image_hw, label_hw):
    """None when the label has the image's (height, width), else the one-line message.

    Args: example: datalist.Example (image, label, line); image_hw, label_hw: (h, w).
    """
    if tuple(image_hw) == tuple(label_hw):
        return None
    return ('%s, %s: image is %dx%d but its label is %dx%d (width x height; list line %d)'
            % (example.image, example.label, image_hw[1], image_hw[0], label_hw[1],
               label_hw[0], example.line))


def check_sizes(example, image_hw, label_hw):
    """Raises InputError (size_mismatch's line) when the sizes differ."""
    message = size_mismatch(example, image_hw, label_hw)
    if message:
        raise InputError(message)


def bad_values_text(bad, limit=MAX_VALUES_SHOWN):
    """'21, 30, 254' (at most `limit` values, then ', ...')."""
    shown = ', '.join(str(v) for v in bad[:limit])
    return shown + (', ...' if len(bad) > limit else '')


def bad_values_message(path, bad, num_classes, ignore_label):
    """The line for a mask holding values that are neither classes nor the ignore label."""
    return ('%s: label values %s are neither classes 0..%d nor the ignore label %d (pass '
            '--ignore-out-of-range to ignore them, or check --num-classes)'
            % (path, bad_values_text(bad), num_classes - 1, ignore_label))


def check_values(path, values, num_classes, ignore_label):
    """Raises InputError (bad_values_message) when `values` (any integer array: a mask or its
    distinct values) holds a value that is neither a class nor the ignore label."""
    bad = out_of_range_values(values, num_classes, ignore_label)
    if bad:
        raise InputError(bad_values_message(path, bad, num_classes, ignore_label))


def mark_out_of_range(labels, num_classes, ignore_label):
    """[H, W] integer mask -> int32 copy with values outside [0, num_classes) other than the
    ignore label replaced by the ignore label (--ignore-out-of-range)."""
    labels = np.asarray(labels).astype(np.int32)
    bad = ((labels < 0) | (labels >= num_classes)) & (labels != ignore_label)
    labels[bad] = ignore_label
    return labels
