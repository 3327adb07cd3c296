"""What segmenting one image needs in memory, known from its header before any pixel is read,
and the check that refuses an image that cannot fit (instead of the kernel's silent kill).

A Predictor segments every image whole (no crop). Its memory beyond the fixed part (import,
graph, weights: FIXED_BYTES) grows with the pixels: the network's activations with the pixels
of every scaled input (BYTES_PER_NETWORK_PIXEL), twice with --flip (measured: the flip adds
about what the network takes, not the full-size part); the full-size logits, probabilities and
their upsampling with the image's pixels times the classes (BYTES_PER_CLASS_PIXEL). Both were
measured on the CPU with benchmarks/inference_memory.py (peak resident memory,
docs/evaluation.md); the estimate is for the CPU, whose memory the kernel enforces (on a GPU the activations are in the GPU's memory, which TensorFlow reports
itself).

The way through for a larger image is --max-side N: its longer side is brought to N
(bilinear) before the network, and the labels come back to the image's size (nearest);
`fitting_side` says which N fits.
"""
from deeplab_resnet.common.errors import InputError

GB = 2.0 ** 30
FIXED_BYTES = int(1.1 * GB)          # measured: import, graph, folded weights, first run
BYTES_PER_NETWORK_PIXEL = 140        # measured: activations per pixel of each scaled input
BYTES_PER_CLASS_PIXEL = 10           # measured: per class and pixel of the full-size image
LABEL_BYTES_PER_PIXEL = 4 + 3        # full-size int32 labels after --max-side, uint8 image
MIN_SIDE = 33                        # smallest --max-side suggested (the network's stride)


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


def needed_bytes(h, w, scales, flip, num_classes, max_side=None):
    """FIXED_BYTES + image_bytes: the process's peak for an image of this size."""
    return FIXED_BYTES + image_bytes(h, w, scales, flip, num_classes, max_side)


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


def _gb(n):
    return '%.1f GB' % (n / GB)


def check_fits(sized, scales, flip, num_classes, max_side=None, available=None):
    """Refuses, before any image is segmented, the largest image that would not fit.

    Args:
      sized: (path, h, w) of every image (sizes from the headers; see labels.image_size).
      scales, flip, num_classes, max_side: the run's settings.
      available: bytes (default available_bytes(); None: unknown, nothing is refused).
    Raises: InputError naming the image, what it needs, what is available and the
      --max-side that fits.
    """
    available = available_bytes() if available is None else available
    if available is None or not sized:
        return
    path, h, w = max(sized, key=lambda item: image_bytes(item[1], item[2], scales, flip,
                                                         num_classes, max_side))
    need = needed_bytes(h, w, scales, flip, num_classes, max_side)
    if need <= available:
        return
    side = fitting_side(h, w, scales, flip, num_classes, available)
    way = ('pass --max-side %d (segmented at most %dx%d pixels, labels brought back to the '
           'image\'s size) or fewer --scales' % (side, side, side) if side
           else 'free memory or use a machine with more')
    rh, rw = reduced_size(h, w, max_side)
    at = '' if (rh, rw) == (h, w) else ' at --max-side %d' % max_side
    raise InputError('%s: a %dx%d image needs about %s to segment%s (scales %s%s), %s is '
                     'available: %s' % (path, w, h, _gb(need), at,
                                        ','.join('%g' % s for s in scales),
                                        ', flip' if flip else '', _gb(available), way))


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


