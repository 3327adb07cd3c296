"""The original project's utilities, vectorised: decode_labels, inv_preprocess, prepare_label,
plus the TensorFlow resizing conventions every script shares.

Conventions (one place): images and logits are resized bilinearly with align_corners=True,
as Caffe's Interp layer; labels are resized with centre-aligned nearest neighbour
(half_pixel_centers), so a downsampled label never shifts by a pixel.
"""
import numpy as np
import tensorflow as tf

from deeplab_resnet.colormap import colourise
from deeplab_resnet.constants import IMG_MEAN_BGR

tf1 = tf.compat.v1
# The suite uses tf.compat.v1 on purpose: TensorFlow's deprecation notices are noise here.
tf.get_logger().setLevel('ERROR')


def resize_bilinear(x, size):
    """[N, H, W, C] float -> [N, size[0], size[1], C] float32, align_corners=True."""
    return tf1.image.resize_bilinear(x, size, align_corners=True)


def resize_labels(labels, size):
    """[N, H, W, 1] integer labels -> [N, size[0], size[1], 1], centre-aligned nearest."""
    return tf1.image.resize_nearest_neighbor(labels, size, half_pixel_centers=True)


def scaled_size(size_hw, scale):
    """int(h * scale), int(w * scale) for a dynamic [2] int32 size (as the original)."""
    return tf.cast(tf.cast(size_hw, tf.float32) * scale, tf.int32)


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


def prepare_label(input_batch, new_size, num_classes, one_hot=True):
    """Resizes labels to the logits' size (centre-aligned nearest) and optionally one-hot
    encodes them (TensorFlow).

    Args:
      input_batch: [N, H, W, 1] integer labels.
      new_size: [2] int32 (h, w).
    Returns: [N, h, w] int32, or [N, h, w, num_classes] float32 one-hot (ignored pixels all 0).
    """
    labels = tf.squeeze(resize_labels(input_batch, new_size), axis=[3])
    labels = tf.cast(labels, tf.int32)
    if one_hot:
        return tf.one_hot(labels, depth=num_classes)
    return labels


INFERENCE_GRAPPLER_PASSES = ('pruning', 'remap')
"""Grappler passes of inference sessions (session_config(inference=True)): pruning drops the
IdentityN of the dilated convolutions' custom gradient, the remapper then fuses every
convolution with its bias (the folded batch norm), residual add and ReLU into one kernel
(oneDNN's post-ops on CPU). Measured (benchmarks/speed.py, 2 cores of a Zen 4): 375x500
single scale 1.25 s instead of 1.30 s; the first run takes 0.1-0.5 s more."""


def session_config(threads=0, optimize_graph=False, inference=False):
    """Session config: soft placement, GPU memory on demand, and `threads` intra-op CPU
    threads (0: TensorFlow's default) with 2 inter-op threads.

    optimize_graph: run all of Grappler. For these graphs it costs 30-45 s per new fetch
    signature on 2 CPU cores and was measured to bring no steady-state speed-up
    (benchmarks/speed.py).
    inference: for an inference graph (Predictor): only INFERENCE_GRAPPLER_PASSES, and one
    inter-op thread (the fused network is a chain; measured 2-5% faster single-scale, the
    same at 3 scales, 40 MB less). The training step was measured no faster with those
    passes (4.15 vs 4.05 s), and its first step 2.3 s slower.
    """
    config = tf1.ConfigProto(allow_soft_placement=True)
    options = config.graph_options.rewrite_options
    options.disable_meta_optimizer = not (optimize_graph or inference)
    if inference and not optimize_graph:
        options.optimizers[:] = INFERENCE_GRAPPLER_PASSES
    config.gpu_options.allow_growth = True
    if threads:
        config.intra_op_parallelism_threads = threads
        config.inter_op_parallelism_threads = 2
    if inference:
        config.inter_op_parallelism_threads = 1
    return config
