"""Caffe DeepLab-v2 ResNet-101 (.caffemodel) -> TensorFlow checkpoint (+ provenance record).

Mapping (Caffe layer -> TF variables of deeplab_resnet.network.model):
  Convolution <conv> (conv1, res2a_branch1, ..., res5c_branch2c), blob 0 OIHW
      -> <conv>/weights, HWIO (transposed)
  Convolution fc1_voc12_c0..c3, blobs (OIHW weights, bias)
      -> fc1_voc12_cK/weights (HWIO), fc1_voc12_cK/biases
  BatchNorm bn<x>, blobs (mean * s, variance * s, [s])
      -> bn<x>/moving_mean, bn<x>/moving_variance: the blob times Caffe's factor
         (1 / s, or 0 when s == 0, as batch_norm_layer.cpp)
  Scale scale<x>, blobs (gamma, beta) -> bn<x>/gamma, bn<x>/beta

Only the un-suffixed layers are used: the multi-scale models' copies (conv1_res075, ...,
sharing the same parameters) and anything else (fc1000, ...) are ignored and counted.

The classifier (ASPP) and the class count:
  * num_classes=None takes the caffemodel's ASPP class count, or 21 when it has no ASPP.
  * A caffemodel without ASPP layers (DeepLab's ImageNet initialisation, init.caffemodel)
    converts with a freshly initialised ASPP (weights ~ N(0, 0.01^2), the prototxt's gaussian
    filler; biases 0; seeded) and a warning.
  * An ASPP whose class count differs from num_classes is refused (InputError) unless
    reinit_aspp, which discards the caffemodel's ASPP and initialises a fresh one (to fine-tune
    a VOC model on another dataset); reinit_aspp also warns.
"""
import collections
import datetime
import functools
import hashlib
import os

import numpy as np

from deeplab_resnet.checkpoint import provenance
from deeplab_resnet.weights import caffemodel
from deeplab_resnet.common.constants import (ASPP_INIT_STD, ASPP_LAYERS, CHANNEL_ORDER,
                                             CHECKPOINT_NAME, IGNORE_LABEL, IMG_MEAN_BGR,
                                             NUM_CLASSES_VOC)
from deeplab_resnet.common.errors import InputError, warn as warn_line
from deeplab_resnet.common.names import class_names

MAX_LISTED = 5

CONVOLUTION, BATCH_NORM, SCALE = 'Convolution', 'BatchNorm', 'Scale'
# Number of blobs each kind of layer must have.
_BLOB_COUNT = {('backbone', CONVOLUTION): 1, ('aspp', CONVOLUTION): 2,
               ('backbone', BATCH_NORM): 3, ('backbone', SCALE): 2}


@functools.lru_cache(maxsize=None)
def _shapes(num_classes, blocks):
    from deeplab_resnet.network import model
    return model.variable_shapes(num_classes, blocks)


def variable_shapes(num_classes):
    """The network's variables, name -> shape (model.variable_shapes), for the blocks per
    stage of network_blocks() (ResNet-101's unless the test/debug DEEPLAB_BLOCKS is set)."""
    from deeplab_resnet.network import model   # TensorFlow: imported only once a model has parsed
    return _shapes(num_classes, model.network_blocks())


def scale_layer_name(bn_name):
    """bn_conv1 -> scale_conv1, bn2a_branch1 -> scale2a_branch1."""
    return 'scale' + bn_name[len('bn'):]


def is_aspp_name(name):
    return name.split('/')[0] in ASPP_LAYERS


def caffe_source(var_name):
    """TF variable name -> (Caffe layer name, Caffe layer type, blob index)."""
    layer, leaf = var_name.split('/')
    if leaf == 'weights':
        return layer, CONVOLUTION, 0
    if leaf == 'biases':
        return layer, CONVOLUTION, 1
    if leaf in ('moving_mean', 'moving_variance'):
        return layer, BATCH_NORM, 0 if leaf == 'moving_mean' else 1
    if leaf in ('gamma', 'beta'):
        return scale_layer_name(layer), SCALE, 0 if leaf == 'gamma' else 1
    raise ValueError('no Caffe source for variable %s' % var_name)


def required_layers(var_names):
    """The Caffe layers the variables come from, in network order: [(name, type)]."""
    seen = collections.OrderedDict()
    for var in var_names:
        layer, layer_type, _ = caffe_source(var)
        if layer_type == SCALE:   # list bn<x> before scale<x>
            seen.setdefault(var.split('/')[0], BATCH_NORM)
        seen.setdefault(layer, layer_type)
    return list(seen.items())


def bn_factor(factor_blob):
    """Caffe's BatchNorm scale factor: 1 / s, or 0 when s == 0 (float32, as Caffe)."""
    s = np.float32(np.asarray(factor_blob).reshape(-1)[0])
    return np.float32(0) if s == 0 else np.float32(1) / s


def bn_statistics(blobs):
    """BatchNorm blobs (mean * s, var * s, [s]) -> (mean, var), float32, as Caffe computes."""
    factor = bn_factor(blobs[2])
    return (np.asarray(blobs[0], np.float32).reshape(-1) * factor,
            np.asarray(blobs[1], np.float32).reshape(-1) * factor)


def _shape_str(shape):
    return '(%s)' % ', '.join(str(d) for d in shape)


def _index_layers(layers):
    """name -> layer; the first one with blobs wins over an earlier blob-less namesake."""
    table = {}
    for layer in layers:
        if layer.name not in table or (layer.blobs and not table[layer.name].blobs):
            table[layer.name] = layer
    return table


def _aspp_class_count(table, source):
    present = [n for n in ASPP_LAYERS if n in table]
    if not present:
        return None
    if len(present) != len(ASPP_LAYERS):
        missing = [n for n in ASPP_LAYERS if n not in table]
        raise InputError('%s: incomplete ASPP classifier: has %s but lacks %s'
                         % (source, ', '.join(present), ', '.join(missing)))
    blobs = table[ASPP_LAYERS[0]].blobs
    if not blobs or blobs[0].ndim != 4:
        raise InputError('%s: layer %s: weights blob has shape %s, expected (classes, 2048, 3, 3)'
                         % (source, ASPP_LAYERS[0],
                            _shape_str(blobs[0].shape) if blobs else 'none'))
    return int(blobs[0].shape[0])


def resolve_classes(table, source, num_classes, reinit_aspp):
    """-> (num_classes, aspp_from_caffemodel: bool, reason for a fresh ASPP or None)."""
    caffe_classes = _aspp_class_count(table, source)
    if caffe_classes is None:
        n = num_classes or NUM_CLASSES_VOC
        return n, False, ('the caffemodel has no ASPP classifier layers (%s..c%d), e.g. the '
                          'ImageNet initialisation' % (ASPP_LAYERS[0], len(ASPP_LAYERS) - 1))
    if reinit_aspp:
        n = num_classes or caffe_classes
        return n, False, ('--reinit-aspp: the caffemodel\'s %d-class ASPP is discarded'
                          % caffe_classes)
    if num_classes is not None and num_classes != caffe_classes:
        raise InputError(
            '%s: its ASPP classifier (%s..c%d) has %d classes but %d were requested; drop '
            '--num-classes (or pass --num-classes %d) to convert it as is, or add '
            '--reinit-aspp to keep the backbone and start a fresh %d-class classifier'
            % (source, ASPP_LAYERS[0], len(ASPP_LAYERS) - 1, caffe_classes, num_classes,
               caffe_classes, num_classes))
    return caffe_classes, True, None


def _check_layers(table, needed, source, aspp_from_caffemodel):
    backbone = [(n, t) for n, t in needed if n not in ASPP_LAYERS]
    missing = [n for n, _ in backbone if n not in table]
    if missing:
        raise InputError(
            '%s: not a DeepLab-v2 ResNet-101 caffemodel: %d of its %d backbone layers are '
            'missing (%s%s)' % (source, len(missing), len(backbone),
                                ', '.join(missing[:MAX_LISTED]),
                                ', ...' if len(missing) > MAX_LISTED else ''))
    for name, layer_type in needed:
        if name in ASPP_LAYERS and not aspp_from_caffemodel:
            continue
        layer = table[name]
        if layer.type != layer_type:
            raise InputError('%s: layer %s is of type %s, expected %s'
                             % (source, name, layer.type or '(none)', layer_type))
        count = _BLOB_COUNT[('aspp' if name in ASPP_LAYERS else 'backbone', layer_type)]
        if len(layer.blobs) != count:
            raise InputError('%s: layer %s (%s) has %d blobs, expected %d'
                             % (source, name, layer_type, len(layer.blobs), count))


def _vector(blob, length, source, layer, what):
    """A per-channel blob (C), (1, C, 1, 1), ... -> float32 (C,)."""
    if blob.size != length or len([d for d in blob.shape if d != 1]) > 1:
        raise InputError('%s: layer %s: %s blob has shape %s, expected (%d)'
                         % (source, layer, what, _shape_str(blob.shape), length))
    return np.asarray(blob, np.float32).reshape(length)


_BLOB_WHAT = {(CONVOLUTION, 0): 'weights', (CONVOLUTION, 1): 'bias', (BATCH_NORM, 0): 'mean',
              (BATCH_NORM, 1): 'variance', (SCALE, 0): 'gamma', (SCALE, 1): 'beta'}


def _tf_value(table, var, shape, source):
    layer, layer_type, index = caffe_source(var)
    blobs = table[layer].blobs
    blob = blobs[index]
    what = _BLOB_WHAT[(layer_type, index)]
    if len(shape) == 4:
        expected = (shape[3], shape[2], shape[0], shape[1])   # HWIO -> OIHW
        if tuple(blob.shape) != expected:
            raise InputError('%s: layer %s: %s blob has shape %s, expected %s (OIHW)'
                             % (source, layer, what, _shape_str(blob.shape),
                                _shape_str(expected)))
        return np.ascontiguousarray(np.asarray(blob, np.float32).transpose(2, 3, 1, 0))
    value = _vector(blob, shape[0], source, layer, what)
    if layer_type == BATCH_NORM:
        factor = blobs[2]
        if factor.size != 1:
            raise InputError('%s: layer %s: scale factor blob has shape %s, expected (1)'
                             % (source, layer, _shape_str(factor.shape)))
        value = value * bn_factor(factor)
    return value


def split_ignored(ignored, used):
    """Ignored layer names -> (multi-scale copies of used layers, e.g. conv1_res075; others)."""
    used = set(used)
    copies = [n for n in ignored if '_res' in n and n.rsplit('_res', 1)[0] in used]
    return copies, [n for n in ignored if n not in set(copies)]


def fresh_aspp(shapes, seed):
    """Freshly initialised ASPP variables: weights ~ N(0, ASPP_INIT_STD^2), biases 0."""
    rng = np.random.default_rng(seed)
    values = collections.OrderedDict()
    for var, shape in shapes.items():
        if is_aspp_name(var):
            if var.endswith('/weights'):
                values[var] = (rng.standard_normal(shape) * ASPP_INIT_STD).astype(np.float32)
            else:
                values[var] = np.zeros(shape, np.float32)
    return values


def caffe_to_tf(layers, source, num_classes=None, reinit_aspp=False, seed=0):
    """Caffe layers -> (OrderedDict TF variable name -> float32 array, info dict).

    info: num_classes, aspp ('caffemodel' or 'initialised'), aspp_reason (or None),
    used (Caffe layer names used), ignored (names of other layers with blobs).
    Raises InputError naming `source` for anything that does not fit.
    """
    table = _index_layers(layers)
    num_classes, aspp_from_caffemodel, reason = resolve_classes(table, source, num_classes,
                                                                reinit_aspp)
    shapes = variable_shapes(num_classes)
    needed = required_layers(shapes)
    _check_layers(table, needed, source, aspp_from_caffemodel)
    fresh = {} if aspp_from_caffemodel else fresh_aspp(shapes, seed)
    values = collections.OrderedDict()
    for var, shape in shapes.items():
        values[var] = fresh[var] if var in fresh else _tf_value(table, var, shape, source)
    used = [n for n, _ in needed if aspp_from_caffemodel or n not in ASPP_LAYERS]
    used_set = set(used)
    ignored = [l.name for l in layers if l.blobs and l.name not in used_set]
    info = {'num_classes': num_classes,
            'aspp': 'caffemodel' if aspp_from_caffemodel else 'initialised',
            'aspp_reason': reason, 'used': used, 'ignored': ignored}
    return values, info


def save_checkpoint(values, ckpt_prefix):
    """Writes `values` (name -> array) as tf.compat.v1 variables with a tf.compat.v1 Saver
    (no meta graph: the network's graph is built by the code that restores it)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    with tf.Graph().as_default() as graph:
        variables, assigns, feed = collections.OrderedDict(), [], {}
        for name, value in values.items():
            var = tf1.get_variable(name, shape=value.shape, dtype=tf.float32,
                                   initializer=tf1.zeros_initializer(), trainable=False)
            placeholder = tf1.placeholder(tf.float32, value.shape)
            assigns.append(tf1.assign(var, placeholder))
            feed[placeholder] = value
            variables[name] = var
        load = tf.group(*assigns)
        saver = tf1.train.Saver(var_list=variables)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(load, feed_dict=feed)
            return saver.save(sess, ckpt_prefix, write_meta_graph=False)


def trained_on_fields(trained_on, caffemodel_path, warn=warn_line, default=None):
    """What the record says the weights were trained on: --trained-on LIST_OR_NAME (a list
    file: its path, entry count, digest and image names, as train_msc.py records them; else a
    free name), or, for the authors' VOC 2012 release (file name containing
    train2_iter_20000), VOC 2012 train+val, else `default` (None: unknown).
    Returns an OrderedDict of record fields."""
    fields = collections.OrderedDict()
    authors = provenance.AUTHORS_VOC12_MARKER in os.path.basename(caffemodel_path)
    if trained_on and os.path.isfile(trained_on):
        info = provenance.list_info(trained_on)
        fields['trained_on'] = info['path']
        fields['train_list'] = collections.OrderedDict(
            [('path', info['path']), ('entries', info['entries']), ('sha256', info['sha256'])])
        fields['train_images'] = info['images']
    elif trained_on:
        fields['trained_on'] = trained_on
    elif authors:
        fields['trained_on'] = provenance.AUTHORS_VOC12_TRAINED_ON
    else:
        fields['trained_on'] = default
    if authors:
        warn('%s looks like the authors\' VOC 2012 release, trained on VOC 2012 train+val: '
             'its score on VOC12 val is not a fair (held-out) val number'
             % os.path.basename(caffemodel_path))
    return fields


def source_fields(path, data, file_format):
    """The record's `source`: the weights file's name, SHA-256, size and format."""
    return collections.OrderedDict([
        ('file', os.path.basename(path)),
        ('sha256', hashlib.sha256(data).hexdigest()),
        ('bytes', len(data)),
        ('format', file_format),
    ])


def conversion_record(ckpt, source, info, seed, num_variables, params, extra=()):
    """The provenance record of a converted checkpoint (without its trained_on fields).
    source: source_fields(...); info: caffe_to_tf's (or the .pth conversion's) info, whose
    'aspp' is where the classifier came from ('initialised' or the format); extra: more
    (name, value) fields."""
    import tensorflow as tf
    from deeplab_resnet.network import model
    return collections.OrderedDict([
        ('checkpoint', os.path.basename(ckpt)),
        ('num_classes', info['num_classes']),
        ('source', source),
        ('aspp', collections.OrderedDict(
            [('from', info['aspp'])] if info['aspp'] != 'initialised' else
            [('from', 'initialised'), ('reason', info['aspp_reason']),
             ('weights_std', ASPP_INIT_STD), ('biases', 0.0), ('seed', seed)])),
        ('channel_order', CHANNEL_ORDER),
        ('image_mean', list(IMG_MEAN_BGR)),
        ('ignore_label', IGNORE_LABEL),
        ('class_names', class_names(info['num_classes'])),
        ('network_blocks', list(model.network_blocks())),   # [3, 4, 23, 3]: ResNet-101
        ('variables', num_variables),
        ('parameters', params),
    ] + ([('converted_layers', len(info['used']))] if 'used' in info else []) + list(extra) + [
        ('tensorflow_version', tf.__version__),
        ('git_commit', provenance.git_commit()),
        ('created_by', 'convert.py'),
        ('created_utc', datetime.datetime.now(datetime.timezone.utc)
         .strftime('%Y-%m-%dT%H:%M:%SZ')),
    ])


def write_converted(values, info, save_dir, source, trained, seed=0, extra=()):
    """Writes <save_dir>/model.ckpt from `values` (name -> float32 array) and its provenance
    record (conversion_record + the trained_on fields `trained`).
    Returns (checkpoint prefix, record dict, record path, parameter count)."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise InputError('%s: --save-dir is a file, not a directory' % save_dir)
    os.makedirs(save_dir, exist_ok=True)
    ckpt = save_checkpoint(values, os.path.join(save_dir, CHECKPOINT_NAME))
    params = int(sum(v.size for v in values.values()))
    record = conversion_record(ckpt, source, info, seed, len(values), params, extra)
    record.update(trained)   # trained_on [, train_list, train_images]
    return ckpt, record, provenance.write_record(ckpt, record), params


def convert(caffemodel_path, save_dir, num_classes=None, reinit_aspp=False, seed=0,
            log=print, warn=warn_line, trained_on=None):
    """Converts a .caffemodel into <save_dir>/model.ckpt and its provenance record
    <save_dir>/model.ckpt.json. trained_on: what the caffemodel was trained on, a list file
    or a free name (see trained_on_fields). Returns (checkpoint prefix, record dict)."""
    trained = trained_on_fields(trained_on, caffemodel_path, warn)
    data = caffemodel.read_bytes(caffemodel_path)
    source = source_fields(caffemodel_path, data, 'caffemodel')
    layers = caffemodel.parse_caffemodel(data, caffemodel_path)
    del data
    values, info = caffe_to_tf(layers, caffemodel_path, num_classes, reinit_aspp, seed)
    if info['aspp'] == 'initialised':
        warn('%s: %s; the ASPP classifier is freshly initialised for %d classes (weights '
             'N(0, %g^2), biases 0, seed %d): train it before use'
             % (caffemodel_path, info['aspp_reason'], info['num_classes'], ASPP_INIT_STD, seed))

    ckpt, record, record_path, params = write_converted(values, info, save_dir, source,
                                                        trained, seed)
    converted = sum(v.size for k, v in values.items()
                    if info['aspp'] == 'caffemodel' or not is_aspp_name(k))

    kinds = collections.Counter(t for n, t in required_layers(values)
                                if n in set(info['used']))
    log('converted %d Caffe layers of %s (%s) -> %d variables, %s parameters '
        '(%s from the caffemodel), %d classes'
        % (len(info['used']), caffemodel_path,
           ', '.join('%d %s' % (c, t) for t, c in sorted(kinds.items())), len(values),
           format(params, ','), format(converted, ','), info['num_classes']))
    copies, others = split_ignored(info['ignored'], info['used'])
    if copies:
        log('ignored %d multi-scale copies of converted layers (%s%s)'
            % (len(copies), ', '.join(copies[:2]), ', ...' if len(copies) > 2 else ''))
    if others:
        log('ignored %d other layer%s with parameters (%s%s)'
            % (len(others), '' if len(others) == 1 else 's', ', '.join(others[:MAX_LISTED]),
               ', ...' if len(others) > MAX_LISTED else ''))
    log('checkpoint: %s' % ckpt)
    log('provenance record: %s' % record_path)
    return ckpt, record
