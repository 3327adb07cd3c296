"""dataset.json (deeplab_resnet.data.descriptor) and dataset palettes
(deeplab_resnet.data.colormap)."""
import json
import os

import numpy as np
import pytest

from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data import colormap, descriptor


def _write(tmp_path, **overrides):
    (tmp_path / 'data').mkdir(exist_ok=True)
    d = descriptor.write(str(tmp_path / 'meta' / 'dataset.json') if overrides.pop('nested', False)
                         else str(tmp_path / 'dataset.json'), 'toy', str(tmp_path / 'data'), 3,
                         ['bg', 'cat', 'dog'], [[0, 0, 0], [10, 20, 30], (1, 2, 3)],
                         {'train': str(tmp_path / 'train.txt')}, server_ids=[0, 7, 9],
                         **overrides)
    return d


def test_written_descriptor_is_relative_and_reads_back(tmp_path):
    (tmp_path / 'meta').mkdir()
    d = _write(tmp_path, nested=True)
    raw = json.load(open(str(tmp_path / 'meta' / 'dataset.json')))
    assert raw['data_dir'] == os.path.join('..', 'data')
    assert raw['splits'] == {'train': os.path.join('..', 'train.txt')}
    assert d.data_dir == str(tmp_path / 'data')
    assert d.palette == [[0, 0, 0], [10, 20, 30], [1, 2, 3]]
    assert d.server_ids == [0, 7, 9] and d.img_mean is None and d.ignore_label == 255
    # The dataset moves as a whole: paths follow the descriptor.
    moved = tmp_path / 'moved'
    os.rename(str(tmp_path / 'meta'), str(moved))
    assert descriptor.read(str(moved / 'dataset.json')).splits['train'] == str(tmp_path / 'train.txt')
    assert descriptor.split_list(d, 'train') == str(tmp_path / 'train.txt')
    with pytest.raises(InputError, match='no split "val" \\(it has: train\\)'):
        descriptor.split_list(d, 'val')


@pytest.mark.parametrize('change, message', [
    (lambda raw: raw.pop('palette'), 'no "palette"'),
    (lambda raw: raw.update(num_classes=0), '"num_classes" must be an integer in 1..256'),
    (lambda raw: raw.update(class_names=['a']), '"class_names" must be a list of 3'),
    (lambda raw: raw['palette'].append([1, 1, 1]), '"palette" must be a list of 3'),
    (lambda raw: raw['palette'].__setitem__(0, [0, 0, 256]), '"palette" must be a list of 3 int'),
    (lambda raw: raw.update(server_ids=[1, 2]), '"server_ids" must be a list of 3'),
    (lambda raw: raw.update(ignore_label=2), '"ignore_label" must be an integer in 3..255'),
    (lambda raw: raw.update(img_mean=[1, 2]), '"img_mean" must be three numbers'),
])
def test_malformed_descriptor_is_one_line_naming_the_field(tmp_path, change, message):
    path = _write(tmp_path).path
    raw = json.load(open(path))
    change(raw)
    json.dump(raw, open(path, 'w'))
    with pytest.raises(InputError) as e:
        descriptor.read(path)
    assert str(e.value).startswith(path + ': ') and message in str(e.value)
    assert '\n' not in str(e.value)


def test_missing_or_non_json_descriptor(tmp_path):
    with pytest.raises(InputError, match='dataset descriptor not found'):
        descriptor.read(str(tmp_path / 'nope.json'))
    (tmp_path / 'bad.json').write_text('[1, 2')
    with pytest.raises(InputError, match='not a readable JSON'):
        descriptor.read(str(tmp_path / 'bad.json'))


def test_colourise_with_a_dataset_palette():
    labels = np.array([[0, 1], [2, 255]])
    rgb = colormap.colourise(labels, 3, palette=[[9, 8, 7], [1, 2, 3], [200, 100, 50]])
    assert rgb.tolist() == [[[9, 8, 7], [1, 2, 3]], [[200, 100, 50], list(colormap.IGNORE_COLOUR)]]
    # Without a palette: VOC colours (class 1 aeroplane is (128, 0, 0)).
    assert colormap.colourise(labels, 3)[0, 1].tolist() == [128, 0, 0]
    with pytest.raises(ValueError, match='a palette of 1 colours for 3 classes'):
        colormap.label_colours(3, [[0, 0, 0]])


def test_palette_file_round_trip(tmp_path):
    colours = np.array([[0, 0, 0], [128, 64, 128], [5, 6, 7]])
    path = colormap.write_palette_file(str(tmp_path / 'p.txt'), colours, ['a', 'b', 'c'])
    read, indices = colormap.read_palette_file(path)
    assert read.tolist() == colours.tolist() + [list(colormap.IGNORE_COLOUR)]
    assert indices.tolist() == [0, 1, 2, 255]
    assert colormap.class_palette(read, indices, 3, path).tolist() == colours.tolist()
    with pytest.raises(InputError, match='no colour for class\\(es\\) 3, 4 of 5'):
        colormap.class_palette(read, indices, 5, path)
