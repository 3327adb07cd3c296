"""The arithmetic of sliding windows (--tile), without TensorFlow: which windows cover an
image, the flags' checks, and the sizes the memory check needs. The graph that runs them is
predict/tiling.py (whose docstring gives the design).
"""
AUTO = 'auto'         # --tile auto: predict/memory.resolve_tile chooses
STRIDE = 8            # the network's output stride: windows' sides are 8k + 1, offsets 8 n
DEFAULT_WINDOW = 513  # DeepLab's crop
STRIP_ROWS = 32       # pixel rows upsampled at a time
MIN_WINDOW = 17       # 3 logits per side at least


def default_stride(window):
    """Stride (pixels, a multiple of 8) for a window side: window - 1 (513 -> 512, 65 -> 64),
    touching windows: neighbours share the row (column) of logits on their common edge and
    nothing else. Overlap (mmsegmentation's 2/3 of the window) doubled the time and did not
    bring the labels closer to the whole image's (docs/evaluation.md, "Large images")."""
    return window - 1


def tile_problem(window, stride=None):
    """None when a window (h, w) and stride (h, w) or None are valid, else why not (a
    phrase for the one-line message)."""
    for side in window:
        if side < MIN_WINDOW or (side - 1) % STRIDE:
            return ('each side of --tile must be 8k+1 pixels, at least %d (e.g. 65, 321, 513),'
                    ' so that every window\'s logits fall on the image\'s stride-8 grid; got %d'
                    % (MIN_WINDOW, side))
    if stride is not None:
        for side, step in zip(window, stride):
            if step < STRIDE or step % STRIDE or step > side - 1:
                return ('each side of --tile-stride must be a multiple of 8 from 8 to the '
                        'window\'s side minus 1 (%d), so that the windows stay on the stride-8'
                        ' grid and overlap or touch; got %d' % (side - 1, step))
    return None


def strides_of(window, stride=None):
    """(stride_h, stride_w): `stride` or default_stride of each side."""
    return tuple(stride) if stride else tuple(default_stride(side) for side in window)


def grid_size(n):
    """Grid points along a side of n pixels: ceil((n - 1) / 8) + 1 (the last at or past the
    last pixel)."""
    return (n - 1 + STRIDE - 1) // STRIDE + 1


def logit_size(n):
    """The network's logit count along a side of n pixels (model.output_size: conv1, the
    ceil-mode pool1, res3a's stride 2): (n + 1) // 8 + 1; works on ints and tensors."""
    return (n + 1) // STRIDE + 1


def covers(h, w, window):
    """True when one window (h, w) covers an h x w image: it is not tiled."""
    return h <= window[0] and w <= window[1]


def axis_windows(n, window, stride):
    """Windows along a side of n pixels (Python ints): (side, offsets) with side the window's
    side used here (min(window, the smallest 8k + 1 >= n)) and offsets the pixel offsets
    (multiples of 8) of the windows, first 0, last n's grid end minus the side."""
    points = grid_size(n)
    side = min(window, STRIDE * (points - 1) + 1)
    last = points - 1 - (side - 1) // STRIDE
    step = stride // STRIDE
    count = -(-last // step) + 1
    return side, [min(i * step, last) * STRIDE for i in range(count)]


def num_windows(h, w, window, stride=None):
    """How many windows an h x w image is cut into (1 when a window covers it)."""
    if covers(h, w, window):
        return 1
    stride = strides_of(window, stride)
    return (len(axis_windows(h, window[0], stride[0])[1])
            * len(axis_windows(w, window[1], stride[1])[1]))


def tile_text(window, stride=None):
    """', windows of 513x513 every 512,512' for the run's summary line ('' without a
    window)."""
    if not window:
        return ''
    stride = strides_of(window, stride)
    return ', windows of %dx%d every %d,%d' % (window[1], window[0], stride[0], stride[1])

