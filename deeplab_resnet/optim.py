"""DeepLab-v2 optimisation: poly learning rate, momentum SGD with 1x / 10x / 20x groups, and
gradient accumulation (Caffe's iter_size).

Adam (Kingma & Ba) is the other choice (train_msc.py --optimizer adam), with the same groups,
schedule and accumulation. It is not the paper's: it is there for training from scratch, where
the classifier's inputs (res5c, 2048 channels, unnormalised residual sums) are so large that
one momentum-SGD learning rate is either too small for the backbone or unstable for the
classifier; Adam's per-weight step size removes that coupling (the demo uses it).
"""
import collections

import tensorflow as tf

from deeplab_resnet import losses
from deeplab_resnet.constants import (LR_MULT_ASPP_BIASES, LR_MULT_ASPP_WEIGHTS,
                                      LR_MULT_BACKBONE, OPTIMIZERS)
from deeplab_resnet.model import is_aspp_variable, variable_name

tf1 = tf.compat.v1

TrainOps = collections.namedtuple('TrainOps', ['learning_rate', 'accumulate', 'apply',
                                               'accumulators'])
"""learning_rate: scalar tensor at the current global step. accumulate: op that adds one
micro-batch's gradients / k to the accumulators (and runs the batch-norm updates); apply: op
that applies the accumulated gradients, increments the global step and zeroes the
accumulators. With k == 1, accumulate is None and apply does everything in one run."""


def poly_learning_rate(base_lr, global_step, num_steps, power):
    """base_lr * (1 - step / num_steps) ** power, as a float32 scalar tensor."""
    progress = tf.cast(global_step, tf.float32) / float(num_steps)
    return base_lr * tf.pow(tf.maximum(1.0 - progress, 0.0), power)


def variable_groups(trainable, aspp_mults=(LR_MULT_ASPP_WEIGHTS, LR_MULT_ASPP_BIASES)):
    """Splits variables into DeepLab's learning-rate groups.

    Returns: list of (lr multiplier, [variables]): backbone kernels x1, ASPP kernels x10,
    ASPP biases x20 (`aspp_mults`; batch-norm parameters are not trainable).
    """
    backbone = [v for v in trainable if not is_aspp_variable(variable_name(v))]
    aspp_w = [v for v in trainable if is_aspp_variable(variable_name(v))
              and variable_name(v).endswith('/weights')]
    aspp_b = [v for v in trainable if is_aspp_variable(variable_name(v))
              and variable_name(v).endswith('/biases')]
    return [(LR_MULT_BACKBONE, backbone), (aspp_mults[0], aspp_w), (aspp_mults[1], aspp_b)]


def _optimizer(name, learning_rate, momentum):
    """momentum: tf1 MomentumOptimizer (slots '<var>/Momentum'); adam: tf1 AdamOptimizer with
    beta1 = `momentum`, beta2 0.999, epsilon 1e-8 (slots '<var>/Adam', '<var>/Adam_1')."""
    if name == 'momentum':
        return tf1.train.MomentumOptimizer(learning_rate, momentum)
    if name == 'adam':
        return tf1.train.AdamOptimizer(learning_rate, beta1=momentum)
    raise ValueError('unknown optimizer %r (one of %s)' % (name, ', '.join(OPTIMIZERS)))


def _apply(groups_grads, learning_rate, momentum, global_step, optimizer='momentum'):
    ops = []
    for i, (mult, pairs) in enumerate(groups_grads):
        if not pairs:
            continue
        opt = _optimizer(optimizer, learning_rate * mult, momentum)
        ops.append(opt.apply_gradients(pairs, global_step=global_step if i == 0 else None))
    return tf.group(*ops)


def build_train_ops(loss, trainable, base_lr, momentum, num_steps, power,
                    grad_update_every=1, global_step=None,
                    aspp_mults=(LR_MULT_ASPP_WEIGHTS, LR_MULT_ASPP_BIASES), update_ops=None,
                    optimizer='momentum', weight_decay=0.0):
    """Builds the update. Inside a tf.distribute replica context (train_msc.py
    --num-replicas / TF_CONFIG), the optimisers sum the replicas' gradients before the one
    update every replica applies; `loss` must then be this replica's share of the global loss
    (losses.py), and each replica accumulates its own micro-batches locally (sync-on-read
    accumulators) until that all-reduce.

    Args:
      loss: scalar float32 of one micro-batch, without the weight decay when weight_decay
        is given.
      trainable: the variables to train.
      grad_update_every: k, the number of micro-batches whose mean gradient makes one update.
      aspp_mults: learning-rate multipliers of the ASPP kernels and biases.
      update_ops: batch-norm moving-average updates to run with every micro-batch (default:
        the UPDATE_OPS collection; under a strategy pass this replica's own).
      optimizer: 'momentum' (the paper's) or 'adam' (`momentum` is then its beta1).
      weight_decay: the coefficient of losses.weight_decay_loss: the update follows the
        gradient of loss + that decay (losses.add_weight_decay_gradients).
    Returns: TrainOps.
    """
    if global_step is None:
        global_step = tf1.train.get_or_create_global_step()
    lr = poly_learning_rate(base_lr, global_step, num_steps, power)
    groups = variable_groups(trainable, aspp_mults)
    variables = [v for _, vs in groups for v in vs]
    if update_ops is None:
        update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    grads = losses.add_weight_decay_gradients(tf.gradients(loss, variables), variables,
                                              weight_decay)

    def regroup(values):
        out, i = [], 0
        for mult, vs in groups:
            out.append((mult, list(zip(values[i:i + len(vs)], vs))))
            i += len(vs)
        return out

    if grad_update_every == 1:
        with tf.control_dependencies(update_ops):
            apply = _apply(regroup(grads), lr, momentum, global_step, optimizer)
        return TrainOps(lr, None, apply, [])

    with tf1.variable_scope('grad_accumulators'):
        accumulators = [tf1.get_variable(variable_name(v), v.get_shape(), tf.float32,
                                         initializer=tf1.zeros_initializer(), trainable=False,
                                         collections=[tf1.GraphKeys.LOCAL_VARIABLES],
                                         synchronization=tf.VariableSynchronization.ON_READ,
                                         aggregation=tf.VariableAggregation.SUM)
                        for v in variables]
    k = float(grad_update_every)
    with tf.control_dependencies(update_ops):
        accumulate = tf.group(*[a.assign_add(g / k) for a, g in zip(accumulators, grads)])
    apply_grads = _apply(regroup([a.read_value() for a in accumulators]), lr, momentum,
                         global_step, optimizer)
    with tf.control_dependencies([apply_grads]):
        apply = tf.group(*[a.assign(tf.zeros_like(a)) for a in accumulators])
    return TrainOps(lr, accumulate, apply, accumulators)
