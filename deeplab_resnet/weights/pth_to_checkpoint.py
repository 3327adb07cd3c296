"""kazuto1011/deeplab-pytorch's DeepLab-v2 ResNet-101 (.pth state dicts) -> TensorFlow checkpoint.

Mapping (kazuto's libs/models/deeplabv2.py and resnet.py -> TF variables of
deeplab_resnet.network.model; every name comes from the model's stage table, so a network with other
blocks per stage maps too):

  layer1.conv1.conv.weight                 -> conv1/weights           (OIHW -> HWIO)
  layer1.conv1.bn.{weight, bias, running_mean, running_var}
                                           -> bn_conv1/{gamma, beta, moving_mean,
                                              moving_variance}        (as stored)
  layer<S>.block<M>.<branch>.{conv, bn}.*  -> res<S><b>_branch<B>/weights, bn<S><b>_branch<B>/*
      S = 2..5 (kazuto's layer1 is the stem); block M = 1, 2, ... is Caffe's a, b, c (short
      stages) or a, b1, b2, ... (long ones); branch shortcut, reduce, conv3x3, increase is
      Caffe's 1, 2a, 2b, 2c
  aspp.c<K>.{weight, bias}                 -> fc1_voc12_c<K>/{weights, biases}

No other conversion: kazuto's network is the Caffe one (his convert.py maps the authors'
caffemodels onto it), its input is BGR minus the same Caffe mean, and its batch norm
(nn.BatchNorm2d(eps=1e-5, momentum=1 - 0.999)) stores plain means and variances, as this
project's does. A state dict does not store the eps: 1e-5 (BN_EPSILON) is assumed.

Accepted containers: a plain state dict; kazuto's MSC wrapper (keys `base.`); DataParallel
(`module.`, `module.base.`); a dict holding one of those under 'state_dict' or 'model'.
`*.num_batches_tracked` entries (batch-norm counters) are skipped.
"""
import collections
import os

import numpy as np

from deeplab_resnet.checkpoint import provenance
from deeplab_resnet.common.constants import ASPP_LAYERS, BN_EPSILON, RESNET101_BLOCKS
from deeplab_resnet.common.errors import InputError, warn as warn_line
from deeplab_resnet.weights import caffemodel, pth, to_checkpoint

MAX_LISTED = 5
PREFIXES = ('module.', 'base.')     # DataParallel, then kazuto's MSC wrapper
CONTAINER_KEYS = ('state_dict', 'model')
SKIPPED_SUFFIX = '.num_batches_tracked'
BRANCHES = {'1': 'shortcut', '2a': 'reduce', '2b': 'conv3x3', '2c': 'increase'}
CONV_LEAVES = {'weights': 'weight', 'biases': 'bias'}
BN_LEAVES = {'gamma': 'weight', 'beta': 'bias', 'moving_mean': 'running_mean',
             'moving_variance': 'running_var'}
CLASSIFIER_WEIGHT = 'aspp.c0.weight'


def module_names(blocks):
    """TF layer name -> kazuto's module name for a network with `blocks` blocks per stage:
    OrderedDict, conv1 -> layer1.conv1.conv, bn_conv1 -> layer1.conv1.bn,
    res4b3_branch2a -> layer4.block4.reduce.conv, fc1_voc12_c0 -> aspp.c0, ..."""
    from deeplab_resnet.network import model
    names = collections.OrderedDict()
    conv, bn = model.STEM_CONV_BN
    names[conv], names[bn] = 'layer1.conv1.conv', 'layer1.conv1.bn'
    for stage in model.stages(blocks):
        for i, suffix in enumerate(model.block_names(stage.blocks)):
            block = '%d%s' % (stage.index, suffix)
            for branch in (('1', '2a', '2b', '2c') if i == 0 else ('2a', '2b', '2c')):
                conv, bn = model.conv_bn_names(block, branch)
                module = 'layer%d.block%d.%s' % (stage.index, i + 1, BRANCHES[branch])
                names[conv], names[bn] = module + '.conv', module + '.bn'
    for k, layer in enumerate(ASPP_LAYERS):
        names[layer] = 'aspp.c%d' % k
    return names


def kazuto_name(var_name, modules):
    """TF variable name -> kazuto's state-dict key (modules: module_names(...))."""
    layer, leaf = var_name.split('/')
    return '%s.%s' % (modules[layer], CONV_LEAVES.get(leaf) or BN_LEAVES[leaf])


def _listed(names):
    """The first MAX_LISTED names, in their order (each cut to 60 characters)."""
    return (', '.join(n if len(n) <= 60 else n[:57] + '...' for n in names[:MAX_LISTED]) +
            (', ...' if len(names) > MAX_LISTED else ''))


def state_dict(obj, source):
    """The state dict inside a loaded .pth -> (OrderedDict key -> array with the prefixes
    removed and the counters skipped, the removed prefix, the number of skipped counters)."""
    if isinstance(obj, dict):
        for key in CONTAINER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise InputError('%s: holds %s, not a state dict (a dict of tensors)'
                         % (source, 'an empty dict' if isinstance(obj, dict)
                            else type(obj).__name__))
    keys = [k for k in obj if isinstance(k, str)]
    if len(keys) != len(obj):
        raise InputError('%s: a dict with keys that are not names, not a state dict' % source)
    prefix = ''
    for candidate in PREFIXES:
        if all(k.startswith(prefix + candidate) for k in keys):
            prefix += candidate
    state = collections.OrderedDict()
    skipped = 0
    for key in keys:
        if key.endswith(SKIPPED_SUFFIX):
            skipped += 1
        else:
            state[key[len(prefix):]] = obj[key]
    return state, prefix, skipped


def _classes(state, source):
    weight = state.get(CLASSIFIER_WEIGHT)
    if weight is None:
        return None
    if not isinstance(weight, np.ndarray) or weight.ndim != 4:
        raise InputError('%s: %s has shape %s, expected (classes, 2048, 3, 3)' % (
            source, CLASSIFIER_WEIGHT, getattr(weight, 'shape', type(weight).__name__)))
    return int(weight.shape[0])


def resolve_classes(state, source, num_classes, reinit_aspp):
    """-> (num_classes, ASPP from the file: bool, reason for a fresh ASPP or None)."""
    file_classes = _classes(state, source)
    if reinit_aspp:
        n = num_classes or file_classes
        if n is None:
            raise InputError('%s: it has no classifier (%s): give --num-classes with '
                             '--reinit-aspp' % (source, CLASSIFIER_WEIGHT))
        return n, False, ('--reinit-aspp: the file\'s %s ASPP is discarded'
                          % ('%d-class' % file_classes if file_classes else 'missing'))
    if file_classes is not None and num_classes is not None and num_classes != file_classes:
        raise InputError(
            '%s: its ASPP classifier (aspp.c0..c%d) has %d classes but %d were requested; drop '
            '--num-classes (or pass --num-classes %d) to convert it as is, or add '
            '--reinit-aspp to keep the backbone and start a fresh %d-class classifier'
            % (source, len(ASPP_LAYERS) - 1, file_classes, num_classes, file_classes,
               num_classes))
    return file_classes or num_classes or 0, True, None


def _value(array, key, shape, source):
    """A state-dict tensor -> the TF variable's float32 value (4-D: OIHW -> HWIO)."""
    expected = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(shape)
    if not isinstance(array, np.ndarray):
        raise InputError('%s: %s is a %s, not a tensor' % (source, key, type(array).__name__))
    if tuple(array.shape) != expected:
        raise InputError('%s: %s has shape %s, expected %s%s' % (
            source, key, to_checkpoint._shape_str(array.shape),
            to_checkpoint._shape_str(expected), ' (OIHW)' if len(shape) == 4 else ''))
    if array.dtype.kind != 'f':
        raise InputError('%s: %s holds %s values, not floating point' % (source, key,
                                                                          array.dtype))
    value = np.asarray(array, np.float32)
    return np.ascontiguousarray(value.transpose(2, 3, 1, 0)) if len(shape) == 4 else value


def pth_to_tf(obj, source, num_classes=None, reinit_aspp=False, seed=0):
    """A loaded .pth (pth.read) -> (OrderedDict TF variable name -> float32 array, info dict).

    info: num_classes, aspp ('pth' or 'initialised'), aspp_reason (or None), prefix (the
    removed key prefix), skipped (num_batches_tracked entries), tensors (entries used).
    Raises InputError naming `source` for anything that does not fit: the first missing and
    unexpected names (and how many) for another architecture, a tensor of another shape.
    """
    from deeplab_resnet.network import model
    state, prefix, skipped = state_dict(obj, source)
    num_classes, aspp_from_file, reason = resolve_classes(state, source, num_classes,
                                                          reinit_aspp)
    blocks = model.network_blocks()
    modules = module_names(blocks)
    aspp_keys = set('%s.%s' % (modules[layer], leaf) for layer in ASPP_LAYERS
                    for leaf in ('weight', 'bias'))
    shapes = to_checkpoint.variable_shapes(num_classes or 1)
    expected = collections.OrderedDict((kazuto_name(v, modules), v) for v in shapes)
    wanted = [k for k in expected if aspp_from_file or k not in aspp_keys]
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append('%d of its %d expected tensors are missing (%s)'
                         % (len(missing), len(wanted), _listed(missing)))
        if unexpected:
            parts.append('%d are unexpected (%s)' % (len(unexpected), _listed(unexpected)))
        network = ('ResNet-101' if tuple(blocks) == RESNET101_BLOCKS else
                   'network with %s blocks per stage' % ','.join(map(str, blocks)))
        raise InputError('%s: not a kazuto1011/deeplab-pytorch DeepLab-v2 %s state dict: %s'
                         % (source, network, '; '.join(parts)))
    fresh = {} if aspp_from_file else to_checkpoint.fresh_aspp(shapes, seed)
    values = collections.OrderedDict()
    for key, var in expected.items():
        values[var] = fresh[var] if var in fresh else _value(state[key], prefix + key,
                                                             shapes[var], source)
    info = {'num_classes': num_classes, 'aspp': 'pth' if aspp_from_file else 'initialised',
            'aspp_reason': reason, 'prefix': prefix, 'skipped': skipped,
            'tensors': len(wanted)}
    return values, info


def trained_on_default(path):
    """What one of kazuto's release files (by its file name) was trained on, else None."""
    name = os.path.basename(path)
    for marker, trained_on in provenance.KAZUTO_RELEASES:
        if marker in name:
            return trained_on
    return None


def convert(path, save_dir, num_classes=None, reinit_aspp=False, seed=0, log=print,
            warn=warn_line, trained_on=None):
    """Converts a kazuto1011/deeplab-pytorch DeepLab-v2 .pth into <save_dir>/model.ckpt and
    its provenance record <save_dir>/model.ckpt.json (written as the Caffe conversion writes
    them). trained_on: a list file or a free name; by default the release's training set
    from the file name (provenance.KAZUTO_RELEASES). Returns (checkpoint prefix, record)."""
    trained = to_checkpoint.trained_on_fields(trained_on, path, warn,
                                              default=trained_on_default(path))
    if os.path.isdir(path):
        raise InputError('%s: is a directory, not a .pth file' % path)
    data = caffemodel.read_bytes(path)   # (its messages for a missing or unreadable file)
    obj, layout = pth.read(data, path)
    source = to_checkpoint.source_fields(path, data, 'pth (%s)' % layout)
    del data
    values, info = pth_to_tf(obj, path, num_classes, reinit_aspp, seed)
    del obj
    if info['aspp'] == 'initialised':
        warn('%s: %s; the ASPP classifier is freshly initialised for %d classes (weights '
             'N(0, %g^2), biases 0, seed %d): train it before use'
             % (path, info['aspp_reason'], info['num_classes'], to_checkpoint.ASPP_INIT_STD,
                seed))
    extra = [('converted_tensors', info['tensors']),
             ('state_dict_prefix', info['prefix']),
             ('batch_norm_epsilon', BN_EPSILON),
             ('batch_norm_epsilon_note', 'assumed: a state dict does not store it (kazuto\'s '
                                         'nn.BatchNorm2d uses eps=1e-5, as Caffe)')]
    ckpt, record, record_path, params = to_checkpoint.write_converted(
        values, info, save_dir, source, trained, seed, extra)
    log('converted %d tensors of %s (PyTorch %s format%s%s) -> %d variables, %s parameters, '
        '%d classes' % (info['tensors'], path, layout,
                        ', prefix %s' % info['prefix'] if info['prefix'] else '',
                        ', %d num_batches_tracked skipped' % info['skipped']
                        if info['skipped'] else '',
                        len(values), format(params, ','), info['num_classes']))
    log('batch norm epsilon %g assumed (a state dict does not store it)' % BN_EPSILON)
    if record.get('trained_on'):
        log('trained on: %s' % record['trained_on'])
    log('checkpoint: %s' % ckpt)
    log('provenance record: %s' % record_path)
    return ckpt, record
