"""Reading and writing images and index masks with PIL (NumPy in, NumPy out).

Masks are single-channel index PNGs. A palette ('P' mode) PNG, the format of VOC's own
SegmentationClass, is read as its palette indices, never as luminance; an RGB colour mask is
refused with a message that says how to convert it.

Orientation: training and evaluation read the stored pixels (the labels follow them);
inference reads an image as viewers display it, its EXIF orientation applied
(`read_image(path, exif_orientation=True)`).
"""
import os

import numpy as np
from PIL import Image, ImageOps

from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data.colormap import voc_palette_flat

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
EXIF_ORIENTATION_TAG = 0x0112   # 1: as stored; 2-8: mirrored and / or rotated when displayed

RGB_MASK_HINT = ('it is an RGB colour mask, not an index mask; convert it with '
                 '`python -m dataset.tools rgb2index`')


def _open(path, what):
    if not os.path.isfile(path):
        raise InputError('%s: %s not found' % (path, what))
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:  # PIL raises many types for corrupt files
        raise InputError('%s: cannot decode %s (%s)' % (path, what, e.__class__.__name__))
    return img


def check_headers(examples, list_path):
    """Opens every listed image and label without decoding it (PIL reads the header only,
    ~0.1 ms a file): a 0-byte file or one that is not an image is found before any work
    starts. A file cut inside its pixel data still opens; the reader names it when it gets
    there.

    Args: examples: datalist.Example list; list_path: the list, for the message.
    Raises: InputError naming the first bad file and its list line.
    """
    for ex in examples:
        for path, what in ((ex.image, 'image'), (ex.label, 'label')):
            if path is None:
                continue
            try:
                size = os.path.getsize(path)
                if size == 0:
                    raise InputError('%s: %s file is empty (0 bytes; %s line %d)'
                                     % (path, what, list_path, ex.line))
                with Image.open(path):
                    pass
            except InputError:
                raise
            except Exception as e:   # PIL raises many types for corrupt files
                raise InputError('%s: cannot read %s header (%s; %s line %d)'
                                 % (path, what, e.__class__.__name__, list_path, ex.line))


def orientation_of(img):
    """The EXIF orientation of an opened PIL image: 1 (as stored, also without EXIF) to 8."""
    try:
        return int(img.getexif().get(EXIF_ORIENTATION_TAG, 1)) or 1
    except Exception:   # a broken EXIF block: the stored pixels
        return 1


def read_image(path, exif_orientation=False):
    """Image file -> [H, W, 3] uint8 RGB (greyscale and palette images become 3 channels).
    exif_orientation: as displayed (the EXIF orientation applied; inference), else as stored
    (training, evaluation: the labels follow the stored pixels)."""
    img = _open(path, 'image')
    if exif_orientation and orientation_of(img) != 1:
        img = ImageOps.exif_transpose(img)
    if img.mode != 'RGB':
        img = img.convert('RGB')
    return np.asarray(img, dtype=np.uint8)


def mask_problem(img):
    """None if a PIL image is an index mask, else a description of what is wrong."""
    if img.mode in ('P', 'L', 'I', 'I;16', '1'):
        return None
    if img.mode in ('RGB', 'RGBA'):
        arr = np.asarray(img)
        if arr.ndim == 3 and (np.all(arr[..., 0] == arr[..., 1])
                              and np.all(arr[..., 1] == arr[..., 2])):
            return None   # grey stored as RGB: the indices are any channel
        return RGB_MASK_HINT
    return 'unsupported mask mode %s (expected a single-channel index PNG)' % img.mode


def read_label(path):
    """Index mask file -> [H, W] uint8 class indices (palette indices for 'P' PNGs)."""
    img = _open(path, 'label')
    problem = mask_problem(img)
    if problem:
        raise InputError('%s: %s' % (path, problem))
    if img.mode in ('RGB', 'RGBA'):
        arr = np.asarray(img)[..., 0]
    elif img.mode == 'P':
        arr = np.asarray(img)          # the indices, not the colours
    else:
        arr = np.asarray(img)
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 255:
            raise InputError('%s: label values outside 0..255' % path)
        arr = arr.astype(np.uint8)
    return arr


def write_index_png(path, labels, palette=None):
    """[H, W] integer class indices -> palette PNG holding the indices, shown in the VOC
    palette, or with `palette` ([C, 3] RGB) in those colours for indices 0..C-1."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ValueError('index PNG values must be in 0..255')
    img = Image.fromarray(labels.astype(np.uint8), mode='P')
    flat = voc_palette_flat()
    if palette is not None:
        colours = np.asarray(palette, dtype=np.int64).reshape(-1, 3)[:256]
        flat[:colours.size] = colours.reshape(-1).tolist()
    img.putpalette(flat)
    img.save(path)


def write_rgb_png(path, rgb):
    """[H, W, 3] uint8 -> PNG."""
    Image.fromarray(np.asarray(rgb, dtype=np.uint8), mode='RGB').save(path)
