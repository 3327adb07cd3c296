"""One DeepLab-v2 training step, built once for every caller (train_msc.py's trainer, the
benchmarks): the multi-scale towers, the four softmax losses and the weight decay, the
gradients and the update (momentum SGD or Adam, 1x / 10x / 20x learning-rate groups, Caffe's
iter_size accumulation).
"""
import collections

import tensorflow as tf

from deeplab_resnet.checkpoint import checkpoints
from deeplab_resnet.network import layers, msc
from deeplab_resnet.training import losses, optim
from deeplab_resnet.common.constants import (BN_DECAY, LR_MULT_ASPP_BIASES, LR_MULT_ASPP_WEIGHTS,
                                             TRAIN_SCALES)
from deeplab_resnet.network.model import variable_name

tf1 = tf.compat.v1

HParams = collections.namedtuple('HParams', [
    'num_classes', 'scales', 'is_training', 'bn_from_scratch', 'sync_batch_norm',
    'weight_decay', 'train_bn_params', 'optimizer', 'learning_rate', 'momentum', 'num_steps',
    'power', 'grad_update_every', 'aspp_lr_mult', 'precision', 'class_weights',
    'top_k_pixels', 'top_k_pixels_warmup'], defaults=(None, None, 0))
"""The recipe of a training step. bn_from_scratch: the batch-norm moving averages follow
Caffe's bias-corrected accumulation (they start as the statistics of the first batches, not
the 0 / 1 they were initialised with), for a network trained from its He initialisation.
precision: 'float32', 'bfloat16' or 'float16' (the towers' arithmetic; variables, losses and
updates stay float32; float16 scales the loss dynamically, optim.LossScale).
class_weights: None (the paper's) or a tuple of num_classes floats weighting every softmax
loss; top_k_pixels: None (every pixel, the paper's) or the fraction in (0, 1] of the largest
pixel losses each loss term keeps, reached after top_k_pixels_warmup updates (losses.py)."""

PAPER = HParams(num_classes=21, scales=TRAIN_SCALES, is_training=False, bn_from_scratch=False,
                sync_batch_norm=False, weight_decay=5e-4, train_bn_params=False,
                optimizer='momentum', learning_rate=2.5e-4, momentum=0.9, num_steps=20000,
                power=0.9, grad_update_every=10,
                aspp_lr_mult=(LR_MULT_ASPP_WEIGHTS, LR_MULT_ASPP_BIASES), precision='float32')
"""DeepLab-v2's VOC recipe (frozen batch norm, from ImageNet / COCO weights)."""

TrainStep = collections.namedtuple('TrainStep', ['loss', 'ops', 'fused_logits'])
"""loss: losses.MSCLoss of this replica's micro-batch; ops: optim.TrainOps (accumulate /
apply); fused_logits: [N, h, w, C] float32 at the logit resolution of the full-scale tower."""


def hparams_from_args(args, bn_from_scratch, precision='float32', class_weights=None):
    """train_msc.py's flags -> HParams (precision: the one precision.choose settled on;
    class_weights: the values of --class-weights' file, class_weights.read)."""
    return HParams(args.num_classes, tuple(args.scales), args.is_training, bn_from_scratch,
                   args.sync_batch_norm, args.weight_decay, args.train_bn_params,
                   args.optimizer, args.learning_rate, args.momentum, args.num_steps,
                   args.power, args.grad_update_every, tuple(args.aspp_lr_mult), precision,
                   tuple(class_weights) if class_weights is not None else None,
                   args.top_k_pixels, args.top_k_pixels_warmup)


def trainable_variables(variables, train_bn_params=False):
    """The network variables an update changes: the convolution kernels and biases (the
    trainable ones), plus batch norm's gamma and beta with train_bn_params (DeepLab-v2 keeps
    them fixed)."""
    names = set(variable_name(v) for v in tf1.trainable_variables())

    def trained(name):
        return name in names or (train_bn_params and name.endswith(('/gamma', '/beta')))
    return [v for v in variables if trained(variable_name(v))]


def build_train_step(images, labels, hparams, global_step=None):
    """Builds one training step in the current graph (once per replica under a strategy).

    Args:
      images: [N, h, w, 3] float32, BGR, mean-subtracted crops.
      labels: [N, h, w, 1] integer labels (the ignore label and values >= C are not counted).
      hparams: HParams.
      global_step: the step variable (default: get_or_create_global_step()).
    Returns: TrainStep.
    """
    if global_step is None:
        global_step = tf1.train.get_or_create_global_step()
    bn_decay = (layers.caffe_moving_average_decay(global_step + 1) if hparams.bn_from_scratch
                else BN_DECAY)
    towers = msc.multi_scale_logits(images, hparams.num_classes, hparams.is_training,
                                    hparams.scales, bn_decay, hparams.sync_batch_norm,
                                    hparams.precision)
    variables = checkpoints.model_variables()
    loss = losses.msc_loss(towers, labels, hparams.num_classes, variables,
                           hparams.weight_decay, hparams.scales, hparams.class_weights,
                           losses.top_k_fraction(hparams.top_k_pixels,
                                                 hparams.top_k_pixels_warmup, global_step))
    loss_scale = optim.dynamic_loss_scale() if hparams.precision == 'float16' else None
    ops = optim.build_train_ops(
        loss.cross_entropy, trainable_variables(variables, hparams.train_bn_params),
        hparams.learning_rate, hparams.momentum, hparams.num_steps, hparams.power,
        hparams.grad_update_every, global_step, hparams.aspp_lr_mult,
        update_ops=[op for net in towers.nets for op in net.update_ops],
        optimizer=hparams.optimizer, weight_decay=hparams.weight_decay, loss_scale=loss_scale)
    return TrainStep(loss, ops, towers.fused)
