"""What segmenting one image needs in memory, known from its header before any pixel is read,
and the check that refuses an image that cannot fit (instead of the kernel's silent kill).

A Predictor segments every image whole (no crop) unless --tile. Its memory beyond the fixed part (import,
graph, weights: FIXED_BYTES) grows with the pixels: the network's activations with the pixels
of every scaled input (BYTES_PER_NETWORK_PIXEL), twice with --flip (measured: the flip adds
about what the network takes, not the full-size part); the full-size logits, probabilities and
their upsampling with the image's pixels times the classes (BYTES_PER_CLASS_PIXEL). Both were
measured on the CPU with benchmarks/inference_memory.py (peak resident memory,
docs/evaluation.md); the estimate is for the CPU, whose memory the kernel enforces (on a GPU the activations are in the GPU's memory, which TensorFlow reports
itself).

The ways through for a larger image: --tile H,W segments it at full resolution in
windows (tiling.py): the network's part is then the window's, and what grows
with the image's pixels is its uint8 copies and label map (TILED_BYTES_PER_PIXEL), the
averaged logits on the stride-8 grid (GRID_BYTES_PER_CLASS_POINT) and one strip of upsampled
logits (STRIP_BYTES_PER_CLASS_PIXEL); `fitting_tile` says which window fits. --max-side N
brings its longer side to N (bilinear) before the network, and the labels come back to the
image's size (nearest); `fitting_side` says which N fits.

PIL refuses to decode an image above Image.MAX_IMAGE_PIXELS (about 89 million pixels: a
warning; twice that: DecompressionBombError), a guard against files whose header promises
more than the memory holds. This check is the better guard (it knows what segmenting the
image costs), so `check_fits`, and nothing else, raises PIL's limit to the largest image it
accepts.
"""
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.common.windows import (AUTO, DEFAULT_WINDOW, MIN_WINDOW, STRIDE,
                                           STRIP_ROWS, grid_size)

GB = 2.0 ** 30
FIXED_BYTES = int(1.1 * GB)          # measured: import, graph, folded weights, first run
BYTES_PER_NETWORK_PIXEL = 140        # measured: activations per pixel of each scaled input
BYTES_PER_CLASS_PIXEL = 10           # measured: per class and pixel of the full-size image
LABEL_BYTES_PER_PIXEL = 4 + 3        # full-size int32 labels after --max-side, uint8 image
MIN_SIDE = 33                        # smallest --max-side suggested (the network's stride)
# --tile (measured with benchmarks/tile_memory.py; docs/evaluation.md):
TILED_BYTES_PER_PIXEL = 16           # uint8 image read + the graph's copy (6), label strips
                                     # (uint8, 1) and their concatenation (1), int32 labels (4),
                                     # the colour mask written (3) and one more byte
GRID_BYTES_PER_CLASS_POINT = 12      # per class and stride-8 grid point: sums, their update,
                                     # the average
STRIP_BYTES_PER_CLASS_PIXEL = 20     # per class and pixel of a strip: the two columns read,
                                     # their difference, the upsampled logits, the argmax


def scaled_pixels(h, w, scales):
    """Pixels of the network's inputs: sum over scales of int(h * s) * int(w * s) (as
    msc.multi_scale_logits sizes them)."""
    return sum(int(h * s) * int(w * s) for s in scales)


def reduced_size(h, w, max_side):
    """(h, w) with the longer side brought to max_side (the shorter one rounded), unchanged
    when it fits or max_side is None."""
    if not max_side or max(h, w) <= max_side:
        return h, w
    ratio = float(max_side) / max(h, w)
    return max(1, int(round(h * ratio))), max(1, int(round(w * ratio)))


def image_bytes(h, w, scales, flip, num_classes, max_side=None):
    """Bytes segmenting one h x w image adds to the fixed part (see the module docstring)."""
    rh, rw = reduced_size(h, w, max_side)
    passes = 2 if flip else 1
    need = (passes * BYTES_PER_NETWORK_PIXEL * scaled_pixels(rh, rw, scales)
            + BYTES_PER_CLASS_PIXEL * num_classes * rh * rw)
    if (rh, rw) != (h, w):
        need += LABEL_BYTES_PER_PIXEL * h * w
    return need


def tiled_bytes(h, w, scales, flip, num_classes, tile, probs=False):
    """Bytes segmenting one h x w image with --tile `tile` (h, w) adds to the fixed part;
    image_bytes when one window covers the image (it runs whole). probs: the full-size
    probabilities are made too (the dense CRF)."""
    if h <= tile[0] and w <= tile[1]:
        return image_bytes(h, w, scales, flip, num_classes)
    side_h = min(tile[0], STRIDE * (grid_size(h) - 1) + 1)
    side_w = min(tile[1], STRIDE * (grid_size(w) - 1) + 1)
    passes = 2 if flip else 1
    need = (passes * BYTES_PER_NETWORK_PIXEL * scaled_pixels(side_h, side_w, scales)
            + GRID_BYTES_PER_CLASS_POINT * num_classes * grid_size(h) * grid_size(w)
            + STRIP_BYTES_PER_CLASS_PIXEL * num_classes * min(h, STRIP_ROWS) * w
            + TILED_BYTES_PER_PIXEL * h * w)
    if probs:
        need += BYTES_PER_CLASS_PIXEL * num_classes * h * w
    return need


def bytes_for(h, w, scales, flip, num_classes, max_side=None, tile=None, probs=False):
    """image_bytes, or tiled_bytes with `tile`."""
    if tile:
        return tiled_bytes(h, w, scales, flip, num_classes, tile, probs)
    return image_bytes(h, w, scales, flip, num_classes, max_side)


def needed_bytes(h, w, scales, flip, num_classes, max_side=None, tile=None, probs=False):
    """FIXED_BYTES + bytes_for: the process's peak for an image of this size."""
    return FIXED_BYTES + bytes_for(h, w, scales, flip, num_classes, max_side, tile, probs)


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes():
    """Memory this process can still take: MemAvailable, and less when a cgroup (a container,
    a Slurm job) limits it (v2 memory.max - memory.current, or v1's limit - usage). None when
    unknown (not Linux)."""
    found = []
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for limit, usage in (('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory.current'),
                         ('/sys/fs/cgroup/memory/memory.limit_in_bytes',
                          '/sys/fs/cgroup/memory/memory.usage_in_bytes')):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 2 ** 60:
            found.append(max(0, cap - used))
    return min(found) if found else None


def fitting_side(h, w, scales, flip, num_classes, available):
    """The largest --max-side (a multiple of 8, at least MIN_SIDE) with which an h x w image
    fits in `available` bytes, or None when not even MIN_SIDE does."""
    low, high = MIN_SIDE, max(h, w)
    if needed_bytes(h, w, scales, flip, num_classes, low) > available:
        return None
    while high - low > 8:
        mid = (low + high) // 2
        if needed_bytes(h, w, scales, flip, num_classes, mid) <= available:
            low = mid
        else:
            high = mid
    return max(MIN_SIDE, low - low % 8)


def fitting_tile(h, w, scales, flip, num_classes, available, probs=False):
    """The largest square --tile (8k + 1, at most DEFAULT_WINDOW) with which an h x w image
    fits in `available` bytes, or None when not even MIN_WINDOW does."""
    side = DEFAULT_WINDOW
    while side >= MIN_WINDOW:
        if needed_bytes(h, w, scales, flip, num_classes, tile=(side, side),
                        probs=probs) <= available:
            return side
        side -= STRIDE
    return None


def resolve_tile(sized, scales, flip, num_classes, tile, available=None, probs=False):
    """--tile as the run uses it: `tile` itself unless it is 'auto', which becomes None (every
    image whole) when the largest image fits whole in `available` bytes or that is unknown
    (None), else the largest square window that fits it (fitting_tile), else None (check_fits
    then refuses, naming the ways through). Returns (tile, a line saying what auto chose, or
    None)."""
    if tile != AUTO:
        return tile, None
    if not sized or available is None:
        return None, '--tile auto: every image whole (the available memory is unknown)'
    path, h, w = max(sized, key=lambda item: image_bytes(item[1], item[2], scales, flip,
                                                         num_classes))
    need = needed_bytes(h, w, scales, flip, num_classes)
    if need <= available:
        return None, ('--tile auto: every image whole (the largest, %dx%d, needs about %s; '
                      '%s available)' % (w, h, _gb(need), _gb(available)))
    side = fitting_tile(h, w, scales, flip, num_classes, available, probs)
    if side is None:
        return None, None
    return (side, side), ('--tile auto: windows of %dx%d (%s, %dx%d, needs about %s whole; '
                          '%s available)' % (side, side, path, w, h, _gb(need),
                                             _gb(available)))


def allow_pixels(pixels):
    """Raises PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) to `pixels` when it is
    lower: called by check_fits only, for the images it accepted."""
    from PIL import Image
    if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = int(pixels)


def _gb(n):
    return '%.1f GB' % (n / GB)


def check_fits(sized, scales, flip, num_classes, max_side=None, available=None, tile=None,
               probs=False):
    """Refuses, before any image is segmented, the largest image that would not fit; raises
    PIL's pixel limit to the largest image accepted (allow_pixels). --tile auto is resolved
    first (resolve_tile), on the same reading of the available memory.

    Args:
      sized: (path, h, w) of every image (sizes from the headers; see labels.image_size).
      scales, flip, num_classes, max_side, tile: the run's settings.
      probs: full-size probabilities are made (the dense CRF); with `tile` they are made from
        the windows' averaged logits, whole.
      available: bytes (default available_bytes(); None: unknown, nothing is refused).
    Returns: (the tile the run uses, resolve_tile's line saying what auto chose or None).
    Raises: InputError naming the image, what it needs, what is available and the
      --tile and --max-side that fit.
    """
    available = available_bytes() if available is None else available
    tile, chose = resolve_tile(sized, scales, flip, num_classes, tile, available, probs)
    if not sized:
        return tile, chose
    if available is not None:
        path, h, w = max(sized, key=lambda item: bytes_for(item[1], item[2], scales, flip,
                                                           num_classes, max_side, tile, probs))
        need = needed_bytes(h, w, scales, flip, num_classes, max_side, tile, probs)
        if need > available:
            raise InputError(_refusal(path, h, w, need, available, scales, flip, num_classes,
                                      max_side, tile, probs))
    allow_pixels(max(h * w for _, h, w in sized))
    return tile, chose


def _refusal(path, h, w, need, available, scales, flip, num_classes, max_side, tile, probs):
    settings = 'scales %s%s' % (','.join('%g' % s for s in scales), ', flip' if flip else '')
    rh, rw = reduced_size(h, w, max_side)
    at = '' if (rh, rw) == (h, w) else ' at --max-side %d' % max_side
    head = '%s: a %dx%d image needs about %s to segment' % (path, w, h, _gb(need))
    if tile and probs and not (h <= tile[0] and w <= tile[1]):
        return ('%s with --tile %d,%d and the dense CRF, which needs its full-size '
                'probabilities (%s; %s), %s is available: the CRF runs on the whole image, '
                'not per window; drop the CRF, or free memory' % (
                    head, tile[0], tile[1], _gb(BYTES_PER_CLASS_PIXEL * num_classes * h * w),
                    settings, _gb(available)))
    ways = []
    window = fitting_tile(h, w, scales, flip, num_classes, available, probs)
    if window and not probs:
        ways.append('pass --tile %d,%d (full resolution, in windows)'
                    % (window, window))
    side = None if tile else fitting_side(h, w, scales, flip, num_classes, available)
    if side and not probs:
        ways.append('--max-side %d (segmented at most %dx%d pixels, labels brought back to '
                    'the image\'s size)' % (side, side, side))
    if not tile:
        ways.append('fewer --scales')
    way = (' or '.join(ways) if ways and (window or side)
           else 'free memory or use a machine with more')
    with_tile = ' with --tile %d,%d' % tuple(tile) if tile else ''
    return '%s%s%s (%s), %s is available: %s' % (head, at, with_tile, settings,
                                                  _gb(available), way)


def max_side_conflict(max_side, crf, save_probs):
    """The parser's message when --max-side meets an option that needs the full-size
    probabilities, else None."""
    if max_side and (crf or save_probs):
        return ('--max-side gives labels, not full-size probabilities: it cannot be combined '
                'with %s' % ('the CRF' if crf else '--save-probs'))
    return None


def nearest_upsample(labels, h, w):
    """[h', w'] labels -> [h, w] by nearest neighbour (pixel centres, as PIL's NEAREST)."""
    import numpy as np
    rows = np.minimum(((np.arange(h) + 0.5) * labels.shape[0] / h).astype(np.int64),
                      labels.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * labels.shape[1] / w).astype(np.int64),
                      labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]]


