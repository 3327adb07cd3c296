"""dataset.tools cityscapes / ade20k / cocostuff164k / cocostuff10k on generated trees in each
download's layout (every edge value present, odd and even sizes, decoy files). Expectations
are written here from the datasets' own definitions, not taken from the code under test.
NumPy / PIL / SciPy only."""
import os
import signal

import numpy as np
import pytest
import scipy.io
from PIL import Image

from dataset import ade20k, builder, cityscapes, cocostuff, tools
from deeplab_resnet.data import descriptor
from deeplab_resnet.data.datalist import load_examples, parse_list

# cityscapesScripts helpers/labels.py: id -> trainId of the 19 trained labels; other ids 255.
CITYSCAPES_ID_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                          23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
SIZES = ((9, 14), (10, 13), (11, 12))   # odd and even heights and widths


def _jpeg(path, h, w, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


def _png(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def _values(shape, seed, pool, edges):
    """[H, W] drawn from `pool`, with every value of `edges` present."""
    rng = np.random.default_rng(seed)
    v = rng.choice(np.asarray(pool), size=shape)
    v.ravel()[:len(edges)] = edges
    return v


def _read(path):
    img = Image.open(path)
    assert img.mode == 'L', path
    return np.asarray(img)


# ---------------------------------------------------------------- generated downloads

def make_cityscapes(root):
    """leftImg8bit/ + gtFine/ as the zips unpack; returns {image rel path: expected trainIds}.
    Ids 0..33 only: labelIds PNGs are uint8, and labels.py's -1 (license plate) is never drawn
    into them."""
    expected = {}
    k = 0
    for split, cities in (('train', ('aachen', 'bremen')), ('val', ('lindau',)),
                          ('test', ('berlin',))):
        for city in cities:
            for frame in range(2 if split != 'test' else 1):
                h, w = SIZES[k % 3]
                stem = '%s_%06d_%06d' % (city, k, 19)
                image = 'leftImg8bit/%s/%s/%s_leftImg8bit.png' % (split, city, stem)
                _png(os.path.join(root, image),
                     np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8))
                gt = os.path.join(root, 'gtFine', split, city, stem + '_gtFine_')
                ids = (np.zeros((h, w), np.uint8) if split == 'test'
                       else _values((h, w), k, range(34), [0, 33, 7, 24, 1]).astype(np.uint8))
                _png(gt + 'labelIds.png', ids, 'L')
                # decoys beside it: colour, instance ids, polygons
                _png(gt + 'color.png', np.zeros((h, w, 4), np.uint8))
                _png(gt + 'instanceIds.png', ids.astype(np.uint16) * 1000 + 1)   # 16-bit
                with open(gt + 'polygons.json', 'w') as f:
                    f.write('{"imgHeight": %d, "imgWidth": %d, "objects": []}' % (h, w))
                expected[image] = (None if split == 'test' else np.vectorize(
                    lambda i: CITYSCAPES_ID_TO_TRAIN.get(int(i), 255))(ids).astype(np.uint8))
                k += 1
    return expected


def make_ade20k(root):
    expected = {}
    k = 0
    for folder, prefix, count in (('training', 'ADE_train_', 3), ('validation', 'ADE_val_', 2)):
        for n in range(1, count + 1):
            h, w = SIZES[k % 3]
            stem = '%s%08d' % (prefix, n)
            _jpeg(os.path.join(root, 'images', folder, stem + '.jpg'), h, w, k)
            stored = _values((h, w), k, range(151), [0, 150, 1]).astype(np.uint8)
            _png(os.path.join(root, 'annotations', folder, stem + '.png'), stored, 'L')
            expected['images/%s/%s.jpg' % (folder, stem)] = np.where(
                stored == 0, 255, stored.astype(np.int64) - 1).astype(np.uint8)
            k += 1
    for decoy in ('objectInfo150.txt', 'sceneCategories.txt'):
        with open(os.path.join(root, decoy), 'w') as f:
            f.write('decoy\n')
    return expected


def make_cocostuff164k(root):
    expected = {}
    k = 0
    for split, count in (('train2017', 3), ('val2017', 2)):
        for n in range(count):
            h, w = SIZES[k % 3]
            stem = '%012d' % (1000 * k + 9)
            _jpeg(os.path.join(root, 'images', split, stem + '.jpg'), h, w, k)
            stored = _values((h, w), k, list(range(182)) + [255], [0, 181, 255]).astype(np.uint8)
            _png(os.path.join(root, 'annotations', split, stem + '.png'), stored, 'L')
            expected['images/%s/%s.jpg' % (split, stem)] = stored
            k += 1
    return expected


def make_cocostuff10k(root):
    expected = {}
    lists = {'train': [], 'test': []}
    for k in range(5):
        h, w = SIZES[k % 3]
        split = 'train' if k < 3 else 'test'
        i = 'COCO_%s2014_%012d' % ('train' if k % 2 == 0 else 'val', 77 + k)
        lists[split].append(i)
        _jpeg(os.path.join(root, 'images', i + '.jpg'), h, w, k)
        s = _values((h, w), k, range(183), [0, 182, 1]).astype(np.uint16)
        os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
        scipy.io.savemat(os.path.join(root, 'annotations', i + '.mat'),
                         {'S': s, 'names': np.array(['unlabeled', 'person'], dtype=object),
                          'captions': np.array(['a decoy'], dtype=object)})
        expected['images/%s.jpg' % i] = np.where(s == 0, 255, s.astype(np.int64) - 1).astype(
            np.uint8)
    os.makedirs(os.path.join(root, 'imageLists'))
    for split, ids in list(lists.items()) + [('all', lists['train'] + lists['test'])]:
        with open(os.path.join(root, 'imageLists', split + '.txt'), 'w') as f:
            f.write(''.join(i + '\n' for i in ids))
    return expected


# name, generator, spec, lists expected: {list: image path prefix}, class count
CASES = {
    'cityscapes': (make_cityscapes, cityscapes.SPEC,
                   {'train': 'leftImg8bit/train/', 'val': 'leftImg8bit/val/',
                    'test': 'leftImg8bit/test/'}, 19),
    'ade20k': (make_ade20k, ade20k.SPEC,
               {'train': 'images/training/', 'val': 'images/validation/'}, 150),
    'cocostuff164k': (make_cocostuff164k, cocostuff.SPEC_164K,
                      {'train': 'images/train2017/', 'val': 'images/val2017/'}, 182),
    'cocostuff10k': (make_cocostuff10k, cocostuff.SPEC_10K, None, 182),
}


def _tree(tmp_path, name):
    root = str(tmp_path / ('download_' + name))
    os.makedirs(root)
    return root, CASES[name][0](root)


def _snapshot(folder):
    """Every path under folder with its size and mtime (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def _check_outputs(root, out, name, expected):
    _, spec, prefixes, num_classes = CASES[name]
    desc = descriptor.read(os.path.join(out, 'dataset.json'))
    assert desc.num_classes == num_classes and desc.ignore_label == 255
    assert len(desc.class_names) == num_classes and len(desc.palette) == num_classes
    assert desc.data_dir == out
    if name == 'cocostuff10k':
        lists = {'train': [l.split()[0] for l in open(os.path.join(root, 'imageLists/train.txt'))],
                 'test': [l.split()[0] for l in open(os.path.join(root, 'imageLists/test.txt'))]}
        members = {s: ['images/%s.jpg' % i for i in ids] for s, ids in lists.items()}
    else:
        members = {s: sorted(p for p in expected if p.startswith(prefix))
                   for s, prefix in prefixes.items()}
    assert sorted(desc.splits) == sorted(members)
    for split, images in members.items():
        assert desc.splits[split] == os.path.join(out, split + '.txt')
        labelled = expected[images[0]] is not None
        examples = (load_examples if labelled else parse_list)(
            desc.splits[split], desc.data_dir, need_labels=labelled)
        assert [os.path.relpath(e.image, out) for e in examples] == images
        for e in examples:
            assert os.path.samefile(e.image, os.path.join(root, os.path.relpath(e.image, out)))
            if not labelled:
                assert e.label is None
                continue
            np.testing.assert_array_equal(_read(e.label), expected[os.path.relpath(e.image,
                                                                                  out)])
    return desc


# ---------------------------------------------------------------- conversions


@pytest.mark.parametrize('name', sorted(CASES))
def test_conversion_matches_the_definition_pixel_for_pixel(tmp_path, name, capsys):
    root, expected = _tree(tmp_path, name)
    assert tools.main([name, '--root', root]) == 0
    out = os.path.join(root, 'deeplab')
    _check_outputs(root, out, name, expected)
    captured = capsys.readouterr()
    assert 'descriptor: %s' % os.path.join(out, 'dataset.json') in captured.out
    labelled = sum(v is not None for v in expected.values())
    assert '%s %d/%d ' % (name, labelled, labelled) in captured.err     # the progress line
    print(captured.out)   # shown with -s: the summary on the generated tree


def test_cityscapes_labels_go_beside_the_originals(tmp_path):
    root, expected = _tree(tmp_path, 'cityscapes')
    builder.build(cityscapes.SPEC, root, progress=False)
    beside = [os.path.join(dp, n) for dp, _, names in os.walk(os.path.join(root, 'gtFine'))
              for n in names if n.endswith('_gtFine_labelTrainIds.png')]
    assert len(beside) == sum(v is not None for v in expected.values()) == 6
    with open(os.path.join(root, 'deeplab', 'train.txt')) as f:
        first = f.readline().split()
    assert first == ['leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png',
                     'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png']


@pytest.mark.parametrize('name', sorted(CASES))
def test_read_only_root_with_out_elsewhere(tmp_path, name):
    root, expected = _tree(tmp_path, name)
    before = _snapshot(root)
    out = str(tmp_path / 'elsewhere' / 'out')
    builder.build(CASES[name][1], root, out, progress=False)
    assert _snapshot(root) == before          # nothing written, renamed or linked in ROOT
    desc = _check_outputs(root, out, name, expected)
    # The lists are relative to OUT: the data directory moves with it (links are absolute
    # when OUT is outside ROOT).
    moved = str(tmp_path / 'moved')
    os.rename(out, moved)
    assert descriptor.read(os.path.join(moved, 'dataset.json')).data_dir == moved
    assert desc.num_classes == CASES[name][3]


def test_restart_skips_finished_labels(tmp_path):
    root, _ = _tree(tmp_path, 'ade20k')
    out = str(tmp_path / 'out')
    first = builder.build(ade20k.SPEC, root, out, progress=False)
    assert (first.written, first.skipped) == (5, 0)
    labels = os.path.join(out, 'labels', 'training')
    kept = os.path.join(labels, 'ADE_train_00000001.png')
    stamp = os.stat(kept).st_mtime_ns
    os.remove(os.path.join(labels, 'ADE_train_00000002.png'))          # "stopped" before it
    with open(os.path.join(labels, 'ADE_train_00000002.png.part'), 'wb') as f:
        f.write(b'half a png')                                           # killed mid-write
    second = builder.build(ade20k.SPEC, root, out, progress=False)
    assert (second.written, second.skipped) == (1, 4)
    assert os.stat(kept).st_mtime_ns == stamp
    assert not os.path.exists(os.path.join(labels, 'ADE_train_00000002.png.part'))
    assert _read(os.path.join(labels, 'ADE_train_00000002.png')).shape == SIZES[1]


def test_stopped_run_keeps_whole_labels_and_the_next_finishes(tmp_path, capsys, monkeypatch):
    root, expected = _tree(tmp_path, 'cocostuff10k')
    real = builder.write_mode_l_png
    calls = []

    def stop_on_third(path, labels):
        calls.append(path)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)   # the handler stops the run here
        real(path, labels)

    monkeypatch.setattr(builder, 'write_mode_l_png', stop_on_third)
    assert tools.main(['cocostuff10k', '--root', root, '--quiet']) == 130
    assert 'stopped: every label written so far is whole' in capsys.readouterr().err
    labels = os.path.join(root, 'deeplab', 'labels')
    assert sorted(os.listdir(labels)) == sorted(os.path.basename(p) for p in calls[:2])
    assert not os.path.exists(os.path.join(root, 'deeplab', 'dataset.json'))
    monkeypatch.setattr(builder, 'write_mode_l_png', real)
    assert tools.main(['cocostuff10k', '--root', root, '--quiet']) == 0
    assert 'labels: 3 written, 2 already there (skipped)' in capsys.readouterr().out
    _check_outputs(root, os.path.join(root, 'deeplab'), 'cocostuff10k', expected)


def test_cocostuff164k_no_scan_lists_without_decoding(tmp_path, capsys):
    root, _ = _tree(tmp_path, 'cocostuff164k')
    bad = os.path.join(root, 'annotations', 'val2017', '%012d.png' % 3009)
    _png(bad, np.full((9, 14), 200, np.uint8), 'L')
    assert tools.main(['cocostuff164k', '--root', root, '--quiet', '--no-scan']) == 0
    assert 'not checked (--no-scan)' in capsys.readouterr().out
    assert tools.main(['cocostuff164k', '--root', root, '--quiet']) == 2
    assert '%s: label value(s) outside the COCO-Stuff 164k values 0..181 and 255: 200 (126 px)' \
        % bad in capsys.readouterr().err


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize('name, remove, named', [
    ('cityscapes', 'gtFine', 'gtFine'),
    ('cityscapes', 'leftImg8bit/val', 'leftImg8bit/val'),
    ('ade20k', 'annotations/validation', 'annotations/validation'),
    ('cocostuff164k', 'annotations', 'annotations'),
    ('cocostuff10k', 'imageLists/test.txt', 'imageLists/test.txt'),
])
def test_root_that_is_not_the_dataset_names_what_is_missing(tmp_path, capsys, name, remove,
                                                           named):
    import shutil
    root, _ = _tree(tmp_path, name)
    target = os.path.join(root, remove)
    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
    assert tools.main([name, '--root', root, '--quiet']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith('error: %s: not found, so this is not a %s root (expected '
                             % (os.path.join(root, named), name))
    assert not os.path.exists(os.path.join(root, 'deeplab'))


def test_root_one_level_too_high_says_which_folder(tmp_path, capsys):
    root, _ = _tree(tmp_path, 'ade20k')
    parent = os.path.dirname(root)
    assert tools.main(['ade20k', '--root', parent, '--quiet']) == 2
    assert capsys.readouterr().err.strip().endswith('; did you mean --root %s?' % root)


@pytest.mark.parametrize('name, value, where', [
    ('cityscapes', 34, 'gtFine/val/lindau/lindau_000004_000019_gtFine_labelIds.png'),
    ('ade20k', 151, 'annotations/validation/ADE_val_00000002.png'),
    ('cocostuff164k', 182, 'annotations/val2017/000000004009.png'),
    ('cocostuff10k', 183, 'annotations/COCO_train2014_000000000081.mat'),
])
def test_label_value_outside_the_definition_names_file_and_value(tmp_path, capsys, name,
                                                                  value, where):
    root, _ = _tree(tmp_path, name)
    path = os.path.join(root, where)
    if where.endswith('.mat'):
        s = scipy.io.loadmat(path)['S']
        s[2, 3] = value
        scipy.io.savemat(path, {'S': s})
    else:
        labels = np.asarray(Image.open(path)).copy()
        labels[2, 3] = value
        _png(path, labels, 'L')
    assert tools.main([name, '--root', root, '--quiet']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith('error: 1 label file(s) not converted: %s: label value(s) outside '
                             'the ' % path)
    assert err[0].endswith(': %d (1 px)' % value)
    assert not os.path.exists(os.path.join(root, 'deeplab', 'dataset.json'))


@pytest.mark.parametrize('name, empty, expect', [
    ('cityscapes', 'leftImg8bit/val', 'leftImg8bit/val: no images for split val'),
    ('ade20k', 'images/training', 'images/training: no images for split train'),
    ('cocostuff164k', 'images/val2017', 'images/val2017: no images for split val'),
    ('cocostuff10k', 'imageLists/train.txt', 'imageLists/train.txt: no images for split train'),
])
def test_split_with_no_images(tmp_path, capsys, name, empty, expect):
    import shutil
    root, _ = _tree(tmp_path, name)
    target = os.path.join(root, empty)
    if os.path.isdir(target):
        shutil.rmtree(target)
        os.makedirs(target)
    else:
        open(target, 'w').close()
    assert tools.main([name, '--root', root, '--quiet']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: %s/%s' % (root, expect)), err


def test_missing_label_or_wrong_size_is_one_line(tmp_path, capsys):
    root, _ = _tree(tmp_path, 'ade20k')
    missing = os.path.join(root, 'annotations', 'training', 'ADE_train_00000002.png')
    os.rename(missing, missing + '.moved')
    assert tools.main(['ade20k', '--root', root, '--quiet']) == 2
    assert capsys.readouterr().err == 'error: 1 image(s) or label(s) missing: %s\n' % missing
    os.rename(missing + '.moved', missing)
    _png(missing, np.zeros((5, 6), np.uint8), 'L')
    assert tools.main(['ade20k', '--root', root, '--quiet']) == 2
    assert capsys.readouterr().err == (
        'error: 1 label file(s) not converted: %s: label is 6x5 but image %s is 13x10 (width x '
        'height)\n' % (missing, os.path.join(root, 'images', 'training',
                                              'ADE_train_00000002.jpg')))


# ---------------------------------------------------------------- names, colours, ids


def test_names_colours_and_server_ids_follow_the_definitions():
    # Cityscapes: labels.py's first and last trained labels, and trainId -> id -> trainId.
    assert cityscapes.SPEC.class_names[0] == 'road' and cityscapes.SPEC.palette[0] == [128, 64,
                                                                                       128]
    assert cityscapes.SPEC.class_names[18] == 'bicycle'
    assert cityscapes.SPEC.palette[18] == [119, 11, 32]
    assert {i: t for t, i in enumerate(cityscapes.SPEC.server_ids)} == CITYSCAPES_ID_TO_TRAIN
    # ADE20K: objectInfo150 Idx 1, 2, 150; color150 rows 1, 2 and 150.
    spec = ade20k.SPEC
    assert (spec.class_names[0], spec.class_names[1], spec.class_names[149]) == (
        'wall', 'building', 'flag')
    assert spec.palette[0] == [120, 120, 120] and spec.palette[1] == [180, 120, 120]
    assert spec.palette[149] == [92, 0, 255]
    assert len(set(spec.class_names)) == 150 and spec.server_ids == list(range(1, 151))
    # COCO-Stuff: labels.txt 1 person ... 182 wood; unused things keep their names.
    names = cocostuff.SPEC_164K.class_names
    assert (names[0], names[181], names[11], names[90]) == ('person', 'wood', 'street sign',
                                                           'hair brush')
    assert [names[i] for i in cocostuff.UNSUPERVISED] == [
        'street sign', 'hat', 'shoe', 'eye glasses', 'plate', 'mirror', 'window', 'desk', 'door',
        'blender', 'hair brush']
    palette = np.array(cocostuff.PALETTE, dtype=np.int64)
    assert palette.shape == (182, 3)
    distance = np.sqrt(((palette[:, None] - palette[None]) ** 2).sum(-1))
    np.fill_diagonal(distance, 999)
    assert distance.min() >= 51                 # distinguishable, as documented
    assert not (palette == (224, 224, 192)).all(1).any()   # not the ignore colour


def test_conversion_benchmark_runs(capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), 'benchmarks'))
    import dataset_convert
    assert dataset_convert.main(['--files', '1', '--repeats', '1']) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:5]]
    assert [r[:2] for r in rows] == [['cocostuff164k', 'scan'], ['ade20k', 'convert'],
                                     ['cityscapes', 'convert']]
    assert [r[2] for r in rows] == ['640x480', '683x512', '2048x1024']
    assert all(float(r[3]) > 0 for r in rows)
