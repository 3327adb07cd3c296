"""DeepLab-v2 optimisation: poly learning rate, momentum SGD with 1x / 10x / 20x groups, and
gradient accumulation (Caffe's iter_size).

Adam (Kingma & Ba) is the other choice (train_msc.py --optimizer adam), with the same groups,
schedule and accumulation. It is not the paper's: it is there for training from scratch, where
the classifier's inputs (res5c, 2048 channels, unnormalised residual sums) are so large that
one momentum-SGD learning rate is either too small for the backbone or unstable for the
classifier; Adam's per-weight step size removes that coupling (the demo uses it).

Training in float16 (--precision float16) scales the loss dynamically (Micikevicius et al.
2018, "Mixed precision training"): the gradients are taken of loss x S, so that small ones
survive float16's range, and divided by S in float32; an update whose gradient (the
accumulated one with --grad-update-every) is not finite everywhere, on any replica, is skipped
(the step still counts) and S halves; after LOSS_SCALE_GROWTH_INTERVAL finite updates in a row
S doubles. S lives in the variables loss_scale/scale and loss_scale/finite_updates: training
snapshots hold them (a resume continues with the same S); they are not network variables, so
restoring a network (the original checkpoints, initial weights) neither needs nor sets them.
"""
import collections

import tensorflow as tf

from deeplab_resnet.runtime import distribute
from deeplab_resnet.training import losses
from deeplab_resnet.common.constants import (LR_MULT_ASPP_BIASES, LR_MULT_ASPP_WEIGHTS,
                                             LR_MULT_BACKBONE, OPTIMIZERS)
from deeplab_resnet.network.model import is_aspp_variable, variable_name

tf1 = tf.compat.v1

TrainOps = collections.namedtuple('TrainOps', ['learning_rate', 'accumulate', 'apply',
                                               'accumulators', 'loss_scale'])
"""learning_rate: scalar tensor at the current global step. accumulate: op that adds one
micro-batch's gradients / k to the accumulators (and runs the batch-norm updates); apply: op
that applies the accumulated gradients, increments the global step and zeroes the
accumulators. With k == 1, accumulate is None and apply does everything in one run.
loss_scale: the LossScale, or None."""

LOSS_SCALE_SCOPE = 'loss_scale'
INITIAL_LOSS_SCALE = 2.0 ** 15
LOSS_SCALE_GROWTH_INTERVAL = 2000
MIN_LOSS_SCALE = 1.0

LossScale = collections.namedtuple('LossScale', ['scale', 'finite_updates', 'growth_interval'])
"""Dynamic loss scaling (see the module): scale: float32 scalar variable loss_scale/scale, the
factor S of the loss; finite_updates: int64 scalar variable loss_scale/finite_updates, the
updates in a row whose gradients were finite; growth_interval: that many double S."""


def is_loss_scale_variable(variable):
    return variable_name(variable).startswith(LOSS_SCALE_SCOPE + '/')


def dynamic_loss_scale(initial=INITIAL_LOSS_SCALE, growth_interval=LOSS_SCALE_GROWTH_INTERVAL):
    """Creates (or, in another replica, reuses) the loss-scale variables: global, not
    trainable, so saved with everything in training snapshots. Returns LossScale."""
    with tf1.variable_scope(LOSS_SCALE_SCOPE):
        scale = tf1.get_variable('scale', [], tf.float32,
                                 initializer=tf1.constant_initializer(initial),
                                 trainable=False,
                                 aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        finite = tf1.get_variable('finite_updates', [], tf.int64,
                                  initializer=tf1.zeros_initializer(), trainable=False,
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    return LossScale(scale, finite, int(growth_interval))


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
                    optimizer='momentum', weight_decay=0.0, loss_scale=None):
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
      loss_scale: a LossScale (float16 towers): the gradients are those of loss x S divided
        by S, and the update is applied only when they are all finite (module docstring).
    Returns: TrainOps.
    """
    if global_step is None:
        global_step = tf1.train.get_or_create_global_step()
    lr = poly_learning_rate(base_lr, global_step, num_steps, power)
    groups = variable_groups(trainable, aspp_mults)
    variables = [v for _, vs in groups for v in vs]
    if update_ops is None:
        update_ops = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
    grads = losses.add_weight_decay_gradients(_gradients(loss, variables, loss_scale),
                                              variables, weight_decay)

    def regroup(values):
        out, i = [], 0
        for mult, vs in groups:
            out.append((mult, list(zip(values[i:i + len(vs)], vs))))
            i += len(vs)
        return out

    def update(values):
        if loss_scale is None:
            return _apply(regroup(values), lr, momentum, global_step, optimizer)
        return _apply_if_finite(regroup, values, lr, momentum, global_step, optimizer,
                                loss_scale)

    if grad_update_every == 1:
        with tf.control_dependencies(update_ops):
            apply = update(grads)
        return TrainOps(lr, None, apply, [], loss_scale)

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
    apply_grads = update([a.read_value() for a in accumulators])
    with tf.control_dependencies([apply_grads]):
        apply = tf.group(*[a.assign(tf.zeros_like(a)) for a in accumulators])
    return TrainOps(lr, accumulate, apply, accumulators, loss_scale)


def _gradients(loss, variables, loss_scale):
    """d loss / d variables (None where the loss does not reach one); with a LossScale, those
    of loss x S divided by S (in float32: the variables are float32)."""
    if loss_scale is None:
        return tf.gradients(loss, variables)
    scale = tf.convert_to_tensor(loss_scale.scale)
    scaled = tf.gradients(loss * scale, variables)
    return [None if g is None else g / scale for g in scaled]


def _apply_if_finite(regroup, grads, learning_rate, momentum, global_step, optimizer,
                     loss_scale):
    """The update from `grads` (a list in the order of `regroup`'s variables, this replica's)
    when every replica's are finite, else only the global step's increment; then the new
    loss scale. One op.

    The replicas agree on 'finite' through one all-reduce of their non-finite flags. The
    condition then runs in cross-replica context (a merge_call), with the optimisers' own
    cross-replica steps inside its branch: a tf.distribute synchronisation inside a tf.cond
    built in replica context is refused by TensorFlow."""
    present = [i for i, g in enumerate(grads) if g is not None]
    flag = tf.cast(tf.logical_not(tf.reduce_all(
        tf.stack([tf.reduce_all(tf.math.is_finite(grads[i])) for i in present]))), tf.float32)
    non_finite = distribute.sum_over_replicas(flag)

    def cross_replica(strategy, non_finite, present_grads):
        finite = tf.equal(strategy.experimental_local_results(non_finite)[0], 0.0)

        def replica_apply(*values):
            full = [None] * len(grads)
            for i, value in zip(present, values):
                full[i] = value
            return _apply(regroup(full), learning_rate, momentum, global_step, optimizer)

        def apply():
            return strategy.group(strategy.extended.call_for_each_replica(
                replica_apply, args=tuple(present_grads)))

        def skip():
            return tf.group(global_step.assign_add(1))

        applied = tf.cond(finite, apply, skip)
        with tf.control_dependencies([applied]):
            return update_loss_scale(loss_scale, finite)

    return tf.distribute.get_replica_context().merge_call(
        cross_replica, args=(non_finite, [grads[i] for i in present]))


def update_loss_scale(loss_scale, finite):
    """Op: after a finite update, count it, and double S at the growth_interval-th in a row
    (while 2 S is finite); after a skipped one, halve S (not below MIN_LOSS_SCALE) and restart
    the count.

    Args: loss_scale: LossScale; finite: scalar bool tensor.
    """
    scale = tf.convert_to_tensor(loss_scale.scale)
    count = tf.where(finite, loss_scale.finite_updates + 1, tf.zeros([], tf.int64))
    grow = tf.logical_and(count >= loss_scale.growth_interval, tf.math.is_finite(scale * 2.0))
    new_scale = tf.where(finite, tf.where(grow, scale * 2.0, scale),
                         tf.maximum(scale * 0.5, MIN_LOSS_SCALE))
    new_count = tf.where(grow, tf.zeros([], tf.int64), count)
    return tf.group(loss_scale.scale.assign(new_scale),
                    loss_scale.finite_updates.assign(new_count))
