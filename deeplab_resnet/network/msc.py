"""Multi-scale towers with shared variables, fused by element-wise max: one function for
training, evaluation, inference and export.
"""
import collections

import tensorflow as tf

from deeplab_resnet.common.constants import BN_DECAY, TRAIN_SCALES
from deeplab_resnet.network.model import DeepLabResNetModel
from deeplab_resnet.network.resize import resize_bilinear, scaled_size

tf1 = tf.compat.v1

MSCOutput = collections.namedtuple('MSCOutput', ['fused', 'per_scale', 'nets'])
"""fused: [N, h, w, C] float32 logits at the first scale's logit size, the element-wise max
of every scale's logits resized (bilinear) to that size; per_scale: the logits of each scale
(their own sizes), in the order of `scales`; nets: the DeepLabResNetModel of each scale."""


PRECISION_DTYPES = {'float32': tf.float32, 'bfloat16': tf.bfloat16, 'float16': tf.float16}
PRECISIONS = tuple(PRECISION_DTYPES)


def _cast_getter(dtype):
    """Custom getter of a tower computing in `dtype` (bfloat16 or float16): convolution
    weights and biases are read as `dtype` (the variables stay float32, as in the
    checkpoints, and their gradients come back float32); batch-norm variables stay float32."""
    def cast_getter(getter, name, *args, **kwargs):
        variable = getter(name, *args, **kwargs)
        if name.endswith(('/weights', '/biases')):
            return tf.cast(variable, dtype)
        return variable
    return cast_getter


def multi_scale_logits(images, num_classes, is_training=False, scales=TRAIN_SCALES,
                       bn_decay=BN_DECAY, sync_batch_norm=False, precision='float32',
                       fold_batch_norm=False, blocks=None):
    """Builds one DeepLab tower per scale; variables are created by the first and shared.

    Args:
      images: [N, H, W, 3] float32, BGR, mean-subtracted.
      scales: the first is the reference size (1.0 in DeepLab); each other tower sees the
        images resized bilinearly to int(H * s), int(W * s).
      bn_decay: decay of the batch-norm moving averages (float or scalar tensor).
      sync_batch_norm: batch statistics over every replica's batch (training under a
        tf.distribute strategy).
      precision: 'float32', or 'bfloat16' / 'float16': the towers compute in that dtype
        (inputs and convolution weights cast inside the graph; batch-norm statistics and
        affine in float32); the logits are float32 either way. (Training in float16 needs
        a loss scale: optim.LossScale.)
      fold_batch_norm: inference with the batch-norm scales folded into the kernels
        (model.fold_batch_norm_op must run once after the weights are restored).
      blocks: blocks per stage (DeepLabResNetModel; None: ResNet-101's unless DEEPLAB_BLOCKS).
    Returns: MSCOutput. Only the first tower updates batch-norm moving averages.
    """
    size = tf.shape(images)[1:3]
    nets, per_scale = [], []
    for i, scale in enumerate(scales):
        inputs = images if scale == 1.0 else resize_bilinear(images, scaled_size(size, scale))
        getter = None if precision == 'float32' else _cast_getter(PRECISION_DTYPES[precision])
        with tf1.variable_scope(tf1.get_variable_scope(), reuse=True if i else None,
                                custom_getter=getter):
            net = DeepLabResNetModel({'data': tf.cast(inputs, PRECISION_DTYPES[precision])},
                                     is_training=is_training, num_classes=num_classes,
                                     update_moving_stats=(i == 0),
                                     moving_stats_in_place=False, bn_decay=bn_decay,
                                     sync_batch_norm=sync_batch_norm,
                                     fold_batch_norm=fold_batch_norm, blocks=blocks)
        nets.append(net)
        per_scale.append(tf.cast(net.logits, tf.float32))
    fused = per_scale[0]
    if len(scales) > 1:
        target = tf.shape(fused)[1:3]
        for logits in per_scale[1:]:
            fused = tf.maximum(fused, resize_bilinear(logits, target))
    return MSCOutput(fused, per_scale, nets)


def fused_logits(images, num_classes, scales=(1.0,), flip=False, precision='float32',
                 fold_batch_norm=False):
    """The fused logits that predict_probs upsamples: a list of one [N, h, w, C] float32
    tensor at the first scale's logit size (multi_scale_logits' `fused`), two with `flip`
    (then the second is the mirrored images' fused logits, not mirrored back)."""
    fused = [multi_scale_logits(images, num_classes, False, scales, precision=precision,
                                fold_batch_norm=fold_batch_norm).fused]
    if flip:
        with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
            fused.append(multi_scale_logits(tf.reverse(images, [2]), num_classes, False,
                                            scales, precision=precision,
                                            fold_batch_norm=fold_batch_norm).fused)
    return fused


def probs_from_fused(fused, size):
    """Full-resolution probabilities from fused_logits' output: each map upsampled
    bilinearly to `size`, a mirrored map mirrored back and the two averaged, then softmax.
    The CRF search (crf_search) rebuilds the probabilities from stored logits with this same
    function, so that they equal the evaluation's.

    Args:
      fused: a list of one or two [N, h, w, C] float32 tensors (fused_logits).
      size: [2] int32, the image's (H, W).
    Returns: (probs [N, H, W, C] float32, labels [N, H, W] int32 argmax of the logits).
    """
    logits = resize_bilinear(fused[0], size)
    if len(fused) > 1:
        logits = 0.5 * (logits + tf.reverse(resize_bilinear(fused[1], size), [2]))
    probs = tf.nn.softmax(logits)
    return probs, tf.argmax(logits, axis=3, output_type=tf.int32)


def predict_probs(images, num_classes, scales=(1.0,), flip=False, precision='float32',
                  fold_batch_norm=False, fused_out=None):
    """Inference at full resolution: probs_from_fused(fused_logits(...)).

    Args:
      images: [N, H, W, 3] float32, BGR, mean-subtracted (dynamic size).
      flip: average the logits with those of the mirrored images (mirrored back).
      precision: 'float32', 'bfloat16' or 'float16' (multi_scale_logits).
      fold_batch_norm: see multi_scale_logits.
      fused_out: a list that receives fused_logits' tensors (for a caller that fetches them).
    Returns: (probs [N, H, W, C] float32 softmax of the fused logits upsampled bilinearly to
      the image size, labels [N, H, W] int32 argmax).
    """
    fused = fused_logits(images, num_classes, scales, flip, precision, fold_batch_norm)
    if fused_out is not None:
        fused_out.extend(fused)
    return probs_from_fused(fused, tf.shape(images)[1:3])
