"""DeepLab-v2 ResNet-101 (Chen et al., arXiv:1606.00915), Caffe-exact, in TF graph mode.

Built from a stage table rather than an unrolled listing. Layer and variable names are those
of the Caffe model and of the original TensorFlow project (528 variables for 21 classes), so
its checkpoints restore by name.
"""
import collections
import os
import sys

import tensorflow as tf

from deeplab_resnet.network import layers
from deeplab_resnet.common.constants import (ASPP_INIT_STD, ASPP_LAYERS, ASPP_PREFIX, ASPP_RATES,
                                             BN_DECAY, LOGITS, RESNET101_BLOCKS)

tf1 = tf.compat.v1

Stage = collections.namedtuple('Stage', ['index', 'blocks', 'bottleneck', 'stride', 'dilation'])
"""A ResNet stage: res<index><block>; bottleneck width (the block outputs 4x it); the stride
of its first block (in the 1x1 convolutions, as Caffe's ResNet); the dilation of its 3x3s."""



def stages(blocks=RESNET101_BLOCKS):
    """The stage table with `blocks` blocks per stage (res2..res5): ResNet-101's by default.
    Other counts keep the stem, widths, strides, dilations, ASPP and naming scheme."""
    return (Stage(2, blocks[0], 64, 1, 1), Stage(3, blocks[1], 128, 2, 1),
            Stage(4, blocks[2], 256, 1, 2), Stage(5, blocks[3], 512, 1, 4))


RESNET101_STAGES = stages(RESNET101_BLOCKS)

BLOCKS_ENV = 'DEEPLAB_BLOCKS'
"""TEST/DEBUG KNOB, not a feature: DEEPLAB_BLOCKS=1,1,1,1 builds every network of the process
with those blocks per stage instead of ResNet-101's 3,4,23,3 (the test suite uses it to run
the scripts end to end in seconds). Checkpoints it writes say so in their record and do not
restore into ResNet-101. A loud line on stderr says it is set."""
_announced = set()


def network_blocks():
    """Blocks per stage of the networks this process builds: RESNET101_BLOCKS, unless the
    test/debug variable DEEPLAB_BLOCKS is set (read here only), e.g. '1,1,1,1'.
    Raises ValueError for a malformed value."""
    text = os.environ.get(BLOCKS_ENV, '').strip()
    if not text:
        return RESNET101_BLOCKS
    try:
        blocks = tuple(int(v) for v in text.split(','))
    except ValueError:
        blocks = ()
    if len(blocks) != 4 or min(blocks) < 1:
        raise ValueError('%s=%s: give 4 positive block counts such as 1,1,1,1'
                         % (BLOCKS_ENV, text))
    if blocks != RESNET101_BLOCKS and blocks not in _announced:
        _announced.add(blocks)
        sys.stderr.write('WARNING: %s=%s: TEST/DEBUG network with %s blocks per stage, NOT '
                         'ResNet-101 (%s); unset it for real work\n'
                         % (BLOCKS_ENV, text, ','.join(map(str, blocks)),
                            ','.join(map(str, RESNET101_BLOCKS))))
        sys.stderr.flush()
    return blocks


def checkpoint_blocks(names):
    """Blocks per stage of the network whose variable names are `names` (the count of
    res<stage><block>_branch2a kernels per stage); None for a stage with none."""
    counts = []
    for stage in RESNET101_STAGES:
        prefix = 'res%d' % stage.index
        counts.append(sum(1 for n in names if n.startswith(prefix)
                          and n.endswith('_branch2a/weights')))
    return tuple(counts)


def block_names(num_blocks):
    """Caffe's block suffixes: a, b, c for short stages; a, b1, b2, ... for long ones."""
    if num_blocks <= 3:
        return ['abc'[i] for i in range(num_blocks)]
    return ['a'] + ['b%d' % i for i in range(1, num_blocks)]


STEM_CONV_BN = ('conv1', 'bn_conv1')
"""The stem's convolution and batch norm."""


def conv_bn_names(block, branch):
    """Caffe's names of a block's convolution and of the batch norm after it:
    ('res4b3_branch2a', 'bn4b3_branch2a') for block '4b3', branch '2a'."""
    return 'res%s_branch%s' % (block, branch), 'bn%s_branch%s' % (block, branch)


def conv_bn_pairs(blocks=None):
    """Every (convolution, batch norm) name pair of the network (blocks per stage; None:
    network_blocks()), the batch norm right after its convolution: ('conv1', 'bn_conv1'),
    then each block's branch1 (first blocks), 2a, 2b, 2c."""
    yield STEM_CONV_BN
    for stage in stages(blocks or network_blocks()):
        for i, block in enumerate(block_names(stage.blocks)):
            block = '%d%s' % (stage.index, block)
            for branch in (('1', '2a', '2b', '2c') if i == 0 else ('2a', '2b', '2c')):
                yield conv_bn_names(block, branch)


def fold_batch_norm_op(variables, blocks=None):
    """The op that folds every frozen batch norm's scale into its convolution's kernel, for
    a network built with fold_batch_norm=True: run it once, right after the weights are
    restored (it changes the kernels in place). The kernels are folded one after another,
    so that only one scaled copy exists at a time.

    Args: variables: the network's variables (checkpoints.model_variables()); blocks: its
      blocks per stage (None: network_blocks()).
    Returns: an op.
    """
    by_name = dict((variable_name(v), v) for v in variables)
    folded = []
    for conv, bn in conv_bn_pairs(blocks):
        with tf.control_dependencies(folded[-1:]):
            folded.append(layers.fold_batch_norm_scale(
                by_name[conv + '/weights'], by_name[bn + '/gamma'],
                by_name[bn + '/moving_variance']))
    return tf.group(*folded)


def is_aspp_variable(name):
    """True for the classifier (ASPP) variables, those that depend on the class count."""
    return name.startswith(ASPP_PREFIX)


def variable_name(variable):
    """'conv1/weights' for the variable conv1/weights:0, also for a tf.distribute mirrored
    variable inside a replica context (where its `op.name` is that of the local copy,
    e.g. conv1/weights/replica_1)."""
    return variable.name.split(':')[0]


class DeepLabResNetModel(object):
    """DeepLab-v2 ResNet-101 with ASPP.

    Usage (the original project's API and call shape):
      net = DeepLabResNetModel({'data': images}, trainable=True, is_training=False,
                               num_classes=21)
      logits = net.layers['fc1_voc12']

    Args:
      inputs: {'data': [N, H, W, 3] float32, BGR, mean-subtracted}; H, W may be dynamic.
      trainable: the convolutions' weights and biases go to TRAINABLE_VARIABLES (batch norm's
        variables never do: DeepLab-v2 does not train them).
      is_training: batch norm uses batch statistics and updates its moving averages.
      num_classes: output channels of the ASPP classifier.
    Keyword-only:
      update_moving_stats: with is_training, whether this instance adds the moving-average
        updates (the multi-scale towers let only the full-scale one do it).
      moving_stats_in_place: with is_training, the updates run whenever the network's output
        is computed, as the original's slim.batch_norm(updates_collections=None) (its scripts
        never run UPDATE_OPS); False: they are only collected in update_ops and UPDATE_OPS,
        for a caller that runs them itself (this project's training step does).
      bn_decay: decay of those moving averages (float or scalar tensor), BN_DECAY by default.
      sync_batch_norm: with is_training under a tf.distribute strategy, batch statistics over
        the global batch (layers.global_batch_moments).
      fold_batch_norm: inference only: each batch norm is only its shift, its scale being in
        the preceding convolution's kernel once fold_batch_norm_op has run (one pass less
        over every activation). layers['conv1'] etc. are then the scaled convolutions.
      blocks: blocks per stage; None: network_blocks(), i.e. ResNet-101's (3, 4, 23, 3)
        unless the test/debug variable DEEPLAB_BLOCKS says otherwise. Fewer blocks keep
        the stem, strides, dilations, ASPP and names (tests where size is not the point).
    Attributes:
      update_ops: the moving-average updates this instance made (empty unless is_training and
        update_moving_stats).
      layers: OrderedDict layer name -> output tensor, for every Caffe layer name
        (conv1, bn_conv1, pool1, res2a_branch1, bn2a_branch1, ..., res5c_relu,
        fc1_voc12_c0..c3, fc1_voc12); net.layers['fc1_voc12'] is [N, h, w, num_classes] float32
        with h = output_size(H).
    """

    def __init__(self, inputs, trainable=True, is_training=False, num_classes=21, *,
                 update_moving_stats=True, moving_stats_in_place=True, bn_decay=BN_DECAY,
                 sync_batch_norm=False, fold_batch_norm=False, blocks=None):
        if fold_batch_norm and is_training:
            raise ValueError('fold_batch_norm is for inference (is_training=False)')
        self.trainable = trainable
        self.is_training = is_training
        self.moving_stats_in_place = moving_stats_in_place
        self.fold_batch_norm = fold_batch_norm
        self.sync_batch_norm = sync_batch_norm
        self.update_ops = []
        self.num_classes = num_classes
        self.update_moving_stats = update_moving_stats
        self.bn_decay = bn_decay
        self.blocks = tuple(blocks or network_blocks())
        self.layers = collections.OrderedDict()
        self.layers['data'] = inputs['data']
        x = self._stem(inputs['data'])
        for stage in stages(self.blocks):
            for i, block in enumerate(block_names(stage.blocks)):
                x = self._bottleneck(x, '%d%s' % (stage.index, block), stage,
                                     first=(i == 0))
        self._aspp(x)

    @property
    def logits(self):
        return self.layers[LOGITS]

    def _add(self, name, tensor):
        self.layers[name] = tensor
        return tensor

    def _conv_bn(self, x, conv, bn, relu, kernel, filters, **conv_args):
        """Convolution `conv` (layers.conv2d) then batch norm `bn`, optionally ReLU."""
        x = self._add(conv, layers.conv2d(x, conv, kernel, filters, trainable=self.trainable,
                                          **conv_args))
        if self.fold_batch_norm:
            return self._add(bn, layers.folded_batch_norm(x, bn, relu=relu))
        return self._add(bn, layers.batch_norm(
            x, bn, self.is_training, relu=relu,
            update_moving_stats=self.update_moving_stats, decay=self.bn_decay,
            updates=self.update_ops, sync=self.sync_batch_norm,
            in_place=self.moving_stats_in_place))

    def _stem(self, x):
        x = self._conv_bn(x, *STEM_CONV_BN, relu=True, kernel=7, filters=64, stride=2, pad=3)
        return self._add('pool1', layers.max_pool_ceil(x, 3, 2, 1))

    def _bottleneck(self, x, block, stage, first):
        """res<block>: 1x1 (stride) -> 3x3 (dilation) -> 1x1, plus the shortcut."""
        out_channels = 4 * stage.bottleneck
        stride = stage.stride if first else 1
        shortcut = x
        if first:
            shortcut = self._conv_bn(x, *conv_bn_names(block, '1'), relu=False, kernel=1,
                                     filters=out_channels, stride=stride)
        y = self._conv_bn(x, *conv_bn_names(block, '2a'), relu=True, kernel=1,
                          filters=stage.bottleneck, stride=stride)
        y = self._conv_bn(y, *conv_bn_names(block, '2b'), relu=True, kernel=3,
                          filters=stage.bottleneck, pad=stage.dilation,
                          dilation=stage.dilation)
        y = self._conv_bn(y, *conv_bn_names(block, '2c'), relu=False, kernel=1,
                          filters=out_channels)
        y = self._add('res%s' % block, shortcut + y)
        return self._add('res%s_relu' % block, tf.nn.relu(y))

    def _aspp(self, x):
        """Four 3x3 convolutions with bias at rates 6, 12, 18, 24, summed."""
        branches = []
        for name, rate in zip(ASPP_LAYERS, ASPP_RATES):
            branches.append(self._add(name, layers.conv2d(
                x, name, 3, self.num_classes, pad=rate, dilation=rate, biased=True,
                trainable=self.trainable, weights_std=ASPP_INIT_STD)))
        self._add(LOGITS, tf.add_n(branches))


def output_size(size):
    """Logit size for an input side of `size` pixels (conv1, pool1, res3a's stride 2)."""
    size = layers.conv_output_size(size, 7, 2, 3)
    size = layers.pool_output_size(size, 3, 2, 1)
    return layers.conv_output_size(size, 1, 2, 0)


def variable_shapes(num_classes=21, blocks=RESNET101_BLOCKS):
    """The network's variables: OrderedDict name (without ':0') -> shape tuple, in creation
    order. Built in a scratch graph from the same code as the model."""
    with tf.Graph().as_default():
        DeepLabResNetModel({'data': tf1.placeholder(tf.float32, [1, None, None, 3])},
                           is_training=False, num_classes=num_classes, blocks=blocks)
        return collections.OrderedDict(
            (v.op.name, tuple(v.get_shape().as_list())) for v in tf1.global_variables())
