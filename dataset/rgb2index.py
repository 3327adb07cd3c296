"""RGB colour masks -> index PNGs: each colour of a palette is a class index (the VOC palette
by default, its void colour (224, 224, 192) -> the ignore label 255).

Run it as `python -m dataset.tools rgb2index --in DIR_OR_FILE --out DIR [--palette FILE]`.
"""
import os

import numpy as np
from PIL import Image

from deeplab_resnet.data.colormap import (  # noqa: F401
    IGNORE_COLOUR, class_palette, make_palette, pack_rgb, read_palette_file, write_palette_file)
from deeplab_resnet.common.constants import IGNORE_LABEL, NUM_CLASSES_VOC
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.common.progress import Progress
from deeplab_resnet.data.imageio import write_index_png
from deeplab_resnet.data.labels import bad_values_text

MAX_COLOURS_SHOWN = 5   # colours named in one error message
MASK_EXTENSIONS = ('.png', '.bmp', '.gif', '.tif', '.tiff', '.jpg', '.jpeg')
PALETTE_NAME = 'palette.txt'   # the palette used, written beside the index PNGs


def default_palette(num_classes=NUM_CLASSES_VOC):
    """VOC colours for classes 0..num_classes-1 plus the void colour -> IGNORE_LABEL.

    Returns: (colours [K, 3] uint8, indices [K] uint8).
    """
    colours = np.concatenate([make_palette(256)[:num_classes],
                              np.array([IGNORE_COLOUR], dtype=np.uint8)])
    indices = np.concatenate([np.arange(num_classes), [IGNORE_LABEL]]).astype(np.uint8)
    return colours, indices


def rgb_to_index(rgb, colours, indices, unknown_to_ignore=False):
    """[H, W, 3] colour mask -> [H, W] uint8 indices, by packing RGB to int24 and looking up.

    Returns: (labels, unknown) where unknown lists ((r, g, b), pixel_count) for colours not in
      the palette, most frequent first; those pixels are IGNORE_LABEL when unknown_to_ignore,
      else the labels returned are None.
    """
    packed = pack_rgb(rgb)
    keys = pack_rgb(colours)
    order = np.argsort(keys)
    keys, values = keys[order], np.asarray(indices, dtype=np.uint8)[order]
    pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    found = keys[pos] == packed
    unknown = []
    if not found.all():
        vals, counts = np.unique(packed[~found], return_counts=True)
        for k in np.argsort(-counts, kind='stable'):
            v = int(vals[k])
            unknown.append(((v >> 16, (v >> 8) & 255, v & 255), int(counts[k])))
        if not unknown_to_ignore:
            return None, unknown
    labels = np.where(found, values[pos], IGNORE_LABEL).astype(np.uint8)
    return labels, unknown


def _read_colour_mask(path):
    if not os.path.isfile(path):
        raise InputError('%s: colour mask not found' % path)
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:
        raise InputError('%s: cannot decode colour mask (%s)' % (path, e.__class__.__name__))
    if img.mode in ('RGB', 'RGBA', 'P'):
        return np.asarray(img.convert('RGB'))
    raise InputError('%s: mode %s is not a colour mask (a single-channel image is already an '
                     'index mask; nothing to convert)' % (path, img.mode))


def convert_rgb_mask(src, dst, colours, indices, unknown_to_ignore=False):
    """One colour mask file -> index PNG. Returns the number of unknown-colour pixels.

    Raises: InputError naming the file and its unknown colours (unless unknown_to_ignore).
    """
    labels, unknown = rgb_to_index(_read_colour_mask(src), colours, indices, unknown_to_ignore)
    if labels is None:
        shown = ['(%d, %d, %d) x %d px' % (c + (n,)) for c, n in unknown]
        hint = ''
        if os.path.splitext(src)[1].lower() in ('.jpg', '.jpeg'):
            hint = '; JPEG compression changes colours, colour masks must be lossless (PNG)'
        raise InputError('%s: %d colour(s) not in the palette: %s (use --unknown-to-ignore to '
                         'map them to %d)%s'
                         % (src, len(unknown), bad_values_text(shown, MAX_COLOURS_SHOWN),
                            IGNORE_LABEL, hint))
    write_index_png(dst, labels)
    return sum(n for _, n in unknown)


def convert_rgb_masks(inp, out_dir, colours, indices, unknown_to_ignore=False,
                      progress=False):
    """A colour mask file, or every mask file in a folder, -> out_dir/<name>.png.

    Returns: (written, problems): written lists (src, dst, unknown_pixels); problems one-line
      messages for the files that failed (the others are still converted).
    """
    if os.path.isdir(inp):
        sources = sorted(os.path.join(inp, n) for n in os.listdir(inp)
                         if n.lower().endswith(MASK_EXTENSIONS)
                         and os.path.isfile(os.path.join(inp, n)))
        if not sources:
            raise InputError('%s: no mask files (%s) in this folder'
                             % (inp, ' '.join(MASK_EXTENSIONS)))
    elif os.path.isfile(inp):
        sources = [inp]
    else:
        raise InputError('%s: input file or folder not found' % inp)
    os.makedirs(out_dir, exist_ok=True)
    written, problems = [], []
    bar = Progress(len(sources), label='rgb2index', unit='mask') if progress else None
    for src in sources:
        dst = os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + '.png')
        if os.path.exists(dst) and os.path.samefile(src, dst):
            raise InputError('%s: the output would overwrite this input; choose another --out'
                             % src)
        try:
            written.append((src, dst, convert_rgb_mask(src, dst, colours, indices,
                                                       unknown_to_ignore)))
        except InputError as e:
            problems.append(str(e))
        if bar:
            bar.update()
    if bar:
        bar.close()
    return written, problems


def write_used_palette(out_dir, colours, indices):
    """Writes out_dir/palette.txt: the class colours of (colours, indices) in class order and
    the colour given to the ignore label (VOC's void colour when none), so that masks drawn
    with `--palette out_dir/palette.txt` have the colours converted here.

    Returns: the path, or None when the classes are not 0..C-1 without gaps (nothing written).
    """
    indices = np.asarray(indices)
    classes = indices[indices != IGNORE_LABEL]
    if not len(classes):
        return None
    try:
        class_colours = class_palette(colours, indices, int(classes.max()) + 1, 'palette')
    except InputError:
        return None
    ignore = [tuple(int(v) for v in c) for c, i in zip(colours, indices) if i == IGNORE_LABEL]
    return write_palette_file(os.path.join(out_dir, PALETTE_NAME), class_colours,
                              ignore_colour=ignore[0] if ignore else IGNORE_COLOUR)
