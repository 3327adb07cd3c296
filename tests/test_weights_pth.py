"""convert.py on PyTorch .pth files (kazuto1011/deeplab-pytorch's DeepLab-v2 state dicts), on
the small test network: both torch.save layouts written by hand (tests/pth_writer.py) and read
back, files that must be refused (a pickled function or unknown global, never run; truncated;
a size bomb; big-endian; a wrong shape; another architecture; a prototxt), the logits of the
.pth path against the Caffe path for the same weights, and a COCO-Stuff evaluation of a
converted 182-class checkpoint with --dataset.

The expected state-dict keys are written here from kazuto's translate_layer_name (his
convert.py: Caffe layer -> module name), and the expected variable names and shapes come from
tests/data/original_variables.txt, not from the code under test.
"""
import json
import os
import pickle
import re
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import convert as convert_script
import pth_writer
from helpers import SMALL_BLOCKS, expect_error_line, original_names
from deeplab_resnet.weights import caffemodel, pth

pytestmark = pytest.mark.usefixtures('small_network')

HERE = os.path.dirname(os.path.abspath(__file__))
KAZUTO_BRANCH = {'1': 'shortcut', '2a': 'reduce', '2b': 'conv3x3', '2c': 'increase'}
LAYOUTS = ['zip', 'legacy']
SIZES = [(33, 45), (48, 64)]   # odd and even


def original_shapes(num_classes):
    """The original project's variables of the small network: name -> shape (HWIO), the
    ASPP's output channels set to num_classes."""
    names = original_names(SMALL_BLOCKS)
    shapes = {}
    with open(os.path.join(HERE, 'data', 'original_variables.txt')) as f:
        for line in f:
            if line.strip() and line.split()[0] in names:
                name, dims = line.split()
                shape = tuple(int(d) for d in dims.split(','))
                if name.startswith('fc1_voc12_c'):
                    shape = shape[:-1] + (num_classes,)
                shapes[name] = shape
    return shapes


def caffe_layers(num_classes, seed=0):
    """Random Caffe layers (name, type, blobs) of the small network: He-scaled OIHW kernels,
    BatchNorm (mean * s, var * s, [s]) with s in [0.5, 4], Scale (gamma, beta), ASPP."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    shapes = original_shapes(num_classes)
    layers = []
    for name, shape in shapes.items():
        layer, leaf = name.split('/')
        if leaf == 'weights':
            h, w, i, o = shape
            std = 0.01 if layer.startswith('fc1') else np.sqrt(2.0 / (h * w * i))
            kernel = (rng.standard_normal((o, i, h, w)) * std).astype(f32)
            blobs = [kernel]
            if layer.startswith('fc1'):
                blobs.append(rng.normal(0, 0.1, o).astype(f32))
            layers.append((layer, 'Convolution', blobs))
        elif leaf == 'moving_mean':
            c = shape[0]
            s = f32(rng.uniform(0.5, 4.0))
            var = (1e4 if layer == 'bn_conv1' else 1.0) * rng.uniform(0.5, 2.0, c)
            mean = rng.normal(0, 0.3, c) * np.sqrt(var)
            layers.append((layer, 'BatchNorm', [(mean * s).astype(f32), (var * s).astype(f32),
                                                np.array([s], f32)]))
            gamma_scale = 0.25 if layer.endswith('2c') else 1.0
            layers.append(('scale' + layer[2:], 'Scale',
                           [(gamma_scale * rng.uniform(0.5, 1.5, c)).astype(f32),
                            rng.normal(0, 0.2, c).astype(f32)]))
    return layers


def kazuto_module(caffe_layer):
    """kazuto's translate_layer_name: conv1 -> layer1.conv1.conv, bn4b_branch2a ->
    layer4.block2.reduce.bn, fc1_voc12_c3 -> aspp.c3 (block a, b, c -> 1, 2, 3; bN -> N + 1)."""
    if caffe_layer == 'conv1':
        return 'layer1.conv1.conv'
    if caffe_layer == 'bn_conv1':
        return 'layer1.conv1.bn'
    if caffe_layer.startswith('fc1_voc12_c'):
        return 'aspp.' + caffe_layer.split('_')[-1]
    kind, stage, letter, number, branch = re.match(
        r'(res|bn)(\d)([a-z])(\d*)_branch(\w+)$', caffe_layer).groups()
    block = int(number) + 1 if number else 'abc'.index(letter) + 1
    return 'layer%s.block%d.%s.%s' % (stage, block, KAZUTO_BRANCH[branch],
                                      'conv' if kind == 'res' else 'bn')


def kazuto_state_dict(layers, prefix='base.'):
    """What kazuto's convert.py makes of the Caffe layers: an MSC state dict (`base.`), batch
    norm statistics divided by Caffe's factor, counters num_batches_tracked."""
    state = {}
    bn = None
    for name, layer_type, blobs in layers:
        if layer_type == 'Scale':
            state[bn + '.weight'], state[bn + '.bias'] = blobs
            continue
        module = prefix + kazuto_module(name)
        if layer_type == 'Convolution':
            state[module + '.weight'] = blobs[0]
            if len(blobs) == 2:
                state[module + '.bias'] = blobs[1]
        else:
            bn = module
            s = np.float64(blobs[2][0])
            state[module + '.running_mean'] = (blobs[0] / s).astype(np.float32)
            state[module + '.running_var'] = (blobs[1] / s).astype(np.float32)
            state[module + '.num_batches_tracked'] = np.array(0, np.int64)
    return state


def run(argv):
    convert_script.main(argv)


def expect_error(argv, capsys, *fragments):
    """convert.py must exit 2 with one stderr line holding the fragments."""
    return expect_error_line(run, argv, capsys, *fragments)


def checkpoint_values(prefix):
    import tensorflow as tf
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def logits(prefix, num_classes, images):
    import tensorflow as tf
    from deeplab_resnet.network.model import DeepLabResNetModel
    tf1 = tf.compat.v1
    with tf.Graph().as_default():
        data = tf1.placeholder(tf.float32, [1, None, None, 3])
        net = DeepLabResNetModel({'data': data}, num_classes=num_classes)
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, prefix)
            return [sess.run(net.logits, {data: image[None]})[0] for image in images]


# ----------------------------------------------------------------------------- the reader

@pytest.mark.parametrize('layout', LAYOUTS)
def test_reader_reads_both_layouts(tmp_path, layout):
    rng = np.random.default_rng(1)
    shared = rng.standard_normal(30).astype(np.float32)
    storage = pth_writer.Storage(shared)
    obj = {'state_dict': {
        'w': rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        'h': rng.standard_normal((2, 3)).astype(np.float16),
        'n': np.array(7, np.int64),
        't': pth_writer.Tensor(storage, 0, (5, 6), (1, 5)),      # a transpose
        'v': pth_writer.Tensor(storage, 12, (2, 3), (6, 1)),     # an offset view
        'e': np.zeros((0, 3), np.float32)},
        'epoch': 3}
    path = str(tmp_path / 'x.pth')
    pth_writer.write(path, obj, layout)
    with open(path, 'rb') as f:
        data = f.read()
    assert pth.sniff(path) == layout
    loaded, found = pth.read(data, path)
    assert found == layout and loaded['epoch'] == 3
    sd = loaded['state_dict']
    for key in ('w', 'h', 'n', 'e'):
        assert sd[key].dtype == obj['state_dict'][key].dtype
        np.testing.assert_array_equal(sd[key], obj['state_dict'][key])
    np.testing.assert_array_equal(sd['t'], shared.reshape(6, 5).T)
    np.testing.assert_array_equal(sd['v'], shared[12:24].reshape(2, 6)[:, :3])


class Payload(object):
    """Unpickled by plain pickle, this opens (creates) `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, 'w'))


@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('payload', ['function', 'global'])
def test_pickled_code_is_refused_without_running(tmp_path, capsys, layout, payload):
    marker = str(tmp_path / 'ran')
    evil = Payload(marker) if payload == 'function' else argparse_namespace()
    path = str(tmp_path / 'evil.pth')
    pth_writer.write(path, {'layer1.conv1.conv.weight': np.zeros(3, np.float32),
                            'x': evil}, layout)
    line = expect_error([path, '--save-dir', str(tmp_path / 'out')], capsys,
                        'evil.pth', 'not allowed', 'nothing was run')
    assert ('io.open' in line or 'builtins.open' in line) if payload == 'function' \
        else 'argparse.Namespace' in line
    assert not os.path.exists(marker) and not os.path.exists(str(tmp_path / 'out'))
    if payload == 'function' and layout == 'zip':   # the payload is live: plain pickle runs it
        pth_writer.write_zip(str(tmp_path / 'plain.pth'), {'x': Payload(marker)})
        with zipfile.ZipFile(str(tmp_path / 'plain.pth')) as z:
            pickle.loads(z.read('archive/data.pkl'))['x'].close()
        assert os.path.exists(marker)


def argparse_namespace():
    import argparse
    return argparse.Namespace(a=1)


@pytest.mark.parametrize('layout', LAYOUTS)
def test_truncated_and_oversized_files_are_refused(tmp_path, capsys, layout):
    state = {'base.aspp.c0.weight': np.ones((2, 8, 3, 3), np.float32),
             'base.aspp.c0.bias': np.ones(2, np.float32)}
    whole = str(tmp_path / 'whole.pth')
    pth_writer.write(whole, state, layout)
    with open(whole, 'rb') as f:
        data = f.read()
    for cut in (len(data) - 40, len(data) // 2):
        cut_path = str(tmp_path / ('cut%d.pth' % cut))
        with open(cut_path, 'wb') as f:
            f.write(data[:cut])
        expect_error([cut_path, '--save-dir', str(tmp_path / 'out')], capsys, cut_path,
                     'truncated')
    stub = str(tmp_path / 'stub.pth')   # too short to say what it is
    with open(stub, 'wb') as f:
        f.write(data[:3])
    expect_error([stub, '--save-dir', str(tmp_path / 'out')], capsys, stub,
                 'not a PyTorch file')
    bomb = str(tmp_path / 'bomb.pth')
    if layout == 'legacy':   # a storage header claiming 10^12 elements
        pth_writer.write_legacy(bomb, state, storage_sizes={'94000000': 10 ** 12})
        expect_error([bomb, '--save-dir', str(tmp_path / 'out')], capsys,
                     'storage 94000000 says 1000000000000 elements', 'bytes left')
    else:                    # a tensor reaching past its storage
        storage = pth_writer.Storage(np.ones(4, np.float32))
        pth_writer.write_zip(bomb, {'w': pth_writer.Tensor(storage, 0, (10 ** 6, 10 ** 6),
                                                           (0, 0))})
        expect_error([bomb, '--save-dir', str(tmp_path / 'out')], capsys,
                     'reaches past its storage')
    big = str(tmp_path / 'big.pth')
    if layout == 'legacy':
        pth_writer.write_legacy(big, state, little_endian=False)
    else:
        pth_writer.write_zip(big, state, byteorder='big')
    expect_error([big, '--save-dir', str(tmp_path / 'out')], capsys, 'big', 'little-endian')
    assert not os.path.exists(str(tmp_path / 'out'))


def test_deeply_nested_object_is_one_line(tmp_path, capsys):
    # Pickle opcodes by hand: protocol 2, 200,000 empty lists each appended into the one
    # before (3 bytes a level), in a zip as torch.save lays it out.
    depth = 200000
    path = str(tmp_path / 'deep.pth')
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', b'\x80\x02' + b']' * depth + b'a' * (depth - 1) + b'.')
    expect_error([path, '--save-dir', str(tmp_path / 'out')], capsys, 'deep.pth',
                 'nested too deeply')


# ----------------------------------------------------------------------------- conversion

@pytest.fixture(scope='module')
def layers21():
    return caffe_layers(21, seed=2)


@pytest.fixture(scope='module')
def converted(module_dir, layers21):
    """The same weights as a caffemodel and as .pth files, each converted."""
    root = module_dir('convert_pth')
    caffe = str(root / 'small.caffemodel')
    caffemodel.write_caffemodel(caffe, layers21)
    run([caffe, '--save-dir', str(root / 'caffe')])
    state = kazuto_state_dict(layers21)
    out = {'caffe': str(root / 'caffe' / 'model.ckpt'), 'root': root, 'state': state}
    zip_path = str(root / 'zip.pth')   # kazuto's MSC state dict, PyTorch >= 1.6
    pth_writer.write_zip(zip_path, state)
    run([zip_path, '--save-dir', str(root / 'zip')])
    # DataParallel around MSC, under 'state_dict', in the legacy layout of 2019's files.
    legacy = {'state_dict': dict(('module.' + k, v) for k, v in state.items()), 'iter': 20000}
    legacy_path = str(root / 'legacy.pth')
    pth_writer.write_legacy(legacy_path, legacy)
    run([legacy_path, '--save-dir', str(root / 'legacy'), '--trained-on', 'my set'])
    out.update(zip=str(root / 'zip' / 'model.ckpt'), zip_pth=zip_path,
               legacy=str(root / 'legacy' / 'model.ckpt'))
    return out


def test_pth_gives_the_caffe_paths_logits(converted):
    rng = np.random.default_rng(3)
    images = [rng.normal(0, 60, size + (3,)).astype(np.float32) for size in SIZES]
    expected = logits(converted['caffe'], 21, images)
    got = logits(converted['zip'], 21, images)
    for size, e, g in zip(SIZES, expected, got):
        span = float(e.max() - e.min())
        assert span > 0 and e.shape[2] == 21
        assert np.abs(g - e).max() <= 1e-5 * span, size


def test_checkpoints_hold_the_original_names_and_values(converted, layers21):
    shapes = original_shapes(21)
    caffe = checkpoint_values(converted['caffe'])
    for key in ('zip', 'legacy'):
        values = checkpoint_values(converted[key])
        assert set(values) == set(shapes)
        for name, shape in shapes.items():
            assert values[name].shape == shape, name
            np.testing.assert_allclose(values[name], caffe[name], rtol=1e-6, atol=1e-7,
                                       err_msg=name)
    # One value by hand: kazuto's OIHW stem kernel, transposed to HWIO.
    np.testing.assert_array_equal(checkpoint_values(converted['zip'])['conv1/weights'],
                                  converted['state']['base.layer1.conv1.conv.weight']
                                  .transpose(2, 3, 1, 0))
    with open(converted['zip'] + '.json') as f:
        record = json.load(f)
    with open(converted['zip_pth'], 'rb') as f:
        import hashlib
        digest = hashlib.sha256(f.read()).hexdigest()
    assert record['source'] == {'file': 'zip.pth', 'sha256': digest,
                                'bytes': os.path.getsize(converted['zip_pth']),
                                'format': 'pth (zip)'}
    assert record['num_classes'] == 21 and record['aspp'] == {'from': 'pth'}
    assert record['batch_norm_epsilon'] == 1e-5 and record['state_dict_prefix'] == 'base.'
    assert record['network_blocks'] == list(SMALL_BLOCKS) and record['trained_on'] is None
    with open(converted['legacy'] + '.json') as f:
        record = json.load(f)
    assert record['source']['format'] == 'pth (legacy)' and record['trained_on'] == 'my set'
    assert record['state_dict_prefix'] == 'module.base.'


def test_wrong_shape_other_architecture_and_prototxt_are_refused(converted, tmp_path,
                                                                   capsys):
    state = dict(converted['state'])
    save = ['--save-dir', str(tmp_path / 'out')]
    bad = dict(state)
    bad['base.layer3.block1.conv3x3.conv.weight'] = np.zeros((128, 128, 1, 1), np.float32)
    path = str(tmp_path / 'shape.pth')
    pth_writer.write_zip(path, bad)
    expect_error([path] + save, capsys, 'shape.pth',
                 'base.layer3.block1.conv3x3.conv.weight has shape (128, 128, 1, 1), '
                 'expected (128, 128, 3, 3)')
    # DeepLab-v3's ASPP (kazuto's deeplabv3.py names its branches c0.conv, ...) and an extra
    # block: the first missing and unexpected names, and how many.
    other = {'base.layer5.block2.reduce.conv.weight': np.zeros((512, 2048, 1, 1), np.float32)}
    other.update((re.sub(r'\.aspp\.c(\d)\.', r'.aspp.c\1.conv.', k), v)
                 for k, v in state.items())
    path = str(tmp_path / 'v3.pth')
    pth_writer.write_legacy(path, other)
    line = expect_error([path] + save, capsys, 'v3.pth', 'not a kazuto1011/deeplab-pytorch '
                        'DeepLab-v2', '8 of its ', 'expected tensors are missing (aspp.c0.weight, '
                        'aspp.c0.bias, aspp.c1.weight', '9 are unexpected (')
    assert 'unexpected (layer5.block2.reduce.conv.weight, aspp.c0.conv.weight' in line
    expect_error([converted['zip_pth'], 'deploy.prototxt'] + save, capsys, 'zip.pth',
                 'deploy.prototxt', 'needs no prototxt')
    expect_error(['deploy.prototxt', converted['zip_pth']] + save, capsys, 'needs no prototxt')
    expect_error([converted['zip_pth'], '--num-classes', '5'] + save, capsys,
                 'has 21 classes but 5 were requested')
    assert not os.path.exists(str(tmp_path / 'out'))


# ----------------------------------------------------------------------------- COCO-Stuff

def test_cocostuff_release_converts_and_evaluates_with_dataset(module_dir, capsys):
    import evaluate_msc
    from dataset import tools
    root = module_dir('cocostuff_pth')
    # A COCO-Stuff 164k download in miniature: 2 val images (odd and even sizes), 1 train.
    rng = np.random.default_rng(4)
    for split, stems, sizes in (('train2017', ['000000000009'], [(35, 41)]),
                                ('val2017', ['000000000139', '000000000285'],
                                 [(33, 45), (48, 64)])):
        for stem, (h, w) in zip(stems, sizes):
            for folder in ('images', 'annotations'):
                os.makedirs(str(root / 'coco' / folder / split), exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                str(root / 'coco' / 'images' / split / (stem + '.jpg')), quality=95)
            label = rng.choice([0, 5, 120, 181, 255], size=(h, w)).astype(np.uint8)
            Image.fromarray(label, 'L').save(str(root / 'coco' / 'annotations' / split /
                                                 (stem + '.png')))
    assert tools.main(['cocostuff164k', '--root', str(root / 'coco'), '--quiet']) == 0
    descriptor = str(root / 'coco' / 'deeplab' / 'dataset.json')
    # kazuto's release file name, 182 classes.
    release = str(root / 'deeplabv2_resnet101_msc-cocostuff164k-100000.pth')
    pth_writer.write_legacy(release, kazuto_state_dict(caffe_layers(182, seed=5)))
    run([release, '--save-dir', str(root / 'ckpt')])
    out = capsys.readouterr().out
    assert 'trained on: cocostuff164k_train2017' in out and '182 classes' in out
    with open(str(root / 'ckpt' / 'model.ckpt.json')) as f:
        record = json.load(f)
    assert record['num_classes'] == 182 and record['trained_on'].startswith('cocostuff164k')
    assert record['variables'] == len(original_shapes(182))
    out_json, save_dir = str(root / 'res.json'), str(root / 'pred')
    assert evaluate_msc.main(['--dataset', descriptor, '--restore-from', str(root / 'ckpt'),
                              '--scales', '1.0', '--threads', '2', '--output-json', out_json,
                              '--save-dir', save_dir]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith('restored %s: 182 classes (--dataset %s)'
                            % (str(root / 'ckpt' / 'model.ckpt'), descriptor)), first
    with open(out_json) as f:
        res = json.load(f)
    # mIoU by boolean masks over the saved predictions and the labels.
    inter, union = np.zeros(182), np.zeros(182)
    for stem in ('000000000139', '000000000285'):
        gt = np.array(Image.open(str(root / 'coco' / 'annotations' / 'val2017' /
                                     (stem + '.png'))))
        pred = np.array(Image.open(os.path.join(save_dir, stem + '.png')))
        assert pred.shape == gt.shape
        valid = gt != 255
        for c in range(182):
            g, p = (gt == c) & valid, (pred == c) & valid
            inter[c] += (g & p).sum()
            union[c] += (g | p).sum()
    assert res['mean_iou'] == pytest.approx(float(np.mean(inter[union > 0] /
                                                          union[union > 0])), abs=1e-12)
    names = [pc['name'] for pc in res['metrics']['per_class']]
    assert len(names) == 182 and names[0] == 'person'
