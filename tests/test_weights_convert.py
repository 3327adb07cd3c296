"""Caffe -> TensorFlow conversion: wire format, every restored tensor, parity of the logits
with an independent NumPy implementation of Caffe's forward pass, and bad input.

The synthetic caffemodels are full-size (ResNet-101 + ASPP, about 176 MB each, in a
temporary directory); the parity check runs the whole network at 321x321, 375x500 and 64x96.
"""
import hashlib
import io
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import caffe_reference as ref  # noqa: E402
from helpers import expect_error_line  # noqa: E402
from deeplab_resnet.checkpoint import provenance
from deeplab_resnet.weights import caffemodel   # noqa: E402
from deeplab_resnet.common.constants import IGNORE_LABEL, IMG_MEAN_BGR  # noqa: E402
from deeplab_resnet.weights.to_checkpoint import bn_statistics  # noqa: E402
from deeplab_resnet.common.errors import InputError  # noqa: E402

ORIGINAL_VARIABLES = os.path.join(HERE, 'data', 'original_variables.txt')
ASPP = ['fc1_voc12_c%d' % i for i in range(4)]
PARITY_SIZES = [(321, 321), (375, 500), (64, 96)]
PARITY_TOLERANCE = 1e-4   # of the logit range


import convert as convert_script  # noqa: E402  (the root script, on sys.path via conftest)


def expected_values(layers, var_names):
    """TF variable name -> the value the converted checkpoint must hold, from Caffe blobs."""
    table = {name: blobs for name, _, blobs in layers if blobs}
    out = {}
    for var in var_names:
        layer, leaf = var.split('/')
        if leaf == 'weights':
            out[var] = table[layer][0].transpose(2, 3, 1, 0)
        elif leaf == 'biases':
            out[var] = table[layer][1]
        elif leaf in ('moving_mean', 'moving_variance'):
            blobs = table[layer]
            s = float(blobs[2][0])
            raw = blobs[0] if leaf == 'moving_mean' else blobs[1]
            out[var] = raw / s if s else np.zeros_like(raw)
        else:
            blobs = table['scale' + layer[2:]]
            out[var] = blobs[0] if leaf == 'gamma' else blobs[1]
    return out


def read_original_variables():
    with open(ORIGINAL_VARIABLES) as f:
        rows = [line.split() for line in f if line.strip()]
    return {name: tuple(int(d) for d in dims.split(',')) for name, dims in rows}


def run_main(argv):
    convert_script.main(argv)


def expect_input_error(argv, capsys, *fragments):
    """main(argv) must exit with status 2 and one stderr line containing the fragments."""
    return expect_error_line(run_main, argv, capsys, *fragments)


# ---------------------------------------------------------------------------------------------
# Fixtures: one 21-class synthetic model, converted once.

@pytest.fixture(scope='module')
def workdir(module_dir):
    return module_dir('convert')


@pytest.fixture(scope='module')
def layers21():
    return ref.random_caffe_layers(21, seed=1)


@pytest.fixture(scope='module')
def model21(workdir, layers21):
    path = str(workdir / 'voc21.caffemodel')
    caffemodel.write_caffemodel(path, layers21)
    return path


@pytest.fixture(scope='module')
def converted21(workdir, model21):
    save_dir = str(workdir / 'ckpt21')
    start = time.time()
    run_main([model21, '--save-dir', save_dir])
    print('\nconversion of the 21-class model: %.1f s' % (time.time() - start))
    return os.path.join(save_dir, 'model.ckpt')


@pytest.fixture(scope='module')
def restored21(converted21):
    import tensorflow as tf
    from deeplab_resnet.network.model import DeepLabResNetModel
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        data = tf1.placeholder(tf.float32, [1, None, None, 3])
        net = DeepLabResNetModel({'data': data}, is_training=False, num_classes=21)
        saver = tf1.train.Saver()
        sess = tf1.Session(graph=graph)
        saver.restore(sess, converted21)
        values = sess.run({v.op.name: v for v in tf1.global_variables()})
    yield sess, data, net, values
    sess.close()


def checkpoint_values(ckpt):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(ckpt)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


# ---------------------------------------------------------------------------------------------
# Wire format.

def test_wire_format_v2_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    layers = [
        ('data', 'Input', []),
        ('conv', 'Convolution', [rng.standard_normal((4, 3, 2, 5)).astype(np.float32),
                                 rng.standard_normal(4).astype(np.float32)]),
        ('bn', 'BatchNorm', [np.arange(3, dtype=np.float32), np.ones(3, np.float32),
                             np.array([2.0], np.float32)]),
        ('scalar', 'Dummy', [np.array(1.5, np.float32), np.zeros((0,), np.float32)]),
        (u'n\u00e4me', 'Scale', [rng.standard_normal((1, 6, 1, 1)).astype(np.float32)]),
    ]
    path = str(tmp_path / 'small.caffemodel')
    caffemodel.write_caffemodel(path, layers)
    back = caffemodel.read_caffemodel(path)
    assert [(l.name, l.type) for l in back] == [(n, t) for n, t, _ in layers]
    for (_, _, blobs), layer in zip(layers, back):
        assert len(layer.blobs) == len(blobs)
        for want, got in zip(blobs, layer.blobs):
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7f, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(field, wire):
    return _varint(field << 3 | wire)


def _len(field, payload):
    return _key(field, 2) + _varint(len(payload)) + payload


def test_wire_format_v1_layers_hand_built():
    """Legacy V1 `layers` (field 2) with enum types, legacy blob dimensions, unpacked floats,
    packed doubles, unpacked dims and fields to skip of every wire type."""
    weights = np.arange(2 * 3 * 1 * 2, dtype=np.float32).reshape(2, 3, 1, 2) - 5.5
    legacy_blob = (_key(1, 0) + _varint(2) + _key(2, 0) + _varint(3) + _key(3, 0) + _varint(1)
                   + _key(4, 0) + _varint(2)
                   + b''.join(_key(5, 5) + struct.pack('<f', v) for v in weights.ravel())
                   + _key(6, 5) + struct.pack('<f', 9.0))          # a diff value: skipped
    bias = np.array([0.25, -1.0], np.float64)
    double_blob = (_len(7, _key(1, 0) + _varint(2))                # BlobShape, unpacked dim
                   + _len(8, bias.astype('<f8').tobytes()))      # packed double_data
    conv = (_len(2, b'data') + _len(3, b'conv1') + _len(4, b'conv1') + _key(5, 0) + _varint(4)
            + _len(6, legacy_blob) + _len(6, double_blob)
            + _key(7, 5) + struct.pack('<f', 1.0)                 # blobs_lr (skipped)
            + _key(8, 1) + struct.pack('<d', 1.0))                # 64-bit field (skipped)
    relu = _len(4, b'relu1') + _key(5, 0) + _varint(18)
    unknown = _len(4, b'odd') + _key(5, 0) + _varint(99)
    net = (_len(1, b'tiny') + _len(3, b'data') + _key(4, 0) + _varint(1)
           + _len(2, conv) + _len(2, relu) + _len(2, unknown))
    layers = caffemodel.parse_caffemodel(net, 'tiny')
    assert [(l.name, l.type) for l in layers] == [
        ('conv1', 'Convolution'), ('relu1', 'ReLU'), ('odd', 'V1LayerType99')]
    conv_blobs = layers[0].blobs
    assert conv_blobs[0].shape == (2, 3, 1, 2) and conv_blobs[0].dtype == np.float32
    np.testing.assert_array_equal(conv_blobs[0], weights)
    np.testing.assert_array_equal(conv_blobs[1], bias.astype(np.float32))
    assert layers[1].blobs == []


def _jpeg_bytes():
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format='JPEG')
    return buf.getvalue()


@pytest.mark.parametrize('kind', ['random', 'empty', 'jpeg', 'prototxt', 'truncated'])
def test_not_a_caffemodel(tmp_path, kind):
    if kind == 'random':
        data = np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    elif kind == 'empty':
        data = b''
    elif kind == 'jpeg':
        data = _jpeg_bytes()
    elif kind == 'prototxt':
        data = b'name: "ResNet-101"\nlayer {\n  name: "conv1"\n  type: "Convolution"\n}\n'
    else:
        w = np.ones((64, 3, 7, 7), np.float32)
        data = caffemodel.encode_layer('conv1', 'Convolution', [w])[:5000]
    path = str(tmp_path / ('model_%s.caffemodel' % kind))
    with open(path, 'wb') as f:
        f.write(data)
    with pytest.raises(InputError) as e:
        caffemodel.read_caffemodel(path)
    message = str(e.value)
    assert path in message and '\n' not in message
    if kind == 'prototxt':
        assert 'text' in message


def test_bn_statistics_follow_caffe():
    mean, var = np.array([2., -4.], np.float32), np.array([8., 6.], np.float32)
    m, v = bn_statistics([mean, var, np.array([2.], np.float32)])
    np.testing.assert_array_equal(m, [1., -2.])
    np.testing.assert_array_equal(v, [4., 3.])
    m, v = bn_statistics([mean, var, np.array([0.], np.float32)])   # Caffe: factor 0
    np.testing.assert_array_equal(m, [0., 0.])
    np.testing.assert_array_equal(v, [0., 0.])


# ---------------------------------------------------------------------------------------------
# The 21-class model: every tensor, names and shapes, parity.

def test_restored_variables_match_blobs_and_original_names(restored21, layers21, converted21):
    _, _, _, values = restored21
    original = read_original_variables()
    assert len(values) == len(original) == 528
    assert {k: tuple(v.shape) for k, v in values.items()} == original
    expected = expected_values(layers21, values)
    for name, value in values.items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-6, atol=0, err_msg=name)
    record = provenance.read_record(converted21)
    assert record['num_classes'] == 21 and record['aspp']['from'] == 'caffemodel'


@pytest.mark.parametrize('size', PARITY_SIZES, ids=['%dx%d' % s for s in PARITY_SIZES])
def test_logits_match_caffe_reference(restored21, layers21, size):
    sess, data, net, _ = restored21
    image = ref.random_image(size[0], size[1], seed=size[0] * 1000 + size[1])
    start = time.time()
    tf_logits = sess.run(net.layers['fc1_voc12'], {data: image[None]})[0]
    tf_time = time.time() - start
    start = time.time()
    caffe_logits = ref.forward(layers21, image)
    ref_time = time.time() - start
    assert tf_logits.shape == caffe_logits.shape
    span = float(caffe_logits.max() - caffe_logits.min())
    worst = float(np.abs(tf_logits - caffe_logits).max())
    print('\n%dx%d: logits %s, range %.2f, max |tf - caffe| / range = %.2e '
          '(tf %.1f s, numpy reference %.1f s)'
          % (size[0], size[1], tf_logits.shape, span, worst / span, tf_time, ref_time))
    assert span > 1.0
    assert worst <= PARITY_TOLERANCE * span


# ---------------------------------------------------------------------------------------------
# The command line; other class counts; the ImageNet initialisation.

def test_cli_subprocess_5_classes(workdir, layers21):
    rng = np.random.default_rng(5)
    layers5 = [(n, t, b) for n, t, b in layers21 if not n.startswith('fc1_voc12')]
    for name in ASPP:
        layers5.append((name, 'Convolution', [
            (rng.standard_normal((5, 2048, 3, 3)) * 0.01).astype(np.float32),
            rng.standard_normal(5).astype(np.float32)]))
    path = str(workdir / 'five.caffemodel')
    caffemodel.write_caffemodel(path, layers5)
    save_dir = str(workdir / 'ckpt5')
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'convert.py'), path, 'deploy.prototxt',
         '--save-dir', save_dir], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '5 classes' in result.stdout and 'warning' not in result.stderr
    ckpt = os.path.join(save_dir, 'model.ckpt')
    values = checkpoint_values(ckpt)
    assert len(values) == 528
    assert values['fc1_voc12_c2/weights'].shape == (3, 3, 2048, 5)
    expected = expected_values(layers5, values)
    for name in [n for n in values if n.startswith('fc1_voc12')] + ['conv1/weights',
                                                                    'bn5c_branch2c/gamma']:
        np.testing.assert_allclose(values[name], expected[name], rtol=1e-6, err_msg=name)

    import tensorflow as tf
    record = provenance.read_record(ckpt)
    with open(path, 'rb') as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    assert record['num_classes'] == 5
    assert record['source']['file'] == 'five.caffemodel'
    assert record['source']['sha256'] == sha256
    assert record['channel_order'] == 'BGR'
    assert record['image_mean'] == list(IMG_MEAN_BGR)
    assert record['ignore_label'] == IGNORE_LABEL
    assert record['tensorflow_version'] == tf.__version__
    assert provenance.read_record(os.path.join(save_dir, 'absent.ckpt')) is None


def test_cli_subprocess_bad_file(tmp_path):
    path = str(tmp_path / 'noise.caffemodel')
    with open(path, 'wb') as f:
        f.write(np.random.default_rng(7).integers(0, 256, 999, dtype=np.uint8).tobytes())
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'convert.py'), path,
                             '--save-dir', str(tmp_path / 'out')],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and path in lines[0]


def _assert_fresh_aspp(values, num_classes):
    for name in ASPP:
        w, b = values[name + '/weights'], values[name + '/biases']
        assert w.shape == (3, 3, 2048, num_classes) and b.shape == (num_classes,)
        assert abs(float(w.std()) - 0.01) < 0.0005 and abs(float(w.mean())) < 0.0005
        np.testing.assert_array_equal(b, 0)


def _assert_backbone_equal(values, layers):
    backbone = [n for n in values if not n.startswith('fc1_voc12')]
    assert len(backbone) == 520
    expected = expected_values(layers, backbone)
    for name in backbone:
        np.testing.assert_allclose(values[name], expected[name], rtol=1e-6, err_msg=name)


def test_imagenet_init_model_gets_fresh_aspp(workdir, layers21, capsys):
    layers = [(n, t, b) for n, t, b in layers21 if not n.startswith('fc1_voc12')]
    rng = np.random.default_rng(11)
    layers.append(('fc1000', 'InnerProduct', [rng.standard_normal((1000, 2048), np.float32),
                                              np.zeros(1000, np.float32)]))
    path = str(workdir / 'init.caffemodel')
    caffemodel.write_caffemodel(path, layers)
    save_dir = str(workdir / 'ckpt_init')
    capsys.readouterr()
    run_main([path, '--save-dir', save_dir])
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith('warning:')]
    assert len(warnings) == 1 and 'ASPP' in warnings[0] and path in warnings[0]
    assert '21 classes' in out
    assert 'ignored 6 multi-scale copies' in out and 'ignored 1 other layer with' in out
    assert 'fc1000' in out
    ckpt = os.path.join(save_dir, 'model.ckpt')
    values = checkpoint_values(ckpt)
    assert len(values) == 528
    _assert_fresh_aspp(values, 21)
    _assert_backbone_equal(values, layers)
    record = provenance.read_record(ckpt)
    assert record['aspp']['from'] == 'initialised' and record['num_classes'] == 21
    os.remove(path)


def test_reinit_aspp_for_another_class_count(workdir, model21, layers21, capsys):
    save_dir = str(workdir / 'ckpt_reinit')
    capsys.readouterr()
    run_main([model21, '--save-dir', save_dir, '--num-classes', '5', '--reinit-aspp'])
    err = capsys.readouterr().err
    assert 'warning:' in err and 'reinit' in err
    values = checkpoint_values(os.path.join(save_dir, 'model.ckpt'))
    _assert_fresh_aspp(values, 5)
    _assert_backbone_equal(values, layers21)


# ---------------------------------------------------------------------------------------------
# Bad input through main(): exit status 2, one line naming the file.

@pytest.mark.parametrize('kind', ['random', 'empty', 'jpeg'])
def test_main_rejects_non_caffemodels(tmp_path, capsys, kind):
    data = {'random': np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes(),
            'empty': b'', 'jpeg': _jpeg_bytes()}[kind]
    path = str(tmp_path / ('%s.caffemodel' % kind))
    with open(path, 'wb') as f:
        f.write(data)
    expect_input_error([path, '--save-dir', str(tmp_path / 'out')], capsys, path,
                       'not a Caffe model')
    assert not os.path.exists(str(tmp_path / 'out'))


def test_main_rejects_missing_backbone(tmp_path, layers21, capsys):
    path = str(tmp_path / 'partial.caffemodel')
    head = [l for l in layers21 if l[0] in ('conv1', 'bn_conv1', 'scale_conv1')]
    caffemodel.write_caffemodel(path, head + [('conv1_1', 'Convolution',
                                               [np.ones((64, 3, 3, 3), np.float32)])])
    expect_input_error([path, '--save-dir', str(tmp_path / 'out')], capsys, path,
                       'not a DeepLab-v2 ResNet-101', '309 of its 312 backbone layers',
                       'res2a_branch1, bn2a_branch1, scale2a_branch1')


def test_main_rejects_shape_mismatch(tmp_path, layers21, capsys):
    layers = [(n, t, b) if n != 'res3a_branch2b' else
              (n, t, [np.zeros((128, 64, 3, 3), np.float32)]) for n, t, b in layers21]
    path = str(tmp_path / 'mismatch.caffemodel')
    caffemodel.write_caffemodel(path, layers)
    expect_input_error([path, '--save-dir', str(tmp_path / 'out')], capsys, path,
                       'res3a_branch2b', '(128, 64, 3, 3)', '(128, 128, 3, 3)')
    os.remove(path)


def test_main_rejects_class_count_mismatch(tmp_path, model21, capsys):
    line = expect_input_error([model21, '--save-dir', str(tmp_path / 'out'),
                               '--num-classes', '5'], capsys, model21, '21 classes',
                              '5 were requested', '--num-classes', '--reinit-aspp')
    assert line
