"""dataset.demo_data: the synthetic segmentation dataset."""
import os

import numpy as np
import pytest
from PIL import Image

from dataset import demo_data, tools
from deeplab_resnet.data.colormap import voc_palette_flat
from deeplab_resnet.data.datalist import load_examples
from deeplab_resnet.data.imageio import read_image, read_label

NUM_TRAIN, NUM_VAL = 12, 4


@pytest.fixture(scope='module')
def demo(module_dir):
    out = str(module_dir('demo'))
    train, val = demo_data.generate(out, NUM_TRAIN, NUM_VAL, seed=7)
    return out, train, val


def _files(d):
    return sorted(os.listdir(d))


def test_lists_parse_and_layout(demo):
    out, train, val = demo
    assert train == os.path.join(out, 'train.txt') and val == os.path.join(out, 'val.txt')
    tr = load_examples(train, out)
    va = load_examples(val, out)
    assert len(tr) == NUM_TRAIN and len(va) == NUM_VAL
    with open(train) as f:
        assert f.readline() == '/JPEGImages/train_00000.jpg /SegmentationClass/train_00000.png\n'
    with open(os.path.join(out, 'class_names.txt')) as f:
        assert [x.strip() for x in f] == list(demo_data.CLASS_NAMES)
    assert len(_files(os.path.join(out, 'JPEGImages'))) == NUM_TRAIN + NUM_VAL


def test_formats_sizes_and_labels(demo):
    out, train, _ = demo
    heights, present = set(), set()
    for ex in load_examples(train, out):
        with Image.open(ex.image) as img:
            assert img.format == 'JPEG' and img.mode == 'RGB'
        with Image.open(ex.label) as m:
            assert m.format == 'PNG' and m.mode == 'P'
            assert m.getpalette()[:768] == voc_palette_flat()
        image, labels = read_image(ex.image), read_label(ex.label)
        assert image.shape[:2] == labels.shape
        h, w = labels.shape
        assert demo_data.DEFAULT_MIN_SIZE <= min(h, w) and max(h, w) <= demo_data.DEFAULT_MAX_SIZE
        heights.add(h % 2)
        values = set(np.unique(labels).tolist())
        assert values <= set(range(demo_data.NUM_CLASSES)) | {255}
        assert 255 in values                    # an ignore band around the objects
        present |= values
        # The band separates every pair of different labels: no two 4-neighbours with
        # different labels are both valid.
        for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
            touching = (a != b) & (a != 255) & (b != 255)
            assert not touching.any()
    assert heights == {0, 1}                    # odd and even sizes
    assert present >= set(range(demo_data.NUM_CLASSES))


def test_deterministic_for_a_seed(demo, tmp_path):
    out, _, _ = demo
    again = str(tmp_path / 'again')
    demo_data.generate(again, NUM_TRAIN, NUM_VAL, seed=7)
    for sub in ('SegmentationClass', 'JPEGImages'):
        names = _files(os.path.join(out, sub))
        assert names == _files(os.path.join(again, sub))
        for n in names:
            with open(os.path.join(out, sub, n), 'rb') as f1, \
                    open(os.path.join(again, sub, n), 'rb') as f2:
                assert f1.read() == f2.read(), n
    # Another seed gives other masks; fewer images give the same first ones.
    other = str(tmp_path / 'other')
    demo_data.generate(other, 2, 0, seed=8)
    fewer = str(tmp_path / 'fewer')
    demo_data.generate(fewer, 2, 0, seed=7)
    first = os.path.join('SegmentationClass', 'train_00000.png')
    assert not np.array_equal(read_label(os.path.join(out, first)),
                              read_label(os.path.join(other, first)))
    np.testing.assert_array_equal(read_label(os.path.join(out, first)),
                                  read_label(os.path.join(fewer, first)))


def test_class_is_not_a_colour(demo):
    """Objects of one class come in many colours."""
    out, train, _ = demo
    means = {c: [] for c in range(1, demo_data.NUM_CLASSES)}
    for ex in load_examples(train, out):
        image, labels = read_image(ex.image).astype(float), read_label(ex.label)
        for c in means:
            if (labels == c).sum() > 20:
                means[c].append(image[labels == c].mean(axis=0))
    for c, m in means.items():
        assert len(m) >= 2
        assert np.ptp(np.array(m), axis=0).max() > 40, demo_data.CLASS_NAMES[c]


def test_cli_and_check_pass(tmp_path, capsys):
    out = str(tmp_path / 'cli')
    assert demo_data.main(['--out', out, '--num-train', '4', '--num-val', '1', '--seed', '1',
                           '--min-size', '61', '--max-size', '64']) == 0
    assert 'train: 4 images' in capsys.readouterr().out
    for ex in load_examples(os.path.join(out, 'train.txt'), out):
        assert 61 <= min(read_label(ex.label).shape) and max(read_label(ex.label).shape) <= 64
    assert tools.main(['check', '--data-dir', out, '--data-list', os.path.join(out, 'train.txt'),
                       '--num-classes', str(demo_data.NUM_CLASSES), '--quiet']) == 0
    assert 'striped_disc' in capsys.readouterr().out
    assert demo_data.main(['--out', out, '--min-size', '90', '--max-size', '80']) == 2
