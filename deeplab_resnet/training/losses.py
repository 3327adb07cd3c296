"""DeepLab-v2 multi-scale loss: four softmax losses (fused, and each scale) + weight decay.

Under a tf.distribute strategy with R replicas in sync, every value here is this replica's
share of the global batch's value: the softmax losses divide by the valid pixels of the
global batch (an all-reduced count) and the weight decay by R. The strategy sums the replicas'
gradients, so the sum is exactly the gradient of the loss one device would compute on the
whole global batch, and the reported loss is the sum of the shares.

Two opt-in changes (docs/training.md; neither given: the paper's loss, the same graph):
class weights (each pixel's loss times its class's weight, the sum still divided by the count
of valid pixels, as tensorflow/models does), and hard pixels (each tower's loss the mean of its
k = max(1, floor(fraction x valid pixels)) largest weighted pixel losses, per micro-batch and
replica; under a strategy each replica's share is its mean / R, so the sum is the mean over the
replicas).
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


def softmax_loss(logits, labels, num_classes, class_weights=None, top_k_fraction=None):
    """Mean pixel-wise softmax cross-entropy over pixels whose label is in [0, num_classes)
    (of the global batch under a strategy: this replica's share, see the module).

    Args:
      logits: [N, h, w, C] float32.
      labels: [N, H, W, 1] integer labels; resized (centre-aligned nearest) to h x w.
      class_weights: None (the paper's), or C floats: each pixel's loss times its class's
        weight; the sum is still divided by the count of valid pixels.
      top_k_fraction: None (every valid pixel), or a scalar float64 tensor in (0, 1]: the loss
        is the mean of the k = max(1, floor(fraction x valid pixels of this micro-batch))
        largest (weighted) pixel losses (top_k_mean).
    Returns: (loss scalar float32 (0 when no pixel is valid), labels [N, h, w] int32,
      valid mask [N, h, w] bool).
    """
    labels = prepare_label(labels, tf.shape(logits)[1:3], num_classes, one_hot=False)
    valid = tf.logical_and(labels >= 0, labels < num_classes)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    mask = tf.cast(valid, tf.float32)
    if class_weights is None and top_k_fraction is None:   # the paper's loss
        count = tf.stop_gradient(sum_over_replicas(tf.reduce_sum(mask)))
        loss = tf.math.divide_no_nan(tf.reduce_sum(xent * mask), count)
        return loss, labels, valid
    pixel_losses = xent * mask
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise ValueError('%d class weights for %d classes' % (len(class_weights),
                                                                  num_classes))
        pixel_losses *= tf.gather(tf.constant(class_weights, tf.float32), safe)
    if top_k_fraction is None:
        count = tf.stop_gradient(sum_over_replicas(tf.reduce_sum(mask)))
        loss = tf.math.divide_no_nan(tf.reduce_sum(pixel_losses), count)
    else:
        loss = top_k_mean(pixel_losses, valid, top_k_fraction) / float(replicas_in_sync())
    return loss, labels, valid


def top_k_count(fraction, num_valid):
    """k = max(1, floor(fraction x num_valid)), computed in float64.

    Args: fraction: scalar float64 tensor in (0, 1]; num_valid: scalar int32 tensor.
    Returns: scalar int32 tensor."""
    k = tf.floor(fraction * tf.cast(num_valid, tf.float64))
    return tf.maximum(1, tf.cast(k, tf.int32))


def top_k_mean(pixel_losses, valid, fraction):
    """The mean of the k = top_k_count(fraction, valid pixels) largest pixel losses.

    Args:
      pixel_losses: [N, h, w] float32, >= 0, zero where not valid (an invalid pixel is only
        taken when fewer than k valid ones are above zero, and then adds nothing).
      valid: [N, h, w] bool.
      fraction: scalar float64 tensor in (0, 1].
    Returns: scalar float32 (0 when no pixel is valid).
    """
    flat = tf.reshape(pixel_losses, [-1])
    k = top_k_count(fraction, tf.reduce_sum(tf.cast(valid, tf.int32)))
    top, _ = tf.nn.top_k(flat, k=tf.minimum(k, tf.size(flat)), sorted=False)
    return tf.reduce_sum(top) / tf.cast(k, tf.float32)


def top_k_fraction(fraction, warmup_steps=0, step=None):
    """The fraction of pixels kept at `step` (tensorflow/models' hard_example_mining_step):
    f = r * fraction + 1 - r, r = min(step / warmup_steps, 1); `fraction` itself without a
    warm-up.

    Args: fraction: float in (0, 1] or None; warmup_steps: int >= 0; step: the global step
      (a scalar integer tensor), needed with a warm-up.
    Returns: scalar float64 tensor, or None when fraction is None."""
    if fraction is None:
        return None
    if not warmup_steps:
        return tf.constant(float(fraction), tf.float64)
    r = tf.minimum(tf.cast(step, tf.float64) / float(warmup_steps), 1.0)
    return r * float(fraction) + 1.0 - r


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


def msc_loss(msc, labels, num_classes, variables, weight_decay, scales, class_weights=None,
             top_k_fraction=None):
    """The four losses of DeepLab-v2 MSC training.

    Args:
      msc: deeplab_resnet.network.msc.MSCOutput (DeepLab: scales 1, 0.75, 0.5).
      labels: [N, H, W, 1] integer labels of the full-scale crop.
      variables: the network's variables (weight decay on their kernels).
      scales: the scale of each of msc.per_scale, for the terms' names.
      class_weights, top_k_fraction: of every term (softmax_loss); None: the paper's loss.
    Returns: MSCLoss; terms are named 'fused' and 'scale_<s>'.
    """
    terms = collections.OrderedDict()
    fused_loss, fused_labels, valid = softmax_loss(msc.fused, labels, num_classes,
                                                   class_weights, top_k_fraction)
    terms['fused'] = fused_loss
    for scale, logits in zip(scales, msc.per_scale):
        terms['scale_%g' % scale] = softmax_loss(logits, labels, num_classes, class_weights,
                                                 top_k_fraction)[0]
    cross_entropy = tf.add_n(list(terms.values()))
    decay = weight_decay_loss(variables, weight_decay)
    preds = tf.argmax(msc.fused, axis=3, output_type=tf.int32)
    correct = tf.cast(tf.logical_and(tf.equal(preds, fused_labels), valid), tf.float32)
    accuracy = tf.math.divide_no_nan(
        tf.reduce_sum(correct), sum_over_replicas(tf.reduce_sum(tf.cast(valid, tf.float32))))
    return MSCLoss(cross_entropy + decay, cross_entropy, decay, terms, accuracy)
