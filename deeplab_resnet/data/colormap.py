"""Colour maps: the PASCAL VOC palette, extended to any number of classes.

The VOC palette is the standard bit-interleaving one: class ``c`` gets, for bit ``j`` of ``c``
(three bits at a time), bit ``7 - k`` of R, G and B set from bits ``3k``, ``3k+1``, ``3k+2``.
Its first 21 entries are the VOC colours (background black, aeroplane (128, 0, 0), ...).

A dataset may bring its own colours (Cityscapes' and ADE20K's official ones, a palette file of
the user's): every function that draws takes ``palette``, a [C, 3] RGB table, and falls back to
the VOC colours where it is None. Palette files hold one ``R G B [INDEX]`` line per class.
"""
import os

import numpy as np

from deeplab_resnet.common.constants import IGNORE_LABEL, IMG_MEAN_BGR
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data.labels import bad_values_text

MAX_COLOURS_SHOWN = 5   # duplicate colours named in one error message

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


def label_colours(num_classes, palette=None):
    """Colours for classes 0..num_classes-1.

    Args:
      palette: None (the VOC bit-interleaving colours) or [K, 3] RGB values, K >= num_classes
        (a dataset's own colours; a list of triples is fine).
    Returns: [num_classes, 3] uint8 RGB; the VOC colours for the first 21 by default.
    """
    if num_classes > 256:
        raise ValueError('at most 256 classes can be coloured, got %d' % num_classes)
    if palette is None:
        return make_palette(256)[:num_classes]
    palette = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    if len(palette) < num_classes:
        raise ValueError('a palette of %d colours for %d classes' % (len(palette), num_classes))
    return palette[:num_classes].astype(np.uint8)


def colourise(labels, num_classes, palette=None):
    """Index map(s) to RGB images.

    Args:
      labels: [..., H, W] integer class indices; values outside [0, num_classes) other than
        the ignore label are drawn black, the ignore label in the VOC void colour.
      palette: None (VOC colours) or [>= num_classes, 3] RGB, as in label_colours.
    Returns: [..., H, W, 3] uint8 RGB.
    """
    labels = np.asarray(labels)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:num_classes] = label_colours(num_classes, palette)
    table[IGNORE_LABEL] = IGNORE_COLOUR
    idx = labels.astype(np.int64)
    idx = np.where((idx >= 0) & (idx < 256), idx, 0)
    return table[idx]


def pack_rgb(rgb):
    """[..., 3] RGB -> [...] int32 0xRRGGBB, so that colours compare as single numbers."""
    rgb = np.asarray(rgb).astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def read_palette_file(path):
    """A palette file: one 'R G B' line per class, in class order ('R G B INDEX' gives the
    index explicitly, e.g. '224 224 192 255' for void). Commas are allowed, '#' starts a
    comment.

    Returns: (colours [K, 3] uint8, indices [K] uint8).
    Raises: InputError naming the file (and line) when it is missing or malformed.
    """
    if not os.path.isfile(path):
        raise InputError('%s: palette file not found' % path)
    colours, indices = [], []
    with open(path, encoding='utf-8-sig', errors='replace') as f:
        for number, raw in enumerate(f, 1):
            line = raw.split('#', 1)[0].replace(',', ' ').strip()
            if not line:
                continue
            try:
                values = [int(x) for x in line.split()]
            except ValueError:
                values = []
            if len(values) not in (3, 4) or not all(0 <= x <= 255 for x in values):
                raise InputError('%s:%d: expected "R G B" or "R G B INDEX" with values in '
                                 '0..255, got %r' % (path, number, raw.strip()))
            colours.append(values[:3])
            indices.append(values[3] if len(values) == 4 else len(indices))
    if not colours:
        raise InputError('%s: the palette is empty' % path)
    colours = np.array(colours, dtype=np.uint8)
    packed = pack_rgb(colours)
    if len(np.unique(packed)) != len(packed):
        dup = [tuple(int(x) for x in c) for c, n in
               zip(*np.unique(colours, axis=0, return_counts=True)) if n > 1]
        raise InputError('%s: colour(s) listed more than once: %s'
                         % (path, bad_values_text(dup, MAX_COLOURS_SHOWN)))
    return colours, np.array(indices, dtype=np.uint8)


def class_palette(colours, indices, num_classes, where):
    """The [num_classes, 3] class colours of a palette file's (colours, indices): entry c is
    the colour listed for index c (an entry for the ignore label is dropped).

    Raises: InputError naming `where` when a class 0..num_classes-1 has no colour.
    """
    table = {}
    for colour, index in zip(np.asarray(colours), np.asarray(indices)):
        if int(index) < num_classes:
            table[int(index)] = [int(x) for x in colour]
    missing = [c for c in range(num_classes) if c not in table]
    if missing:
        raise InputError('%s: no colour for class(es) %s of %d'
                         % (where, ', '.join(str(c) for c in missing[:10]), num_classes))
    return np.array([table[c] for c in range(num_classes)], dtype=np.uint8)


def write_palette_file(path, colours, names=None, ignore_colour=IGNORE_COLOUR):
    """Writes [C, 3] RGB class colours as a palette file (one 'R G B INDEX' line per class,
    the class name as a comment), plus `ignore_colour` (default VOC's void colour) for the
    ignore label unless a class has it, readable by read_palette_file. Returns the path."""
    colours = np.asarray(colours, dtype=np.int64).reshape(-1, 3)
    ignore_colour = tuple(int(v) for v in ignore_colour)
    lines = ['# R G B INDEX  (class colours; %d = ignore)' % IGNORE_LABEL]
    for index, colour in enumerate(colours):
        name = '  # %s' % names[index] if names is not None else ''
        lines.append('%d %d %d %d%s' % (colour[0], colour[1], colour[2], index, name))
    if not (pack_rgb(colours) == int(pack_rgb(np.array(ignore_colour)))).any():
        lines.append('%d %d %d %d  # ignore' % (ignore_colour + (IGNORE_LABEL,)))
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    os.replace(tmp, path)
    return path


# The original project's label and image helpers (NumPy), with its call shapes.

def decode_labels(mask, num_images=1, num_classes=21, palette=None):
    """Colourises a batch of predictions / labels (NumPy).

    Args:
      mask: [N, H, W, 1] or [N, H, W] integer class indices.
      palette: [>= num_classes, 3] RGB class colours, or None (the VOC colours).
    Returns: [num_images, H, W, 3] uint8 RGB (ignore label in the void colour).
    """
    mask = np.asarray(mask)
    if mask.ndim == 4:
        mask = mask[..., 0]
    return colourise(mask[:num_images], num_classes, palette)


def inv_preprocess(imgs, num_images=1, img_mean=IMG_MEAN_BGR):
    """Undoes preprocessing (NumPy).

    Args:
      imgs: [N, H, W, 3] float32, BGR, mean-subtracted.
    Returns: [num_images, H, W, 3] uint8 RGB.
    """
    imgs = np.asarray(imgs)[:num_images] + np.asarray(img_mean, np.float32)
    return np.clip(np.round(imgs[..., ::-1]), 0, 255).astype(np.uint8)
