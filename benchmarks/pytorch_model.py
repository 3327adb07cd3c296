"""The PyTorch DeepLab-v2 ResNet-101 of benchmarks/compare_pytorch.py (needs torch).

ResNet101 (the backbone, frozen BatchNorm) + ASPP = DeepLabV2ResNet101, one tower; MSC runs it
at several scales and fuses the logits by max; msc_losses are the DeepLab-v2 training terms;
tf_variable_map / load_tf_weights copy in the weights of this project's TensorFlow model
(--self-check). compare_pytorch.py's docstring says what this model is and is not: the
architecture as written here from the published DeepLab-v2 description, its initialisation
(He; ASPP N(0, 0.01^2)), NCHW float32, eager.

The Caffe names and numbers come from deeplab_resnet.common.constants (TensorFlow-free);
deeplab_resnet.network.model is not imported, so that the PyTorch processes never load TensorFlow.
"""
import torch
from torch import nn
import torch.nn.functional as F

from deeplab_resnet.common.constants import (ASPP_INIT_STD, ASPP_LAYERS, ASPP_RATES, BN_EPSILON,
                                             IGNORE_LABEL, NUM_CLASSES_VOC)

# (Caffe stage index, blocks, bottleneck width, stride of the first block, dilation): the
# table of deeplab_resnet.network.model.RESNET101_STAGES (not imported: it loads TensorFlow).
STAGES = ((2, 3, 64, 1, 1), (3, 4, 128, 2, 1), (4, 23, 256, 1, 2), (5, 3, 512, 1, 4))


class ConvBN(nn.Module):
    """Convolution without bias + frozen BatchNorm (+ ReLU): Caffe's Convolution, BatchNorm
    and Scale layers."""

    def __init__(self, c_in, c_out, kernel, stride=1, pad=0, dilation=1, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, pad, dilation, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPSILON)
        self.relu = relu

    def forward(self, x):
        y = self.bn(self.conv(x))
        return F.relu(y, inplace=True) if self.relu else y


class Bottleneck(nn.Module):
    """1x1 (stride) -> 3x3 (dilation) -> 1x1 (4x width), plus the shortcut (1x1 conv + BN on
    the first block of a stage, identity otherwise), then ReLU."""

    def __init__(self, c_in, width, stride, dilation, project):
        super().__init__()
        self.branch2a = ConvBN(c_in, width, 1, stride)
        self.branch2b = ConvBN(width, width, 3, 1, dilation, dilation)
        self.branch2c = ConvBN(width, 4 * width, 1, relu=False)
        self.branch1 = ConvBN(c_in, 4 * width, 1, stride, relu=False) if project else None

    def forward(self, x):
        shortcut = x if self.branch1 is None else self.branch1(x)
        y = self.branch2c(self.branch2b(self.branch2a(x)))
        y += shortcut
        return F.relu(y, inplace=True)


def resnet_stage(c_in, blocks, width, stride, dilation):
    """One stage: `blocks` bottlenecks, the first with the stride and the projection."""
    layers = [Bottleneck(c_in, width, stride, dilation, project=True)]
    layers += [Bottleneck(4 * width, width, 1, dilation, project=False)
               for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet101(nn.Module):
    """The backbone: [N, 3, H, W] -> [N, 2048, h, w] (output stride 8). BatchNorm stays in
    eval mode (frozen) whatever .train() says, and its parameters do not require gradients.
    Its convolutions keep PyTorch's default initialisation: DeepLabV2ResNet101 sets them."""

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBN(3, 64, 7, 2, 3)
        self.pool1 = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        stages, c_in = [], 64
        for _, blocks, width, stride, dilation in STAGES:
            stages.append(resnet_stage(c_in, blocks, width, stride, dilation))
            c_in = 4 * width
        self.stages = nn.ModuleList(stages)
        self.out_channels = c_in
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train(False)
        return self

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        for stage in self.stages:
            x = stage(x)
        return x


class ASPP(nn.Module):
    """Four 3x3 convolutions with bias, dilation = padding = rate, summed; weights
    N(0, ASPP_INIT_STD^2), biases 0."""

    def __init__(self, c_in, num_classes, rates):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c_in, num_classes, 3, 1, r, r, bias=True)
                                   for r in rates)
        for conv in self.convs:
            nn.init.normal_(conv.weight, 0.0, ASPP_INIT_STD)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        out = self.convs[0](x)
        for conv in self.convs[1:]:
            out = out + conv(x)
        return out


class DeepLabV2ResNet101(nn.Module):
    """One tower: [N, 3, H, W] float32 -> [N, num_classes, h, w] logits (ResNet101 + ASPP),
    built in eval mode (BatchNorm frozen in any mode)."""

    def __init__(self, num_classes=NUM_CLASSES_VOC):
        super().__init__()
        self.backbone = ResNet101()
        self.aspp = ASPP(self.backbone.out_channels, num_classes, ASPP_RATES)
        # He initialisation after the ASPP's (the order of the random draws of this model).
        for m in self.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_in', nonlinearity='relu')
        self.train(False)

    def forward(self, x):
        return self.aspp(self.backbone(x))


def calibrate_batch_norm(model, x):
    """Sets every BatchNorm's running statistics to those of `x` ([N, 3, H, W]: one pass
    with the BatchNorms in training mode and momentum 1), then freezes them again: frozen
    BatchNorm on random weights with the initial 0 / 1 statistics makes the weights NaN after
    the first update (speed.calibrate_batch_norm does the same for TensorFlow)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.training) for m in norms]
    with torch.no_grad():
        for m in norms:
            m.momentum = 1.0
            m.train()
        model(x)
    for m, (momentum, training) in zip(norms, saved):
        m.momentum = momentum
        m.train(training)


class MSC(nn.Module):
    """Multi-scale towers sharing one network: the input resized bilinearly to
    int(H * s) x int(W * s) for each scale s != 1, each scale's logits resized bilinearly to
    the first scale's logit size and fused by element-wise max. Returns (fused, [logits per
    scale]), all [N, num_classes, h_s, w_s] float32."""

    def __init__(self, base, scales, align_corners=False):
        super().__init__()
        self.base = base
        self.scales = tuple(scales)
        self.align_corners = align_corners

    def forward(self, x):
        h, w = x.shape[2:]
        per_scale = []
        for s in self.scales:
            inputs = x if s == 1.0 else F.interpolate(
                x, size=(int(h * s), int(w * s)), mode='bilinear',
                align_corners=self.align_corners)
            per_scale.append(self.base(inputs))
        fused = per_scale[0]
        for logits in per_scale[1:]:
            fused = torch.maximum(fused, F.interpolate(
                logits, size=fused.shape[2:], mode='bilinear',
                align_corners=self.align_corners))
        return fused, per_scale


def msc_losses(outputs, labels):
    """The DeepLab-v2 MSC cross-entropy terms: [fused, scale 1, scale 2, ...], each the mean
    over pixels whose label is not IGNORE_LABEL. outputs: MSC's (fused, per_scale); labels
    [N, H, W] int64, resized to each logit size by nearest neighbour with half-pixel centres
    ('nearest-exact')."""
    fused, per_scale = outputs
    terms = []
    for logits in [fused] + list(per_scale):
        resized = F.interpolate(labels[:, None].float(), size=logits.shape[2:],
                                mode='nearest-exact')[:, 0].long()
        terms.append(F.cross_entropy(logits, resized, ignore_index=IGNORE_LABEL))
    return terms


# ----------------------------------------------------------------------------- TF weights

def block_names(num_blocks):
    """Caffe's block suffixes (as deeplab_resnet.network.model.block_names, without TensorFlow)."""
    if num_blocks <= 3:
        return ['abc'[i] for i in range(num_blocks)]
    return ['a'] + ['b%d' % i for i in range(1, num_blocks)]


def _conv_bn_names(prefix, conv, bn):
    """ConvBN state_dict keys under `prefix` -> TensorFlow names of conv `conv`, BN `bn`."""
    return {prefix + '.conv.weight': conv + '/weights',
            prefix + '.bn.weight': bn + '/gamma',
            prefix + '.bn.bias': bn + '/beta',
            prefix + '.bn.running_mean': bn + '/moving_mean',
            prefix + '.bn.running_var': bn + '/moving_variance'}


def tf_variable_map():
    """DeepLabV2ResNet101 state_dict key -> TensorFlow variable name of this project's
    model (deeplab_resnet.network.model)."""
    names = _conv_bn_names('backbone.conv1', 'conv1', 'bn_conv1')
    for s, (index, blocks, _, _, _) in enumerate(STAGES):
        for b, suffix in enumerate(block_names(blocks)):
            block = '%d%s' % (index, suffix)
            for branch in ('branch2a', 'branch2b', 'branch2c') + (('branch1',) if b == 0
                                                                  else ()):
                names.update(_conv_bn_names('backbone.stages.%d.%d.%s' % (s, b, branch),
                                            'res%s_%s' % (block, branch),
                                            'bn%s_%s' % (block, branch)))
    for i, layer in enumerate(ASPP_LAYERS):
        names['aspp.convs.%d.weight' % i] = layer + '/weights'
        names['aspp.convs.%d.bias' % i] = layer + '/biases'
    return names


def load_tf_weights(model, values):
    """Copies TensorFlow variable values ({name: array}, kernels HWIO) into `model` (a
    DeepLabV2ResNet101). Returns the TensorFlow names that were not used."""
    mapping = tf_variable_map()
    state = model.state_dict()
    missing = [k for k in state if k not in mapping and not k.endswith('num_batches_tracked')]
    if missing:
        raise KeyError('no TensorFlow variable for %s' % missing[:5])
    new_state = {}
    for key, tensor in state.items():
        if key not in mapping:
            new_state[key] = tensor
            continue
        value = values[mapping[key]]
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1)   # HWIO -> OIHW
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError('%s: TensorFlow %s vs PyTorch %s' % (key, value.shape,
                                                                  tuple(tensor.shape)))
        new_state[key] = torch.from_numpy(value.copy())
    model.load_state_dict(new_state)
    return sorted(set(values) - set(mapping.values()))
