"""Sliding-window prediction (--tile): any image at full resolution, in memory bounded by the
window, the class count and the image's own label map rather than by its pixels times its
classes.

The image is covered by windows of h x w pixels, each side 8k + 1 (default 513), at offsets
that are multiples of the network's stride, 8: a window's k + 1 logits then lie on the
image's own stride-8 grid (logit i at pixel offset + 8 i, as the whole-image path's
align-corners upsampling puts them for a side of 8k + 1). Each window is predicted as a whole
image is (every scale, fused by max, averaged with the mirrored window with flip, in the
chosen precision: msc.multi_scale_logits), and its fused logits (before the softmax) are added
on the grid; each grid point's sum is divided by the number of windows that cover it
(mmsegmentation's `slide` mode). The windows are cut from the uint8 image (never a
whole-image float copy); a window that reaches past the image's right or bottom edge (by
fewer than 8 pixels) is padded with the mean colour (zero after the mean is subtracted). A
side shorter than the window gets one window of the smallest 8k + 1 that covers it.

Windows along a side start at 0, stride, 2 stride, ... (stride a multiple of 8, default
the window's side minus 1: 512 for 513, windows that share the logits of their common edge),
the last one moved back so that it ends at the grid's last point. The averaged grid is
upsampled (bilinear, read where the whole-image path reads its logits: see grid_to_full)
and its argmax taken in strips of STRIP_ROWS rows, so the full-size float logits never
exist. All of it is one graph (tf.while_loop over the windows, another over the strips):
the Predictor and the exported SavedModel run the same one (the Predictor's adds a progress
hook, on_window). An image that one window covers is not tiled: it runs the whole-image
path (msc.predict_probs), bit for bit.
"""
import numpy as np
import tensorflow as tf

from deeplab_resnet.common.constants import IMG_MEAN_BGR
from deeplab_resnet.common.windows import (MIN_WINDOW, STRIDE, STRIP_ROWS,  # noqa: F401
                                           covers, logit_size, strides_of)
from deeplab_resnet.data.image_reader import preprocess_image
from deeplab_resnet.network import msc

tf1 = tf.compat.v1

def _axis(n, window, stride):
    """axis_windows in the graph: (side, grid points, last grid offset, window count), int32
    scalars."""
    points = (n - 1 + STRIDE - 1) // STRIDE + 1
    side = tf.minimum(window, STRIDE * (points - 1) + 1)
    last = points - 1 - (side - 1) // STRIDE
    step = stride // STRIDE
    count = (last + step - 1) // step + 1
    return side, points, last, count


def window_logits(images, num_classes, scales, flip, precision, fold_batch_norm):
    """[1, 8k+1, 8m+1, 3] float32 preprocessed window -> [k+1, m+1, C] float32 logits: the
    scales' max (msc.multi_scale_logits), averaged with the mirrored window's with flip."""
    fused = msc.multi_scale_logits(images, num_classes, False, scales, precision=precision,
                                   fold_batch_norm=fold_batch_norm).fused
    if flip:
        mirrored = msc.multi_scale_logits(tf.reverse(images, [2]), num_classes, False, scales,
                                          precision=precision,
                                          fold_batch_norm=fold_batch_norm).fused
        fused = 0.5 * (fused + tf.reverse(mirrored, [2]))
    return fused[0]


def _reported(on_window, done, total, value):
    """`value`, once it is computed and on_window(done, total) (Python ints) has been called:
    a py_func, so only in a graph that runs in this process (the Predictor's, not a
    SavedModel's)."""
    if on_window is None:
        return value
    with tf.control_dependencies([value]):
        call = tf1.py_func(lambda d, t: np.int32(on_window(int(d), int(t)) or 0),
                           [done, total], tf.int32, stateful=True, name='window_done')
    with tf.control_dependencies([call]):
        return tf.identity(value)


def grid_logits(rgb, num_classes, window, stride=None, scales=(1.0,), flip=False,
                precision='float32', fold_batch_norm=False, img_mean=IMG_MEAN_BGR,
                on_window=None):
    """The windows' fused logits averaged on the image's stride-8 grid.

    Args:
      rgb: [H, W, 3] uint8 RGB (dynamic size).
      window: (h, w) pixels, each 8k + 1; stride: (h, w) multiples of 8 or None (default).
      on_window: None, or a Python callable on_window(done, total) called before each
        window (done = 0 .. total - 1) and after the last (done = total), in order.
      The network's variables must exist (built outside the loop) and be reusable.
    Returns: [ceil((H-1)/8)+1, ceil((W-1)/8)+1, C] float32; point (i, j) is pixel (8i, 8j).
    """
    stride = strides_of(window, stride)
    h, w = tf.shape(rgb)[0], tf.shape(rgb)[1]
    side_h, points_h, last_h, count_h = _axis(h, window[0], stride[0])
    side_w, points_w, last_w, count_w = _axis(w, window[1], stride[1])
    k_h, k_w = (side_h - 1) // STRIDE + 1, (side_w - 1) // STRIDE + 1   # logits per window

    def body(i, total, cover):
        gy = tf.minimum((i // count_w) * (stride[0] // STRIDE), last_h)
        gx = tf.minimum((i % count_w) * (stride[1] // STRIDE), last_w)
        y0, x0 = gy * STRIDE, gx * STRIDE
        y1, x1 = tf.minimum(y0 + side_h, h), tf.minimum(x0 + side_w, w)
        crop = rgb[y0:y1, x0:x1]
        images = preprocess_image(crop[None], img_mean)
        images = tf.pad(images, [[0, 0], [0, side_h - (y1 - y0)], [0, side_w - (x1 - x0)],
                                 [0, 0]])   # the mean colour
        images.set_shape([1, None, None, 3])
        images = _reported(on_window, i, count_h * count_w, images)
        logits = window_logits(images, num_classes, scales, flip, precision,
                               fold_batch_norm)
        ys, xs = tf.meshgrid(tf.range(gy, gy + k_h), tf.range(gx, gx + k_w), indexing='ij')
        index = tf.stack([ys, xs], axis=-1)
        total = tf.tensor_scatter_nd_add(total, index, logits)
        cover = tf.tensor_scatter_nd_add(cover, index, tf.ones([k_h, k_w]))
        return i + 1, total, cover

    total = tf.zeros(tf.stack([points_h, points_w, num_classes]))
    cover = tf.zeros(tf.stack([points_h, points_w]))
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
        _, total, cover = tf1.while_loop(lambda i, *_: i < count_h * count_w, body,
                                         [tf.constant(0), total, cover],
                                         parallel_iterations=1, back_prop=False)
    total = _reported(on_window, count_h * count_w, count_h * count_w, total)
    return total / cover[..., None]


def _sample_points(size, logits):
    """Where the whole-image path samples its logits for each of `size` pixels (resize_bilinear
    with align_corners from `logits` points): (lower index, upper index, weight of the upper),
    [size] int32, int32, float32."""
    scale = tf.where(size > 1, tf.cast(logits - 1, tf.float32)
                     / tf.cast(tf.maximum(size - 1, 1), tf.float32), 0.0)
    position = tf.cast(tf.range(size), tf.float32) * scale
    lower = tf.cast(tf.floor(position), tf.int32)
    return lower, tf.minimum(lower + 1, logits - 1), position - tf.cast(lower, tf.float32)


def grid_to_full(grid, h, w, want_probs=False, label_dtype=tf.int32):
    """Upsamples a stride-8 grid of logits to h x w and takes the argmax, STRIP_ROWS rows at a
    time. Pixel y is read where the whole-image path reads it: its first
    logit_size(h) = (h + 1) // 8 + 1 points (the network's logit count for a side of h,
    model.output_size) stretched over the h pixels, bilinear (align corners); for a side of
    8k + 1 that is exactly y / 8, elsewhere within 7 pixels of it.

    Args:
      grid: [ceil((h-1)/8)+1, ceil((w-1)/8)+1, C] float32 logits (grid_logits).
      want_probs: also the softmax, [h, w, C] float32 (for the dense CRF).
      label_dtype: the labels' dtype (tf.uint8 for fewer than 257 classes: a quarter of
        int32's memory, 81 MB at 9000x9000).
    Returns: (labels [h, w] label_dtype, probs [h, w, C] float32 or None).
    """
    count = (h + STRIP_ROWS - 1) // STRIP_ROWS
    y_lo, y_hi, y_frac = _sample_points(h, logit_size(h))
    x_lo, x_hi, x_frac = _sample_points(w, logit_size(w))
    x_frac = x_frac[None, :, None]

    def body(j, labels, probs):
        rows = tf.range(j * STRIP_ROWS, tf.minimum((j + 1) * STRIP_ROWS, h))
        top, bottom = tf.gather(grid, tf.gather(y_lo, rows)), tf.gather(grid, tf.gather(y_hi, rows))
        band = top + (bottom - top) * tf.gather(y_frac, rows)[:, None, None]
        left, right = tf.gather(band, x_lo, axis=1), tf.gather(band, x_hi, axis=1)
        up = left + (right - left) * x_frac
        labels = labels.write(j, tf.cast(tf.argmax(up, axis=-1, output_type=tf.int32),
                                         label_dtype))
        if want_probs:
            probs = probs.write(j, tf.nn.softmax(up))
        return j + 1, labels, probs

    labels = tf.TensorArray(label_dtype, size=count, infer_shape=False)
    probs = tf.TensorArray(tf.float32, size=count if want_probs else 0, infer_shape=False)
    _, labels, probs = tf1.while_loop(lambda j, *_: j < count, body,
                                      [tf.constant(0), labels, probs],
                                      parallel_iterations=1, back_prop=False)
    return labels.concat(), (probs.concat() if want_probs else None)


def tiled_predict(rgb, num_classes, window, stride=None, scales=(1.0,), flip=False,
                  precision='float32', fold_batch_norm=False, img_mean=IMG_MEAN_BGR,
                  want_probs=False, on_window=None):
    """[H, W, 3] uint8 RGB -> (labels [H, W] uint8 for fewer than 257 classes, else int32;
    probs [H, W, C] float32 or None): the windows (grid_logits, with its on_window hook),
    upsampled in strips (grid_to_full). Always tiled, even when one window covers the image
    (segment_labels chooses); the variables must exist."""
    grid = grid_logits(rgb, num_classes, window, stride, scales, flip, precision,
                       fold_batch_norm, img_mean, on_window)
    return grid_to_full(grid, tf.shape(rgb)[0], tf.shape(rgb)[1], want_probs,
                        tf.uint8 if num_classes <= 256 else tf.int32)


def segment_labels(rgb, num_classes, window, stride=None, scales=(1.0,), flip=False,
                   precision='float32', fold_batch_norm=False, img_mean=IMG_MEAN_BGR):
    """One graph for any image (the tiled SavedModel): [H, W, 3] uint8 RGB -> [H, W] int32
    labels, by the whole-image path (msc.predict_probs) when one window covers the image,
    else tiled. Creates the network's variables (outside the control flow) when the graph
    has none yet."""
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE):
        # variables cannot be created inside a tf.cond or tf.while_loop: a tower that is
        # never run creates (or reuses) them here
        msc.multi_scale_logits(tf1.placeholder_with_default(
            tf.zeros([1, MIN_WINDOW, MIN_WINDOW, 3]), [1, None, None, 3]), num_classes,
            False, (1.0,), fold_batch_norm=fold_batch_norm)
    h, w = tf.shape(rgb)[0], tf.shape(rgb)[1]

    def whole():
        with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
            return msc.predict_probs(preprocess_image(rgb[None], img_mean), num_classes,
                                     tuple(scales), flip, precision,
                                     fold_batch_norm=fold_batch_norm)[1][0]

    def tiled():
        return tf.cast(tiled_predict(rgb, num_classes, window, stride, scales, flip,
                                     precision, fold_batch_norm, img_mean)[0], tf.int32)

    return tf.cond(tf.logical_and(h <= window[0], w <= window[1]), whole, tiled)
