"""dataset.tools: voc (VOC 2012 + SBD -> SegmentationClassAug), rgb2index, check."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from dataset import check, rgb2index, tools, voc_aug
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data import descriptor
from deeplab_resnet.data.colormap import colourise, voc_palette_flat
from deeplab_resnet.data.datalist import load_examples, parse_list

# ----------------------------------------------------------------------------- helpers


def _jpeg(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)


def _palette_png(path, labels):
    img = Image.fromarray(labels.astype(np.uint8), mode='P')
    img.putpalette(voc_palette_flat())
    img.save(path)


def _labels(h, w, seed, num_classes=21, with_ignore=True):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, num_classes, (h, w)).astype(np.uint8)
    if with_ignore:
        lab[0, :] = 255
    return lab


def _read_png_indices(path):
    img = Image.open(path)
    assert img.mode == 'P'
    return np.asarray(img)


def _write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(x + '\n' for x in lines))


VOC_TRAIN = ['a', 'b', 'c']
VOC_VAL = ['d', 'e']
SBD_TRAIN = ['a', 'f', 'g', 'd', 'f']        # 'd' is VOC val, 'f' twice
SBD_VAL = ['h', 'b']                          # 'b' is also VOC train
VOC_TEST = ['t1', 't2']                       # only t1 has an image


def _size(i):
    n = sum(map(ord, i))
    return 9 + n % 4, 12 + n % 3              # odd and even sizes


@pytest.fixture
def voc_tree(tmp_path):
    """A VOC-like and an SBD-like tree; returns (voc_root, sbd_root, sources)."""
    voc = tmp_path / 'VOCdevkit' / 'VOC2012'
    sbd = tmp_path / 'benchmark_RELEASE'
    for d in (voc / 'JPEGImages', voc / 'SegmentationClass', voc / 'ImageSets' / 'Segmentation',
              sbd / 'dataset' / 'cls'):
        d.mkdir(parents=True)
    sources = {}
    ids = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL + ['t1']))
    for k, i in enumerate(ids):
        h, w = _size(i)
        _jpeg(str(voc / 'JPEGImages' / (i + '.jpg')), h, w, seed=k)
    for k, i in enumerate(VOC_TRAIN + VOC_VAL):
        lab = _labels(*_size(i), seed=100 + k)
        _palette_png(str(voc / 'SegmentationClass' / (i + '.png')), lab)
        sources[i] = lab
    for k, i in enumerate(sorted(set(SBD_TRAIN + SBD_VAL))):
        lab = _labels(*_size(i), seed=200 + k, with_ignore=False)
        scipy.io.savemat(str(sbd / 'dataset' / 'cls' / (i + '.mat')),
                         {'GTcls': {'Segmentation': lab,
                                    'CategoriesPresent': np.unique(lab[lab > 0])}})
        sources.setdefault(i, lab)            # VOC's own mask wins where both exist
    _write_lines(str(voc / 'ImageSets' / 'Segmentation' / 'train.txt'), VOC_TRAIN)
    _write_lines(str(voc / 'ImageSets' / 'Segmentation' / 'val.txt'), VOC_VAL)
    _write_lines(str(voc / 'ImageSets' / 'Segmentation' / 'test.txt'), VOC_TEST)
    _write_lines(str(sbd / 'dataset' / 'train.txt'), SBD_TRAIN)
    _write_lines(str(sbd / 'dataset' / 'val.txt'), SBD_VAL + [''])
    return str(voc), str(sbd), sources


def _ids(list_path):
    with open(list_path) as f:
        return [os.path.basename(line.split()[0])[:-4] for line in f if line.strip()]


# ----------------------------------------------------------------------------- voc


def test_voc_builds_lists_and_index_pngs(voc_tree, tmp_path, capsys):
    voc, sbd, sources = voc_tree
    out = str(tmp_path / 'out')
    assert tools.main(['voc', '--voc-root', voc, '--sbd-root', sbd, '--out', out,
                       '--quiet']) == 0
    printed = capsys.readouterr().out
    # (SBD train + SBD val + VOC train) - VOC val, de-duplicated: a b c f g h.
    expected_aug = sorted(set(SBD_TRAIN + SBD_VAL + VOC_TRAIN) - set(VOC_VAL))
    assert expected_aug == ['a', 'b', 'c', 'f', 'g', 'h']
    assert _ids(os.path.join(out, 'train_aug.txt')) == expected_aug
    assert _ids(os.path.join(out, 'train.txt')) == VOC_TRAIN
    assert _ids(os.path.join(out, 'val.txt')) == VOC_VAL
    assert not set(_ids(os.path.join(out, 'train_aug.txt'))) & set(VOC_VAL)
    assert 'train_aug      6' in printed and 'val            2' in printed

    with open(os.path.join(out, 'train_aug.txt')) as f:
        assert f.readline() == '/JPEGImages/a.jpg /SegmentationClassAug/a.png\n'
    with open(os.path.join(out, 'test.txt')) as f:
        assert f.read() == '/JPEGImages/t1.jpg\n/JPEGImages/t2.jpg\n'

    # The lists resolve under the data dir (JPEGImages is a link to VOC's).
    for name in ('train_aug', 'train', 'val'):
        examples = load_examples(os.path.join(out, name + '.txt'), out)
        for ex in examples:
            i = os.path.basename(ex.image)[:-4]
            got = _read_png_indices(ex.label)
            np.testing.assert_array_equal(got, sources[i])
            assert np.asarray(Image.open(ex.image)).shape[:2] == got.shape
    # VOC's mask (with its 255 border) is used for 'a', not SBD's.
    assert (_read_png_indices(os.path.join(out, 'SegmentationClassAug', 'a.png')) == 255).any()
    # dataset.json: VOC's names and colours, each list a split, the data dir the lists use.
    desc = descriptor.read(os.path.join(out, 'dataset.json'))
    assert (desc.name, desc.data_dir, desc.num_classes) == ('voc', out, 21)
    assert desc.class_names[15] == 'person' and desc.palette[15] == [192, 128, 128]
    assert desc.splits == {n: os.path.join(out, n + '.txt')
                           for n in ('train_aug', 'train', 'val', 'test')}
    assert 'descriptor: %s' % desc.path in printed


def test_voc_default_out_is_voc_root_and_dataset_dir_accepted(voc_tree):
    voc, sbd, _ = voc_tree
    assert tools.main(['voc', '--voc-root', voc, '--sbd-root', os.path.join(sbd, 'dataset'),
                       '--quiet']) == 0
    assert len(load_examples(os.path.join(voc, 'train_aug.txt'), voc)) == 6


@pytest.mark.parametrize('remove, named', [
    (('sbd', 'dataset/cls/h.mat'), 'h.mat'),
    (('voc', 'ImageSets/Segmentation/val.txt'), 'val.txt'),
    (('voc', 'JPEGImages/g.jpg'), 'g.jpg'),
])
def test_voc_missing_input_fails_naming_it(voc_tree, tmp_path, capsys, remove, named):
    voc, sbd, _ = voc_tree
    os.remove(os.path.join(voc if remove[0] == 'voc' else sbd, remove[1]))
    out = str(tmp_path / 'out')
    assert tools.main(['voc', '--voc-root', voc, '--sbd-root', sbd, '--out', out,
                       '--quiet']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and named in err[0]
    assert not os.path.exists(os.path.join(out, 'train_aug.txt'))


def test_voc_missing_folder(voc_tree, tmp_path, capsys):
    voc, _, _ = voc_tree
    assert tools.main(['voc', '--voc-root', voc, '--sbd-root', str(tmp_path / 'nope'),
                       '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'nope' in err and 'benchmark_RELEASE' in err


def test_load_sbd_cls_rejects_other_layout(tmp_path):
    path = str(tmp_path / 'x.mat')
    scipy.io.savemat(path, {'GTinst': {'Segmentation': np.zeros((3, 3), np.uint8)}})
    with pytest.raises(InputError, match='x.mat.*GTcls'):
        voc_aug.load_sbd_cls(path)


# ----------------------------------------------------------------------------- rgb2index


def test_rgb2index_round_trip(tmp_path):
    src = tmp_path / 'rgb'
    src.mkdir()
    maps = {}
    for k in range(2):
        lab = _labels(11 + k, 14, seed=k)
        maps['m%d' % k] = lab
        Image.fromarray(colourise(lab, 21)).save(str(src / ('m%d.png' % k)))
    out = str(tmp_path / 'idx')
    assert tools.main(['rgb2index', '--in', str(src), '--out', out, '--quiet']) == 0
    for name, lab in maps.items():
        np.testing.assert_array_equal(_read_png_indices(os.path.join(out, name + '.png')), lab)


def test_rgb2index_unknown_colour_fails_naming_file_and_colour(tmp_path, capsys):
    lab = _labels(8, 9, seed=3)
    rgb = colourise(lab, 21)
    rgb[2, 3] = (1, 2, 3)
    path = str(tmp_path / 'bad.png')
    Image.fromarray(rgb).save(path)
    out = str(tmp_path / 'idx')
    assert tools.main(['rgb2index', '--in', path, '--out', out, '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'bad.png' in err and '(1, 2, 3)' in err
    assert not os.path.exists(os.path.join(out, 'bad.png'))
    # ... or becomes the ignore label on request.
    assert tools.main(['rgb2index', '--in', path, '--out', out, '--quiet',
                       '--unknown-to-ignore']) == 0
    got = _read_png_indices(os.path.join(out, 'bad.png'))
    expected = lab.copy()
    expected[2, 3] = 255
    np.testing.assert_array_equal(got, expected)


def test_rgb2index_palette_file(tmp_path):
    pal = tmp_path / 'pal.txt'
    pal.write_text('# three classes\n10 20 30\n200, 100, 0\n0 255 0\n255 255 255 255\n')
    colours, indices = rgb2index.read_palette_file(str(pal))
    lab = np.array([[0, 1, 2], [2, 255, 0]], np.uint8)
    table = {0: (10, 20, 30), 1: (200, 100, 0), 2: (0, 255, 0), 255: (255, 255, 255)}
    rgb = np.array([[table[v] for v in row] for row in lab], np.uint8)
    got, unknown = rgb2index.rgb_to_index(rgb, colours, indices)
    assert unknown == []
    np.testing.assert_array_equal(got, lab)
    pal.write_text('1 2 3\n1 2 3\n')
    with pytest.raises(InputError, match='more than once'):
        rgb2index.read_palette_file(str(pal))


# ----------------------------------------------------------------------------- check


@pytest.fixture
def good_tree(tmp_path):
    d = tmp_path / 'data'
    (d / 'img').mkdir(parents=True)
    (d / 'lab').mkdir()
    lines = []
    for k in range(3):
        h, w = 10 + k, 13
        _jpeg(str(d / 'img' / ('%d.jpg' % k)), h, w, seed=k)
        _palette_png(str(d / 'lab' / ('%d.png' % k)), _labels(h, w, seed=k, num_classes=5))
        lines.append('/img/%d.jpg /lab/%d.png' % (k, k))
    _write_lines(str(d / 'list.txt'), lines)
    return str(d)


def _check(d, capsys, num_classes=5):
    rc = tools.main(['check', '--data-dir', d, '--data-list', os.path.join(d, 'list.txt'),
                     '--num-classes', str(num_classes), '--quiet'])
    return rc, capsys.readouterr()


def test_check_good_tree(good_tree, capsys):
    rc, cap = _check(good_tree, capsys)
    assert rc == 0, cap.err
    assert 'problems: 0' in cap.out and 'checked 3 example(s)' in cap.out
    assert cap.err == ''


def _break_missing(d):
    os.remove(os.path.join(d, 'lab', '1.png'))
    return 'list.txt:2', '1.png'


def _break_rgb_mask(d):
    Image.fromarray(colourise(_labels(11, 13, seed=1, num_classes=5), 5)).save(
        os.path.join(d, 'lab', '1.png'))
    return 'list.txt:2', '1.png'


def _break_size(d):
    _palette_png(os.path.join(d, 'lab', '2.png'), np.zeros((5, 6), np.uint8))
    return 'list.txt:3', '2.png'


def _break_range(d):
    lab = _labels(10, 13, seed=0, num_classes=5)
    lab[4, 4] = 7
    _palette_png(os.path.join(d, 'lab', '0.png'), lab)
    return 'list.txt:1', '0.png'


def _break_line(d):
    with open(os.path.join(d, 'list.txt'), 'a') as f:
        f.write('/img/0.jpg /lab/0.png extra\n')
    return 'list.txt:4', 'malformed'


@pytest.mark.parametrize('breaker', [_break_missing, _break_rgb_mask, _break_size,
                                     _break_range, _break_line])
def test_check_bad_tree_exits_2_naming_file(good_tree, capsys, breaker):
    where, named = breaker(good_tree)
    rc, cap = _check(good_tree, capsys)
    assert rc == 2
    problems = [x for x in cap.err.splitlines() if x.startswith('problem: ')]
    assert len(problems) == 1, cap.err
    assert where in problems[0] and named in problems[0]
    assert 'problems: 1' in cap.out


def test_check_report_histogram(good_tree):
    report = check.check_dataset(good_tree, os.path.join(good_tree, 'list.txt'), 3,
                                 progress=False)
    assert report.histogram.sum() == 10 * 13 + 11 * 13 + 12 * 13
    assert len(report.problems) == 3     # values 3 and 4 are outside 0..2 in each mask
    assert all('outside 0..2' in p for p in report.problems)
    assert len(parse_list(os.path.join(good_tree, 'list.txt'), good_tree)) == 3


def test_check_size_problem_comes_from_the_label_validator(good_tree, capsys):
    _break_size(good_tree)
    rc, cap = _check(good_tree, capsys)
    assert rc == 2
    # deeplab_resnet.data.labels.size_mismatch's line (width x height), after 'LIST:LINE: '.
    assert 'list.txt:3: ' in cap.err and 'image is 13x12 but its label is 6x5' in cap.err


def test_check_num_classes_range(good_tree, capsys):
    rc, cap = _check(good_tree, capsys, num_classes=300)
    assert rc == 2 and 'error: --num-classes must be in 1..256, got 300' in cap.err
    with pytest.raises(SystemExit) as exit_info:
        _check(good_tree, capsys, num_classes=0)
    assert exit_info.value.code == 2
    assert '--num-classes' in capsys.readouterr().err


def _check_names(d, capsys, *extra):
    rc = tools.main(['check', '--data-dir', d, '--data-list', os.path.join(d, 'list.txt'),
                     '--num-classes', '5', '--quiet'] + list(extra))
    return rc, capsys.readouterr()


def test_check_class_names(good_tree, tmp_path, capsys):
    rc, cap = _check_names(good_tree, capsys)
    assert rc == 0 and 'class_4' in cap.out
    # DATA_DIR/class_names.txt is used when it holds --num-classes names, else ignored.
    _write_lines(os.path.join(good_tree, 'class_names.txt'), ['n%d' % i for i in range(5)])
    rc, cap = _check_names(good_tree, capsys)
    assert rc == 0 and 'n4' in cap.out
    _write_lines(os.path.join(good_tree, 'class_names.txt'), ['n0', 'n1'])
    rc, cap = _check_names(good_tree, capsys)
    assert rc == 0 and 'class_4' in cap.out
    # An explicit --class-names must hold --num-classes names (and exist).
    names = str(tmp_path / 'names.txt')
    _write_lines(names, ['a', 'b', 'c'])
    rc, cap = _check_names(good_tree, capsys, '--class-names', names)
    assert rc == 2 and cap.err.startswith('error: ') and 'names.txt' in cap.err
    assert '3 class names for 5 classes' in cap.err
    rc, cap = _check_names(good_tree, capsys, '--class-names', str(tmp_path / 'nope.txt'))
    assert rc == 2 and 'nope.txt' in cap.err


def test_tools_load_without_tensorflow():
    code = ('import sys; from dataset import tools; '
            'sys.exit("tensorflow" in sys.modules)')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert subprocess.run([sys.executable, '-c', code], cwd=root).returncode == 0


def test_rgb2index_writes_the_palette_it_used(tmp_path, capsys):
    pal = tmp_path / 'pal.txt'
    pal.write_text('10 20 30\n200 100 0\n0 255 0\n255 255 255 255\n')
    lab = np.array([[0, 1, 2], [2, 255, 0]], np.uint8)
    table = {0: (10, 20, 30), 1: (200, 100, 0), 2: (0, 255, 0), 255: (255, 255, 255)}
    Image.fromarray(np.array([[table[v] for v in row] for row in lab], np.uint8)).save(
        str(tmp_path / 'm.png'))
    out = str(tmp_path / 'idx')
    assert tools.main(['rgb2index', '--in', str(tmp_path / 'm.png'), '--out', out,
                       '--palette', str(pal), '--quiet']) == 0
    written = os.path.join(out, 'palette.txt')
    assert 'palette used: %s' % written in capsys.readouterr().out
    colours, indices = rgb2index.read_palette_file(written)
    assert {int(i): tuple(int(v) for v in c) for c, i in zip(colours, indices)} == table
    # Default (VOC) palette: 21 classes and the void colour come back.
    assert tools.main(['rgb2index', '--in', str(tmp_path / 'm.png'), '--out', out,
                       '--unknown-to-ignore', '--quiet']) == 0
    colours, indices = rgb2index.read_palette_file(written)
    assert len(colours) == 22 and tuple(colours[15]) == (192, 128, 128)
    assert tuple(colours[indices == 255][0]) == (224, 224, 192)


def _expected_stats(d, num_classes):
    """Images per class and the B,G,R mean, computed here from the files."""
    per_class = np.zeros(num_classes, int)
    total = np.zeros(3)
    pixels = 0
    for k in range(3):
        lab = np.asarray(Image.open(os.path.join(d, 'lab', '%d.png' % k)))
        for c in np.unique(lab):
            if c < num_classes:
                per_class[c] += 1
        img = np.asarray(Image.open(os.path.join(d, 'img', '%d.jpg' % k)).convert('RGB'))
        total += img.reshape(-1, 3).astype(np.float64).sum(0)
        pixels += img.shape[0] * img.shape[1]
    return per_class, (total / pixels)[::-1]


def test_check_images_per_class_mean_and_absent_classes(good_tree, capsys):
    rc = tools.main(['check', '--data-dir', good_tree, '--data-list',
                     os.path.join(good_tree, 'list.txt'), '--num-classes', '7', '--quiet'])
    out = capsys.readouterr().out
    assert rc == 0
    per_class, mean = _expected_stats(good_tree, 7)
    rows = {int(line.split()[0]): line for line in out.splitlines()
            if line.startswith('  ') and line.split()[0].isdigit()}
    for c in range(7):
        assert rows[c].endswith('%6d images' % per_class[c])
    assert 'warning: 2 of 7 class(es) never occur: 5 class_5, 6 class_6' in out
    assert 'mean colour of these images (B,G,R): %.3f,%.3f,%.3f' % tuple(mean) in out
    assert "the network's mean (B,G,R):      104.007,116.669,122.679 (Caffe" in out


def test_check_writes_a_descriptor_keeping_the_network_mean(good_tree, tmp_path, capsys):
    path = str(tmp_path / 'meta' / 'dataset.json')
    os.makedirs(os.path.dirname(path))
    data_list = os.path.join(good_tree, 'list.txt')
    assert tools.main(['check', '--data-dir', good_tree, '--data-list', data_list,
                       '--num-classes', '5', '--quiet', '--write-descriptor', path]) == 0
    assert "(img_mean: the network's;" in capsys.readouterr().out
    d = descriptor.read(path)
    _, mean = _expected_stats(good_tree, 5)
    assert d.img_mean is None and np.allclose(d.data_mean, mean, atol=1e-3)
    assert d.data_dir == good_tree and d.splits == {'list': data_list}
    assert d.num_classes == 5 and len(d.class_names) == 5 and d.palette[1] == [128, 0, 0]
    # The descriptor alone drives the next check; --use-data-mean stores the data's mean.
    again = str(tmp_path / 'again.json')
    assert tools.main(['check', '--dataset', path, '--data-list', data_list, '--quiet',
                       '--write-descriptor', again, '--use-data-mean']) == 0
    assert np.allclose(descriptor.read(again).img_mean, mean, atol=1e-3)
    assert tools.main(['check', '--dataset', path, '--quiet']) == 2     # no 'train' split
    assert 'no split "train" (it has: list)' in capsys.readouterr().err


def test_check_needs_the_data_flags_without_a_descriptor(good_tree, capsys):
    assert tools.main(['check', '--data-dir', good_tree, '--quiet']) == 2
    assert capsys.readouterr().err.strip() == (
        'error: check: --data-list, --num-classes needed (or --dataset FILE)')
