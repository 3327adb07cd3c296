"""DeepLab-v2 multi-scale loss: four softmax losses (fused, and each scale) + weight decay.

Under a tf.distribute strategy with R replicas in sync, every value here is this replica's
share of the global batch's value: the softmax losses divide by the valid pixels of the
global batch (an all-reduced count) and the weight decay by R. The strategy sums the replicas'
gradients, so the sum is exactly the gradient of the loss one device would compute on the
whole global batch, and the reported loss is the sum of the shares.
"""
import collections

import tensorflow as tf

from deeplab_resnet.network.model import variable_name
from deeplab_resnet.network.resize import prepare_label
from deeplab_resnet.runtime.distribute import replicas_in_sync, sum_over_replicas

tf1 = tf.compat.v1

MSCLoss = collections.namedtuple('MSCLoss', ['total', 'cross_entropy', 'weight_decay',
                                             'terms', 'pixel_accuracy'])
"""total: cross_entropy + weight_decay (scalar); cross_entropy: sum of the four softmax
losses; terms: OrderedDict name -> each softmax loss; pixel_accuracy: of the fused logits on
the valid pixels of the batch."""


def softmax_loss(logits, labels, num_classes):
    """Mean pixel-wise softmax cross-entropy over pixels whose label is in [0, num_classes)
    (of the global batch under a strategy: this replica's share, see the module).

    Args:
      logits: [N, h, w, C] float32.
      labels: [N, H, W, 1] integer labels; resized (centre-aligned nearest) to h x w.
    Returns: (loss scalar float32 (0 when no pixel is valid), labels [N, h, w] int32,
      valid mask [N, h, w] bool).
    """
    labels = prepare_label(labels, tf.shape(logits)[1:3], num_classes, one_hot=False)
    valid = tf.logical_and(labels >= 0, labels < num_classes)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    mask = tf.cast(valid, tf.float32)
    count = tf.stop_gradient(sum_over_replicas(tf.reduce_sum(mask)))
    loss = tf.math.divide_no_nan(tf.reduce_sum(xent * mask), count)
    return loss, labels, valid


def is_decayed(variable):
    """Weight decay applies to the convolution kernels (`.../weights`)."""
    return variable_name(variable).endswith('/weights')


def weight_decay_loss(variables, weight_decay):
    """weight_decay * sum of l2_loss (sum(w^2) / 2) over convolution kernels (`weights`)
    (divided by the replicas in sync: each replica's share)."""
    kernels = [v for v in variables if is_decayed(v)]
    if not kernels or not weight_decay:
        return tf.constant(0.0)
    return (weight_decay / replicas_in_sync()) * tf.add_n([tf.nn.l2_loss(v) for v in kernels])


def add_weight_decay_gradients(grads, variables, weight_decay):
    """The gradients of loss + weight_decay_loss(variables, weight_decay), from the gradients
    `grads` of the loss alone (a list, None where the loss does not reach a variable): each
    kernel's gradient gets (weight_decay / replicas) * w.

    Differentiating the sum instead gives the same numbers, but the decay terms depend only on
    the weights: the executor makes all of them (one copy of every kernel, 176 MB for
    ResNet-101) when the backward pass starts and holds them until the last tower's gradient
    arrives. Here each is made after its kernel's loss gradient (a control dependency).

    Returns: list like grads.
    """
    if not weight_decay:
        return list(grads)
    coefficient = weight_decay / replicas_in_sync()
    out = []
    for g, v in zip(grads, variables):
        if is_decayed(v):
            with tf.control_dependencies([g] if g is not None else []):
                decay = coefficient * tf.convert_to_tensor(v)
            g = decay if g is None else g + decay
        out.append(g)
    return out


def msc_loss(msc, labels, num_classes, variables, weight_decay, scales):
    """The four losses of DeepLab-v2 MSC training.

    Args:
      msc: deeplab_resnet.network.msc.MSCOutput (DeepLab: scales 1, 0.75, 0.5).
      labels: [N, H, W, 1] integer labels of the full-scale crop.
      variables: the network's variables (weight decay on their kernels).
      scales: the scale of each of msc.per_scale, for the terms' names.
    Returns: MSCLoss; terms are named 'fused' and 'scale_<s>'.
    """
    terms = collections.OrderedDict()
    fused_loss, fused_labels, valid = softmax_loss(msc.fused, labels, num_classes)
    terms['fused'] = fused_loss
    for scale, logits in zip(scales, msc.per_scale):
        terms['scale_%g' % scale] = softmax_loss(logits, labels, num_classes)[0]
    cross_entropy = tf.add_n(list(terms.values()))
    decay = weight_decay_loss(variables, weight_decay)
    preds = tf.argmax(msc.fused, axis=3, output_type=tf.int32)
    correct = tf.cast(tf.logical_and(tf.equal(preds, fused_labels), valid), tf.float32)
    accuracy = tf.math.divide_no_nan(
        tf.reduce_sum(correct), sum_over_replicas(tf.reduce_sum(tf.cast(valid, tf.float32))))
    return MSCLoss(cross_entropy + decay, cross_entropy, decay, terms, accuracy)
