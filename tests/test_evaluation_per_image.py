"""evaluate_msc.py --per-image / --worst and worst.png (per_image, plots), on the small test
network: the per-image figures and the worst-image list against IoUs computed by hand from
the saved predictions, the plots command's redraw, and the bad-input lines."""
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import evaluate_msc  # noqa: E402
import evaluate_msc_with_CRF  # noqa: E402
import helpers  # noqa: E402
from deeplab_resnet.data.imageio import write_index_png  # noqa: E402
from deeplab_resnet.evaluation import per_image, plots  # noqa: E402

pytestmark = pytest.mark.usefixtures('small_network')
NUM_CLASSES = 3
NAMES = ['bg', 'rect', 'disc']


def make_env(root, num_images, seed=0):
    """A val.txt of num_images small images (30x36, 25x21) under ROOT/data and a random
    checkpoint naming NAMES (also test_evaluation_crf_search's):
    {'root', 'data', 'val', 'prefix'}."""
    root = str(root)
    data = os.path.join(root, 'data')
    val = helpers.make_dataset(data, num_images=num_images, sizes=((30, 36), (25, 21)),
                               num_classes=NUM_CLASSES, list_name='val.txt', seed=seed)
    prefix = helpers.make_checkpoint(os.path.join(root, 'ckpt'), NUM_CLASSES, seed=1,
                                     aspp_std=3e-3, class_names=NAMES)
    return {'root': root, 'data': data, 'val': val, 'prefix': prefix}


@pytest.fixture(scope='module')
def env(module_dir):
    env = make_env(module_dir('per_image'), 5)
    # The fourth image's label: all ignore (no valid pixel: no mIoU, never among the worst).
    void = os.path.join(env['data'], 'labels', 'img003.png')
    write_index_png(void, np.full(np.array(Image.open(void)).shape, 255, np.uint8))
    return env


def base_args(env):
    return ['--data-dir', env['data'], '--data-list', env['val'], '--threads', '2',
            '--restore-from', env['prefix'], '--scales', '1.0']


def hand_scores(gt, pred, num_classes=NUM_CLASSES, ignore=255):
    """(pixel accuracy, {class: IoU}) over the valid pixels, by boolean masks."""
    valid = gt != ignore
    if not valid.any():
        return None, {}
    ious = {}
    for c in range(num_classes):
        g, p = (gt == c) & valid, (pred == c) & valid
        union = np.logical_or(g, p).sum()
        if union:
            ious[c] = np.logical_and(g, p).sum() / union
    return (gt == pred)[valid].mean(), ious


def read_pairs(env, save_dir, count=None):
    """(image path, ground truth, saved prediction) of the list's first `count` images."""
    pairs = []
    with open(env['val']) as f:
        for line in f.readlines()[:count]:
            image, label = (os.path.join(env['data'], p.lstrip('/')) for p in line.split())
            stem = os.path.splitext(os.path.basename(image))[0]
            pairs.append((image, np.array(Image.open(label)),
                          np.array(Image.open(os.path.join(save_dir, stem + '.png')))))
    return pairs


def check_entries(entries, pairs):
    """The per_image entries against hand_scores of (image, gt, prediction) pairs; returns
    the hand-computed mIoU of each image (None without a valid pixel)."""
    assert [e['index'] for e in entries] == list(range(len(pairs)))
    means = []
    for e, (image, gt, pred) in zip(entries, pairs):
        accuracy, ious = hand_scores(gt, pred)
        assert e['image'] == image and e['valid_pixels'] == int((gt != 255).sum())
        assert [v['class'] for v in e['iou']] == sorted(ious)
        for v in e['iou']:
            assert v['iou'] == pytest.approx(ious[v['class']], abs=1e-12)
        if accuracy is None:
            assert e['pixel_accuracy'] is None and e['mean_iou'] is None
            means.append(None)
        else:
            assert e['pixel_accuracy'] == pytest.approx(accuracy, abs=1e-12)
            assert e['mean_iou'] == pytest.approx(np.mean(list(ious.values())), abs=1e-12)
            means.append(float(np.mean(list(ious.values()))))
    return means


def test_per_image_and_worst_against_hand_computed_ious(env, tmp_path, capsys):
    save_dir, out_json = str(tmp_path / 'pred'), str(tmp_path / 'res.json')
    plot_dir = str(tmp_path / 'plots')
    assert evaluate_msc.main(base_args(env) + ['--per-image', '--output-json', out_json,
                                               '--save-dir', save_dir, '--plot-dir', plot_dir,
                                               '--worst', '3']) == 0
    out = capsys.readouterr().out
    with open(out_json) as f:
        res = json.load(f)
    pairs = read_pairs(env, save_dir)
    assert len({int(c) for _, _, p in pairs for c in np.unique(p)}) > 1   # several classes
    means = check_entries(res['per_image'], pairs)
    assert means[3] is None and sum(m is not None for m in means) == 4
    assert len(set(m for m in means if m is not None)) > 1   # the order means something
    # The worst 3 by hand: lowest mIoU first, the image without valid pixels left out.
    by_hand = sorted((m, i) for i, m in enumerate(means) if m is not None)[:3]
    assert res['worst']['indices'] == [i for _, i in by_hand]
    assert res['worst']['n'] == 3 and res['worst']['predictions_saved'] is True
    # The dataset-level figures stay those of one confusion matrix over the list.
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for _, gt, pred in pairs:
        valid = gt != 255
        np.add.at(cm, (gt[valid].astype(int), pred[valid].astype(int)), 1)
    assert res['metrics']['confusion_matrix'] == cm.tolist()
    worst_png = os.path.join(plot_dir, 'worst.png')
    assert 'worst.png' in out and Image.open(worst_png).size[1] > 3 * per_image.THUMB_SIDE / 8

    # The plots command redraws worst.png from the JSON and the saved predictions...
    redraw = str(tmp_path / 'redraw')
    assert plots.main([out_json, '--plot-dir', redraw]) == 0
    assert 'worst.png' in capsys.readouterr().out
    assert Image.open(os.path.join(redraw, 'worst.png')).size == Image.open(worst_png).size
    # ... and says why not when the predictions were not saved.
    res['worst']['predictions_saved'] = False
    unsaved = str(tmp_path / 'unsaved.json')
    with open(unsaved, 'w') as f:
        json.dump(res, f)
    assert plots.main([unsaved, '--plot-dir', str(tmp_path / 'again')]) == 0
    out = capsys.readouterr().out
    assert 'worst.png not drawn' in out and '--save-dir' in out
    assert not os.path.exists(str(tmp_path / 'again' / 'worst.png'))


def test_worst_images_keeps_only_thumbnails_of_the_worst():
    rng = np.random.RandomState(0)
    worst = per_image.WorstImages(2, side=20)
    scores = [0.5, 0.2, None, 0.9, 0.2, 0.1]
    for i, score in enumerate(scores):
        h, w = 50 + i, 80 - i
        worst.add(i, 'im%d' % i, score, 0.5, rng.randint(0, 255, (h, w, 3)).astype(np.uint8),
                  rng.randint(0, 3, (h, w)), rng.randint(0, 3, (h, w)))
    rows = worst.rows()
    # By hand: 0.1 (index 5), then the two 0.2 tie: the earlier (index 1) wins.
    assert [r['index'] for r in rows] == [5, 1]
    for r in rows:
        assert max(r['image'].shape[:2]) == 20 and r['truth'].shape == r['image'].shape[:2]
    assert [e['index'] for e in per_image.worst_entries(
        [{'index': i, 'mean_iou': s} for i, s in enumerate(scores)], 3)] == [5, 1, 4]


def test_image_scores_by_hand():
    gt = np.array([[0, 0, 1, 255], [2, 2, 1, 1]])
    pred = np.array([[0, 1, 1, 2], [2, 0, 1, 1]])
    s = per_image.image_scores(gt, pred, 4, 255)
    # Valid: 7 pixels, 5 right; class 0: 1/3, class 1: 3/4, class 2: 1/2, class 3 absent.
    assert s['valid_pixels'] == 7 and s['pixel_accuracy'] == pytest.approx(5 / 7)
    assert s['iou'] == [{'class': 0, 'iou': pytest.approx(1 / 3)},
                        {'class': 1, 'iou': pytest.approx(3 / 4)},
                        {'class': 2, 'iou': pytest.approx(1 / 2)}]
    assert s['mean_iou'] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def expect_error(capsys, main, argv, *texts):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    for text in texts:
        assert text in lines[0], (text, lines[0])


@pytest.mark.parametrize('main', [evaluate_msc.main, evaluate_msc_with_CRF.main])
def test_bad_per_image_flags(env, tmp_path, capsys, main):
    expect_error(capsys, main, base_args(env) + ['--per-image'], '--per-image',
                 '--output-json')
    expect_error(capsys, main, base_args(env) + ['--per-image', '--output-json',
                                                 str(tmp_path / 'r.json'), '--worst', '2'],
                 '--worst', '--plot-dir')
