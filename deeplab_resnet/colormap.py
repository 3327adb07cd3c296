"""Colour maps: the PASCAL VOC palette, extended to any number of classes.

The VOC palette is the standard bit-interleaving one: class ``c`` gets, for bit ``j`` of ``c``
(three bits at a time), bit ``7 - k`` of R, G and B set from bits ``3k``, ``3k+1``, ``3k+2``.
Its first 21 entries are the VOC colours (background black, aeroplane (128, 0, 0), ...).
"""
import numpy as np

from deeplab_resnet.constants import IGNORE_LABEL, VOC_CLASS_NAMES

IGNORE_COLOUR = (224, 224, 192)   # VOC draws void (255) boundaries in this colour.


def make_palette(num_colours=256):
    """PASCAL bit-interleaving palette.

    Returns: [num_colours, 3] uint8, RGB.
    """
    ids = np.arange(num_colours, dtype=np.int64)
    palette = np.zeros((num_colours, 3), dtype=np.int64)
    c = ids.copy()
    for k in range(8):
        for channel in range(3):
            palette[:, channel] |= ((c >> channel) & 1) << (7 - k)
        c >>= 3
    return palette.astype(np.uint8)


def voc_palette_flat():
    """The 256-entry VOC palette as a flat list of 768 ints, for ``PIL.Image.putpalette``.

    Entry 255 is the VOC void colour, as in VOC's own SegmentationClass PNGs.
    """
    palette = make_palette(256)
    palette[IGNORE_LABEL] = IGNORE_COLOUR
    return palette.reshape(-1).tolist()


def label_colours(num_classes):
    """Colours for classes 0..num_classes-1.

    Returns: [num_classes, 3] uint8 RGB; the VOC colours for the first 21.
    """
    if num_classes > 256:
        raise ValueError('at most 256 classes can be coloured, got %d' % num_classes)
    return make_palette(256)[:num_classes]


def colourise(labels, num_classes):
    """Index map(s) to RGB images.

    Args:
      labels: [..., H, W] integer class indices; values outside [0, num_classes) other than
        the ignore label are drawn black, the ignore label in the VOC void colour.
    Returns: [..., H, W, 3] uint8 RGB.
    """
    labels = np.asarray(labels)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:num_classes] = label_colours(num_classes)
    table[IGNORE_LABEL] = IGNORE_COLOUR
    idx = labels.astype(np.int64)
    idx = np.where((idx >= 0) & (idx < 256), idx, 0)
    return table[idx]


def class_names(num_classes, names=None):
    """Class names: the given list, the VOC names for 21 classes, else 'class_<i>'."""
    if names is not None:
        names = list(names)
        if len(names) != num_classes:
            raise ValueError('%d class names given for %d classes' % (len(names), num_classes))
        return names
    if num_classes == len(VOC_CLASS_NAMES):
        return list(VOC_CLASS_NAMES)
    return ['class_%d' % i for i in range(num_classes)]
