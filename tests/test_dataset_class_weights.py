"""`python -m dataset.tools check --class-weights OUT`: the weights of a generated dataset
whose pixel counts are known by construction, computed here by hand (fractions), against the
file; a class absent from the list gets 0 and a warning; the file reads back for training."""
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from dataset import tools
from deeplab_resnet.data import class_weights
from deeplab_resnet.data.imageio import write_index_png

NAMES = ['sky', 'road', 'car', 'unused']
# Each mask lists (value, pixels) in raster order; 255 is ignored.
MASKS = {'a': ((10, 10), [(0, 60), (1, 30), (255, 10)]),
         'b': ((10, 10), [(0, 50), (2, 50)]),
         'c': ((8, 10), [(1, 20), (255, 20), (2, 40)])}


@pytest.fixture(scope='module')
def data(module_dir):
    root = str(module_dir('weights'))
    os.makedirs(os.path.join(root, 'img'))
    os.makedirs(os.path.join(root, 'lab'))
    lines = []
    for name, (shape, runs) in MASKS.items():
        values = np.concatenate([np.full(n, v, np.uint8) for v, n in runs])
        assert values.size == shape[0] * shape[1]
        write_index_png(os.path.join(root, 'lab', name + '.png'), values.reshape(shape))
        Image.fromarray(np.full(shape + (3,), 90, np.uint8)).save(
            os.path.join(root, 'img', name + '.jpg'))
        lines.append('img/%s.jpg lab/%s.png' % (name, name))
    with open(os.path.join(root, 'list.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(os.path.join(root, 'names.txt'), 'w') as f:
        f.write('\n'.join(NAMES) + '\n')
    return root


def _check(root, out, *extra):
    return tools.main(['check', '--data-dir', root, '--data-list',
                       os.path.join(root, 'list.txt'), '--num-classes', '4', '--class-names',
                       os.path.join(root, 'names.txt'), '--quiet', '--class-weights', out]
                      + list(extra))


def test_median_frequency_against_counts_by_hand(data, tmp_path, capsys):
    """sky: 110 px in a + b (90 + 100 labelled px); road: 50 in a + c (90 + 60); car: 90 in
    b + c (100 + 60); unused: none. freq = 11/19, 1/3, 9/16; median 9/16; weights
    (9/16) / (11/19) = 171/176, (9/16) / (1/3) = 27/16, 1, and 0."""
    out = str(tmp_path / 'w.json')
    assert _check(data, out) == 0
    err = capsys.readouterr().err
    assert 'warning: class 3 (unused) has no pixel in' in err
    doc = json.load(open(out))
    assert doc['method'] == 'median-frequency'
    assert doc['dataset'] == os.path.basename(data)
    assert doc['data_list'] == os.path.join(data, 'list.txt')
    assert [c['name'] for c in doc['classes']] == NAMES
    assert [c['pixels'] for c in doc['classes']] == [110, 50, 90, 0]
    assert [c['image_pixels'] for c in doc['classes']] == [190, 150, 160, 0]
    want = [171 / 176, 27 / 16, 1.0, 0.0]
    np.testing.assert_allclose([c['weight'] for c in doc['classes']], want, rtol=1e-12)
    assert doc['absent'] == [3]
    read = class_weights.read(out, 4)
    np.testing.assert_allclose(read.values, want, rtol=1e-12)
    assert read.method == 'median-frequency'


def test_inverse_log_against_counts_by_hand(data, tmp_path):
    """250 labelled px: p = 0.44, 0.2, 0.36 -> 1 / ln(1.02 + p); the absent class 0."""
    out = str(tmp_path / 'w.json')
    assert _check(data, out, '--weights-method', 'inverse-log') == 0
    doc = json.load(open(out))
    want = [1 / math.log(1.46), 1 / math.log(1.22), 1 / math.log(1.38), 0.0]
    np.testing.assert_allclose([c['weight'] for c in doc['classes']], want, rtol=1e-12)
    assert doc['method'] == 'inverse-log'


def test_no_weights_over_problems(data, tmp_path, capsys):
    """A list with a problem (a class value above the count) writes no weights."""
    out = str(tmp_path / 'w.json')
    assert tools.main(['check', '--data-dir', data, '--data-list',
                       os.path.join(data, 'list.txt'), '--num-classes', '2', '--quiet',
                       '--class-weights', out]) == 2
    assert 'class weights: not written' in capsys.readouterr().out
    assert not os.path.exists(out)
