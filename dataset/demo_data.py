"""A small, deterministic, synthetic segmentation dataset for smoke tests and demos.

Each image holds 1 to 3 large objects on a cluttered background. The class of an object is
given by its SHAPE and TEXTURE, never by its colour: every object is painted in a dark and a
light shade of one hue drawn from a shared pool, so a colour alone says nothing about the
class. Objects stand upright (not rotated) and their textures are coarse enough for the 0.5
scale tower: in a few hundred steps from scratch a network does not learn rotation and
colour-pair invariance, and fine textures blur away at half size (README, "The demo", has the
measurements).

  0 background       gradient + low-frequency blotches + pixel noise + small solid clutter
                     (thin lines at any angle, small ellipses, in the same colour pool)
  1 striped_disc     disc with horizontal stripes
  2 checker_square   square with a checkerboard
  3 dotted_triangle  triangle (pointing down) with a grid of dots
  4 grid_ring        thick ring (annulus, background shows through the hole) with a grid of
                     thin lines

Objects may partly occlude each other. As in PASCAL VOC, a band of the ignore label (255)
a couple of pixels wide runs along every boundary between different labels. Image sizes are
drawn from [min_size, max_size] (odd and even heights are both guaranteed once there are two
images). Images are JPEG (quality 90), masks palette PNGs holding the indices (VOC palette).

Layout written under the output directory (the list format of deeplab_resnet.data.datalist):

  JPEGImages/{train,val}_NNNNN.jpg
  SegmentationClass/{train,val}_NNNNN.png
  train.txt, val.txt          '/JPEGImages/x.jpg /SegmentationClass/x.png' per line
  class_names.txt             one name per line, index order

Usage:
  python -m dataset.demo_data --out dataset/demo [--num-train 200 --num-val 50 --seed 0]

Every image has its own random stream, seeded from (seed, split, index), so an image does not
change when the number of images asked for changes.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage

from deeplab_resnet.common.constants import IGNORE_LABEL
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data.imageio import write_index_png

CLASS_NAMES = ('background', 'striped_disc', 'checker_square', 'dotted_triangle',
               'grid_ring')
NUM_CLASSES = len(CLASS_NAMES)

# The shared colour pool (RGB). Every object class draws its hue from it, and so does the
# background clutter.
COLOUR_POOL = np.array([
    (220, 30, 30), (30, 180, 40), (40, 60, 220), (240, 220, 40), (30, 210, 220),
    (210, 40, 210), (250, 140, 20), (120, 40, 160), (245, 245, 245), (20, 20, 20),
    (130, 80, 30), (255, 150, 170),
], dtype=np.float32)

# An object's two shades of its hue: dark = DARK * hue, light = dark + LIGHT_OFFSET (clipped).
DARK = 0.35
LIGHT_OFFSET = 150.0
TEXTURE_SCALE = 1.5          # every texture period below is multiplied by this

JPEG_QUALITY = 90
DEFAULT_MIN_SIZE = 60
DEFAULT_MAX_SIZE = 110
DEFAULT_BORDER = 1           # ignore band: 2 * border pixels wide, centred on each boundary
SIZE_RANGE = (0.18, 0.30)    # object radius / shorter image side (diameter ~36-60% of side)
MAX_OBJECTS = 3
_SPLIT_IDS = {'train': 1, 'val': 2}


# --------------------------------------------------------------------------- drawing

def _local_coords(yy, xx, cy, cx, angle):
    """Pixel-centre coordinates in an object's frame (origin at its centre, rotated)."""
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    return c * dx + s * dy, -s * dx + c * dy


def _shape_mask(cls, u, v, radius):
    if cls == 1:                                        # disc
        return u * u + v * v <= radius * radius
    if cls == 2:                                        # square (half side 0.85 r)
        half = 0.85 * radius
        return np.maximum(np.abs(u), np.abs(v)) <= half
    if cls == 3:                                        # equilateral triangle, circumradius
        big = 1.3 * radius                              # 1.3 r (its area matches the others)
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            a = -np.pi / 2 + 2 * np.pi * k / 3          # outward edge normals: flat top edge
            inside &= u * np.cos(a) + v * np.sin(a) <= big / 2
        return inside
    if cls == 4:                                        # thick ring: radii 0.4 r to 1.1 r
        d2 = u * u + v * v
        return (d2 <= (1.1 * radius) ** 2) & (d2 >= (0.4 * radius) ** 2)
    raise ValueError('no shape for class %d' % cls)


def _texture(cls, u, v, rng):
    """Boolean pattern in the object's frame: True -> light shade. Periods in pixels, before
    TEXTURE_SCALE."""
    u, v = u / TEXTURE_SCALE, v / TEXTURE_SCALE
    if cls == 1:                                        # horizontal stripes
        period = rng.uniform(6.0, 10.0)
        t = v + rng.uniform(0, period)
        return np.floor(t / (period / 2)).astype(np.int64) % 2 == 1
    if cls == 2:                                        # checkerboard
        cell = rng.uniform(4.5, 7.5)
        return (np.floor(u / cell) + np.floor(v / cell)).astype(np.int64) % 2 == 1
    if cls == 3:                                        # dots on a grid
        spacing = rng.uniform(6.5, 9.0)
        du = np.mod(u + rng.uniform(0, spacing), spacing) - spacing / 2
        dv = np.mod(v + rng.uniform(0, spacing), spacing) - spacing / 2
        return du * du + dv * dv <= (0.3 * spacing) ** 2
    if cls == 4:                                        # grid of thin lines
        period = rng.uniform(6.5, 9.0)
        offset = rng.uniform(0, period, size=2)
        return (np.mod(u + offset[0], period) < 2.2) | (np.mod(v + offset[1], period) < 2.2)
    raise ValueError('no texture for class %d' % cls)


def _pick_colours(rng):
    """(dark, light) RGB float shades of one hue from COLOUR_POOL."""
    hue = COLOUR_POOL[rng.integers(len(COLOUR_POOL))]
    dark = DARK * hue
    return dark, np.minimum(dark + LIGHT_OFFSET, 255.0)


def _background(rng, yy, xx, height, width):
    """Gradient + low-frequency blotches + small solid clutter. Returns [H, W, 3] float."""
    c0, c1 = rng.uniform(30, 225, size=(2, 3))
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * xx / width + np.sin(a) * yy / height)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0 + (c1 - c0) * t[..., None]
    # Low-frequency colour blotches: a coarse random grid, smoothly upsampled.
    coarse = rng.normal(0, 18, size=(4, 4, 3))
    zoom = (height / 4.0, width / 4.0, 1)
    blotches = ndimage.zoom(coarse, zoom, order=1, mode='nearest')[:height, :width]
    img = img + blotches
    # Clutter that is NOT a class: thin lines and small solid ellipses from the colour pool.
    for _ in range(int(rng.integers(3, 9))):
        colour = COLOUR_POOL[rng.integers(len(COLOUR_POOL))] + rng.uniform(-20, 20, 3)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        u, v = _local_coords(yy, xx, cy, cx, rng.uniform(0, np.pi))
        if rng.random() < 0.5:
            half_len, half_w = rng.uniform(8, 30), rng.uniform(0.5, 1.2)
            m = (np.abs(u) <= half_len) & (np.abs(v) <= half_w)
        else:
            ra, rb = rng.uniform(2, 7), rng.uniform(1.5, 4)
            m = (u / ra) ** 2 + (v / rb) ** 2 <= 1
        img[m] = colour
    return img


def _ignore_band(labels, border):
    """Marks with IGNORE_LABEL every pixel within `border` (Chebyshev) of a label change."""
    if border <= 0:
        return labels
    size = 2 * border + 1
    # A (2b+1)-window holds both sides of a boundary for the b pixels on either side of it.
    hi = ndimage.maximum_filter(labels, size=size, mode='nearest')
    lo = ndimage.minimum_filter(labels, size=size, mode='nearest')
    out = labels.copy()
    out[hi != lo] = IGNORE_LABEL
    return out


def make_example(rng, height, width, first_class=None, border=DEFAULT_BORDER,
                 max_objects=MAX_OBJECTS):
    """Draws one image and its label map.

    Args:
      rng: numpy Generator.
      first_class: class (1..NUM_CLASSES-1) of the first object; random when None.
    Returns: (image [H, W, 3] uint8 RGB, labels [H, W] uint8 with 0..4 and 255).
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    img = _background(rng, yy, xx, height, width)
    labels = np.zeros((height, width), dtype=np.uint8)
    side = min(height, width)
    placed = []                                         # (cy, cx, r) of accepted objects
    n_objects = int(rng.integers(1, max_objects + 1))
    for k in range(n_objects):
        cls = int(first_class) if (k == 0 and first_class) else int(rng.integers(1, NUM_CLASSES))
        radius = rng.uniform(*SIZE_RANGE) * side
        for _ in range(20):                             # limit occlusion: centres apart
            cy = rng.uniform(0.75 * radius, height - 0.75 * radius)
            cx = rng.uniform(0.75 * radius, width - 0.75 * radius)
            if all(np.hypot(cy - py, cx - px) >= 0.8 * (radius + pr) for py, px, pr in placed):
                break
        else:
            continue                                    # no room: fewer objects
        placed.append((cy, cx, radius))
        u, v = _local_coords(yy, xx, cy, cx, 0.0)       # upright
        mask = _shape_mask(cls, u, v, radius)
        pattern = _texture(cls, u, v, rng)
        col_a, col_b = _pick_colours(rng)
        # Mild linear shading across the object.
        g = rng.uniform(-0.15, 0.15, size=2)
        shade = 1.0 + (g[0] * u + g[1] * v) / max(radius, 1.0)
        paint = np.where(pattern[..., None], col_b, col_a) * shade[..., None]
        img[mask] = paint[mask]
        labels[mask] = cls
    img = img + rng.normal(0, 5, size=img.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return img, _ignore_band(labels, border)


def _example_size(rng, index, min_size, max_size):
    """(H, W) in [min_size, max_size]; H is odd for odd indices, even for even ones."""
    h, w = (int(x) for x in rng.integers(min_size, max_size + 1, size=2))
    if h % 2 != index % 2:
        h = h + 1 if h < max_size else h - 1
    return h, w


# --------------------------------------------------------------------------- dataset

def generate(out_dir, num_train=200, num_val=50, seed=0, min_size=DEFAULT_MIN_SIZE,
             max_size=DEFAULT_MAX_SIZE, border=DEFAULT_BORDER, quality=JPEG_QUALITY,
             verbose=False):
    """Writes the demo dataset under out_dir.

    The first object of image i has class 1 + i % 4, so every class is present in any split
    of at least four images.

    Returns: (train_list_path, val_list_path). class_names.txt is written beside them.
    Raises: InputError for impossible arguments.
    """
    if num_train < 0 or num_val < 0:
        raise InputError('--num-train and --num-val must be >= 0')
    if not 24 <= min_size <= max_size:
        raise InputError('need 24 <= --min-size <= --max-size, got %d and %d'
                         % (min_size, max_size))
    if min_size == max_size and (num_train > 1 or num_val > 1):
        max_size = min_size + 1                         # room for both parities
    image_dir = os.path.join(out_dir, 'JPEGImages')
    label_dir = os.path.join(out_dir, 'SegmentationClass')
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    paths = []
    for split, count in (('train', num_train), ('val', num_val)):
        lines = []
        for i in range(count):
            rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], i])
            h, w = _example_size(rng, i, min_size, max_size)
            img, labels = make_example(rng, h, w, first_class=1 + i % (NUM_CLASSES - 1),
                                       border=border)
            name = '%s_%05d' % (split, i)
            Image.fromarray(img, mode='RGB').save(os.path.join(image_dir, name + '.jpg'),
                                                  quality=quality)
            write_index_png(os.path.join(label_dir, name + '.png'), labels)
            lines.append('/JPEGImages/%s.jpg /SegmentationClass/%s.png\n' % (name, name))
        list_path = os.path.join(out_dir, split + '.txt')
        with open(list_path, 'w') as f:
            f.writelines(lines)
        paths.append(list_path)
        if verbose:
            print('%s: %d images -> %s' % (split, count, list_path))
    with open(os.path.join(out_dir, 'class_names.txt'), 'w') as f:
        f.write('\n'.join(CLASS_NAMES) + '\n')
    return tuple(paths)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog='python -m dataset.demo_data',
        description='Generate a small synthetic segmentation dataset (%d classes: %s).'
                    % (NUM_CLASSES, ', '.join(CLASS_NAMES)))
    p.add_argument('--out', required=True, help='output data directory')
    p.add_argument('--num-train', type=int, default=200)
    p.add_argument('--num-val', type=int, default=50)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--min-size', type=int, default=DEFAULT_MIN_SIZE,
                   help='smallest image height/width (default %(default)s)')
    p.add_argument('--max-size', type=int, default=DEFAULT_MAX_SIZE,
                   help='largest image height/width (default %(default)s)')
    p.add_argument('--border', type=int, default=DEFAULT_BORDER,
                   help='ignore band half-width in pixels around boundaries (0: none)')
    args = p.parse_args(argv)
    try:
        train, val = generate(args.out, args.num_train, args.num_val, args.seed,
                              args.min_size, args.max_size, border=args.border, verbose=True)
    except InputError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    print('data dir: %s  (--data-dir %s --data-list %s, %d classes incl. background, '
          'class names in class_names.txt)' % (args.out, args.out, train, NUM_CLASSES))
    return 0


if __name__ == '__main__':
    sys.exit(main())
