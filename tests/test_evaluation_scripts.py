"""evaluate_msc.py and evaluate_msc_with_CRF.py end to end on a tiny generated set.

One random 3-class checkpoint per module (ASPP weights std 1e-7: the He-initialised
ResNet's features are ~1e7, so this keeps the softmax soft enough for the CRF to change
some pixels while the predictions still use several classes).
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip('pydensecrf.densecrf')

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import evaluate_msc  # noqa: E402
import evaluate_msc_with_CRF  # noqa: E402
import helpers  # noqa: E402
from deeplab_resnet.checkpoint import provenance   # noqa: E402
from deeplab_resnet.data.imageio import write_index_png  # noqa: E402

NUM_CLASSES = 3
NAMES = ['bg', 'rect', 'disc']
RESULTS = {}   # figures shared between tests (the network's confusion matrix at scale 1.0)


@pytest.fixture(scope='module')
def env(module_dir):
    root = str(module_dir('evaluate'))
    data = os.path.join(root, 'data')
    val = helpers.make_dataset(data, num_images=3, sizes=((40, 50), (41, 37)),
                               num_classes=NUM_CLASSES, list_name='val.txt')
    ckpt_dir = os.path.join(root, 'ckpt')
    prefix = helpers.make_checkpoint(ckpt_dir, NUM_CLASSES, seed=0, aspp_std=1e-7,
                                     class_names=NAMES)
    bare_dir = os.path.join(root, 'bare')   # the same weights without a provenance record
    os.makedirs(bare_dir)
    for name in os.listdir(ckpt_dir):
        if name.startswith('model.ckpt.') and not name.endswith('.json'):
            shutil.copy(os.path.join(ckpt_dir, name), bare_dir)
    dataset = helpers.make_descriptor(root, data, {'train': val, 'val': val}, names=NAMES)
    return {'root': root, 'data': data, 'val': val, 'ckpt_dir': ckpt_dir, 'prefix': prefix,
            'bare': os.path.join(bare_dir, 'model.ckpt'), 'dataset': dataset}


@pytest.fixture(scope='module')
def crf_cli_run(env):
    """evaluate_msc_with_CRF.py with two worker processes, through the real command line,
    started in the background as soon as the first test asks for it so that it overlaps with
    the in-process runs. Yields a function that waits and returns (returncode, stdout,
    stderr, JSON path, save dir)."""
    work = os.path.join(env['root'], 'cli_crf')
    os.makedirs(work)
    save_dir, out_json = os.path.join(work, 'pred'), os.path.join(work, 'res.json')
    argv = crf_cli(env, 2, ['--output-json', out_json, '--save-dir', save_dir,
                            '--plot-dir', os.path.join(work, 'plots')],
                   flag='--num-workers')   # the alias of --crf-workers
    stdout = open(os.path.join(work, 'stdout'), 'w+')
    stderr = open(os.path.join(work, 'stderr'), 'w+')
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'evaluate_msc_with_CRF.py')] +
                            argv, cwd=work, stdout=stdout, stderr=stderr,
                            universal_newlines=True, start_new_session=True)

    def finish():
        proc.wait(timeout=300)
        stdout.seek(0)
        stderr.seek(0)
        return proc.returncode, stdout.read(), stderr.read(), out_json, save_dir

    yield finish
    if proc.poll() is None:           # a failed test: stop it and its workers
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stdout.close()
    stderr.close()


def data_args(env, data_list=None):
    return ['--data-dir', env['data'], '--data-list', data_list or env['val'], '--threads', '2']


def list_pairs(env, data_list=None):
    with open(data_list or env['val']) as f:
        return [[os.path.join(env['data'], p.lstrip('/')) for p in line.split()]
                for line in f if line.strip()]


def reference_miou(pairs, num_classes, ignore=255, gt_classes_only=False):
    """Mean IoU by per-class boolean masks over the whole set (no confusion matrix), over the
    classes in the ground truth or the predictions (or, gt_classes_only, the ground truth)."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    in_gt = np.zeros(num_classes, bool)
    for gt, pred in pairs:
        valid = gt != ignore
        for c in range(num_classes):
            g, p = (gt == c) & valid, (pred == c) & valid
            inter[c] += np.logical_and(g, p).sum()
            union[c] += np.logical_or(g, p).sum()
            in_gt[c] |= g.any()
    present = in_gt if gt_classes_only else union > 0
    return float(np.mean(inter[present] / union[present]))


def saved_pairs(env, save_dir, palette=None):
    """(ground truth, prediction read back from <stem>.png) for each listed image; the
    colour mask <stem>_mask.png is there too (in `palette`'s colours when given)."""
    pairs = []
    for image, label in list_pairs(env):
        stem = os.path.splitext(os.path.basename(image))[0]
        pred_img = Image.open(os.path.join(save_dir, stem + '.png'))
        assert pred_img.mode == 'P'
        colour = Image.open(os.path.join(save_dir, stem + '_mask.png'))
        assert colour.mode == 'RGB' and colour.size == pred_img.size
        gt = np.array(Image.open(label))
        pred = np.array(pred_img)
        assert pred.shape == gt.shape and pred.max() < NUM_CLASSES
        if palette is not None:
            np.testing.assert_array_equal(np.asarray(colour), np.array(palette)[pred])
            assert pred_img.getpalette()[:3 * NUM_CLASSES] == sum(palette, [])
        pairs.append((gt, pred))
    return pairs


def last_miou(out):
    last = out.strip().splitlines()[-1]
    assert last.startswith('mIoU: '), last
    return float(last.split()[1])


def test_miou_matches_saved_predictions(env, crf_cli_run, tmp_path, capsys):
    # crf_cli_run: its subprocess starts now and runs alongside.
    save_dir, out_json = str(tmp_path / 'pred'), str(tmp_path / 'res.json')
    ids_dir = str(tmp_path / 'server')
    # A directory as --restore-from; the data, class count, names and colours from the
    # dataset descriptor alone (its "val" split), the mean from the provenance record.
    assert evaluate_msc.main([
        '--dataset', env['dataset'], '--threads', '2', '--restore-from', env['ckpt_dir'],
        '--scales', '1.0', '--save-dir', save_dir, '--output-json', out_json,
        '--save-server-ids', ids_dir]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    given = '--dataset %s' % env['dataset']
    assert first.startswith('restored %s: 3 classes (%s)' % (env['prefix'], given))
    assert 'class names: %s' % given in first and 'colours: %s' % given in first
    assert 'image mean B,G,R 104.007,116.669,122.679 (provenance record)' in first
    assert 'rect' in out and out.count('mIoU: ') == 1
    with open(out_json) as f:
        res = json.load(f)
    pairs = saved_pairs(env, save_dir, helpers.TOY_PALETTE)
    pred_classes = set(np.unique(np.concatenate([p.ravel() for _, p in pairs])))
    assert len(pred_classes) > 1      # a meaningful test: not all one class
    expected = reference_miou(pairs, NUM_CLASSES)
    assert res['mean_iou'] == pytest.approx(expected, abs=1e-12)
    assert res['mean_iou_gt_classes'] == pytest.approx(
        reference_miou(pairs, NUM_CLASSES, gt_classes_only=True), abs=1e-12)
    assert 'mean IoU, GT classes:' in out
    # The server's ids, alone in their folder: TOY_SERVER_IDS[prediction], mode L.
    stems = [os.path.splitext(os.path.basename(image))[0] for image, _ in list_pairs(env)]
    assert sorted(os.listdir(ids_dir)) == sorted(stem + '.png' for stem in stems)
    for stem, (_, pred) in zip(stems, pairs):
        ids = Image.open(os.path.join(ids_dir, stem + '.png'))
        assert ids.mode == 'L'
        np.testing.assert_array_equal(np.asarray(ids), np.array(helpers.TOY_SERVER_IDS)[pred])
    assert last_miou(out) == pytest.approx(expected, abs=5e-5)
    assert res['metrics']['num_pixels'] == sum(int((gt != 255).sum()) for gt, _ in pairs)
    assert [pc['name'] for pc in res['metrics']['per_class']] == NAMES
    assert res['settings']['scales'] == [1.0] and res['settings']['flip'] is False
    RESULTS['cm_scale1'] = res['metrics']['confusion_matrix']


def test_multi_scale_and_ignore_out_of_range(env, tmp_path, capsys):
    # An image whose label has values 7 and 9 (3 classes): ignored on request. The list's
    # third line (image and label of different sizes) is beyond --num-steps 2, never read.
    image, label = list_pairs(env)[0]
    gt = np.array(Image.open(label))
    bad = gt.copy()
    bad[5:10, 5:20] = 7
    bad[20, :] = 9
    write_index_png(os.path.join(env['data'], 'labels', 'oor.png'), bad)
    shutil.copy(image, os.path.join(env['data'], 'images', 'oor.jpg'))
    data_list = str(tmp_path / 'oor.txt')
    with open(data_list, 'w') as f:
        f.write('/images/img001.jpg /labels/img001.png\n/images/oor.jpg /labels/oor.png\n'
                '/images/img000.jpg /labels/img001.png\n')
    out_json = str(tmp_path / 'res.json')
    assert evaluate_msc.main(data_args(env, data_list) + [
        '--restore-from', env['prefix'], '--num-classes', '3', '--scales', '1.0,0.75,0.5',
        '--ignore-out-of-range', '--num-steps', '2', '--output-json', out_json]) == 0
    out = capsys.readouterr().out
    assert '3 classes (--num-classes)' in out and 'scales 1,0.75,0.5, flip off' in out
    assert '2 of 3 images' in out
    with open(out_json) as f:
        res = json.load(f)
    assert res['settings']['scales'] == [1.0, 0.75, 0.5] and res['settings']['flip'] is False
    assert 0.0 <= res['mean_iou'] <= 1.0
    assert last_miou(out) == pytest.approx(res['mean_iou'], abs=5e-5)
    counted = sum(int((np.array(Image.open(lab)) < NUM_CLASSES).sum())
                  for _, lab in list_pairs(env, data_list)[:2])
    assert res['metrics']['num_pixels'] == counted   # 7, 9 and 255 left out


def crf_cli(env, workers, extra=(), flag='--crf-workers'):
    return data_args(env) + ['--restore-from', env['prefix'], '--scales', '1.0', '--flip',
                             flag, str(workers)] + list(extra)


def test_crf_same_result_for_any_number_of_workers(env, crf_cli_run, tmp_path, capsys):
    # The CRF inline (no worker process) in this process.
    out_json = str(tmp_path / 'w0.json')
    assert evaluate_msc_with_CRF.main(crf_cli(env, 0, ['--output-json', out_json])) == 0
    out = capsys.readouterr().out
    assert 'mIoU before CRF: ' in out and out.count('after CRF:') == 2
    assert 'scales 1, flip on, float32, CRF with 0 workers' in out
    results = {}
    with open(out_json) as f:
        results[0] = json.load(f)
    assert last_miou(out) == pytest.approx(results[0]['mean_iou_after_crf'], abs=5e-5)
    # Two worker processes (results in submission order), through the real command line,
    # with the predictions saved.
    returncode, stdout, stderr, out_json, save_dir = crf_cli_run()
    assert returncode == 0, stderr[-2000:]
    with open(out_json) as f:
        results[2] = json.load(f)
    assert last_miou(stdout) == pytest.approx(results[2]['mean_iou'], abs=5e-5)

    net = [r['metrics']['confusion_matrix'] for r in results.values()]
    crf = [r['crf']['metrics']['confusion_matrix'] for r in results.values()]
    assert net[0] == net[1]
    assert crf[0] == crf[1]
    assert crf[0] != net[0]           # the CRF really changed some pixels
    if 'cm_scale1' in RESULTS:        # flipping changed the network's output
        assert net[0] != RESULTS['cm_scale1']
    assert results[2]['crf']['metrics']['mean_iou'] == pytest.approx(
        reference_miou(saved_pairs(env, save_dir), NUM_CLASSES), abs=1e-12)
    assert results[2]['mean_iou_after_crf'] == results[2]['mean_iou']
    assert results[2]['mean_iou_before_crf'] == results[2]['metrics']['mean_iou']
    # --plot-dir: the per-class table holds the JSON's figures before and after the CRF; the
    # pictures decode (their cells are checked in test_evaluation_plots.py).
    plot_dir = os.path.join(os.path.dirname(out_json), 'plots')
    with open(os.path.join(plot_dir, 'per_class.csv')) as f:
        rows = list(csv.DictReader(f))
    assert [r['name'] for r in rows] == NAMES
    for stage, key in (('metrics', '_before_crf'), ('crf', '_after_crf')):
        metrics = results[2][stage] if stage == 'metrics' else results[2]['crf']['metrics']
        for row, pc in zip(rows, metrics['per_class']):
            assert float(row['iou' + key]) == pytest.approx(pc['iou'], abs=1e-12)
            assert int(row['pred_pixels' + key]) == pc['pred_pixels']
    for name in ('confusion.png', 'iou.png'):
        assert Image.open(os.path.join(plot_dir, name)).mode == 'RGBA'
    assert 'pictures: %s' % os.path.join(plot_dir, 'confusion.png') in stdout


# ---------------------------------------------------------------------- bad input

def write_list(tmp_path, lines):
    path = str(tmp_path / 'list.txt')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def expect_error(capsys, main, argv, *names):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == '' and len(lines) == 1 and lines[0].startswith('error: '), err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_image_and_label_of_different_sizes(env, tmp_path, capsys):
    data_list = write_list(tmp_path, ['/images/img000.jpg /labels/img001.png'])
    line = expect_error(capsys, evaluate_msc.main,
                        data_args(env, data_list) + ['--restore-from', env['prefix']],
                        os.path.join('images', 'img000.jpg'),
                        os.path.join('labels', 'img001.png'))
    assert '50x40' in line and '37x41' in line


def test_label_values_out_of_range(env, tmp_path, capsys):
    gt = np.array(Image.open(list_pairs(env)[0][1]))
    gt[3, 3], gt[4, 4] = 5, 200
    label = str(tmp_path / 'bad.png')
    write_index_png(label, gt)
    shutil.copy(list_pairs(env)[0][0], str(tmp_path / 'bad.jpg'))
    data_list = write_list(tmp_path, ['bad.jpg bad.png'])
    line = expect_error(capsys, evaluate_msc_with_CRF.main,
                        ['--data-dir', str(tmp_path), '--data-list', data_list,
                         '--restore-from', env['prefix']], label)
    assert '5, 200' in line and '--ignore-out-of-range' in line


def test_missing_checkpoint(env, capsys):
    missing = os.path.join(env['root'], 'nowhere', 'model.ckpt-7')
    expect_error(capsys, evaluate_msc.main, data_args(env) + ['--restore-from', missing],
                 missing)


def test_class_count_mismatch(env, capsys):
    line = expect_error(capsys, evaluate_msc.main, data_args(env) + [
        '--restore-from', env['prefix'], '--num-classes', '5'], env['prefix'])
    assert 'for 3 classes' in line and '--num-classes is 5' in line
    # No provenance record and no --num-classes: the default 21 does not fit.
    line = expect_error(capsys, evaluate_msc.main,
                        data_args(env) + ['--restore-from', env['bare']], env['bare'])
    assert 'for 3 classes' in line and '21' in line and '--num-classes 3' in line


@pytest.fixture(scope='module')
def voc_checkpoints(env):
    """A 21-class checkpoint with a provenance record saying so, and the same weights
    without a record (symlinks). Returns (prefix with record, prefix without)."""
    prefix = helpers.make_checkpoint(os.path.join(env['root'], 'voc21'), 21, seed=1)
    provenance.write_record(prefix, {'num_classes': 21, 'created_by': 'test'})
    bare_dir = os.path.join(env['root'], 'voc21_bare')
    os.makedirs(bare_dir)
    for name in os.listdir(os.path.dirname(prefix)):
        if name.startswith('model.ckpt.') and not name.endswith('.json'):
            os.symlink(os.path.join(os.path.dirname(prefix), name),
                       os.path.join(bare_dir, name))
    return prefix, os.path.join(bare_dir, 'model.ckpt')


def voc_like_list(env, tmp_path):
    """One image whose label holds every VOC class 0..20 (and the ignore label)."""
    image, label = list_pairs(env)[0]
    gt = np.array(Image.open(label))
    voc = (np.arange(gt.size).reshape(gt.shape) % 21).astype(np.uint8)
    voc[gt == 255] = 255
    write_index_png(str(tmp_path / 'voc.png'), voc)
    shutil.copy(image, str(tmp_path / 'voc.jpg'))
    return write_list(tmp_path, ['voc.jpg voc.png'])


@pytest.mark.parametrize('with_record', [True, False])
def test_wrong_num_classes_named_before_label_values(env, voc_checkpoints, tmp_path, capsys,
                                                     with_record):
    # A 21-class checkpoint evaluated with --num-classes 5 on VOC-like labels: the error is
    # the class count (the record's, or the variables' without a record), not label values
    # 5..20 (which would be out of range for 5 classes).
    prefix = voc_checkpoints[0 if with_record else 1]
    data_list = voc_like_list(env, tmp_path)
    line = expect_error(capsys, evaluate_msc.main,
                        ['--data-dir', str(tmp_path), '--data-list', data_list,
                         '--restore-from', prefix, '--num-classes', '5'], prefix)
    assert 'for 21 classes' in line and '--num-classes is 5' in line
    assert 'label values' not in line


def test_class_names_file_of_wrong_length(env, tmp_path, capsys):
    names = str(tmp_path / 'names.txt')
    with open(names, 'w') as f:
        f.write('a\nb\n')
    line = expect_error(capsys, evaluate_msc.main, data_args(env) + [
        '--restore-from', env['prefix'], '--class-names', names], names)
    assert '2 class names for 3 classes' in line


def test_save_dir_that_would_overwrite_the_labels(env, capsys):
    # <stem>.png in the labels' own directory would replace the ground truth.
    labels_dir = os.path.join(env['data'], 'labels')
    line = expect_error(capsys, evaluate_msc.main, data_args(env) + [
        '--restore-from', env['prefix'], '--save-dir', labels_dir], 'img000.png', labels_dir)
    assert 'overwrite' in line


def test_missing_listed_file_via_cli(env, tmp_path):
    data_list = write_list(tmp_path, ['/images/img000.jpg /labels/img000.png',
                                      '/images/img001.jpg /labels/none.png'])
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'evaluate_msc.py')] +
        data_args(env, data_list) + ['--restore-from', env['prefix']],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ''
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ' + data_list), proc.stderr
    assert 'line 2' in lines[0] and 'none.png' in lines[0]


def test_huge_image_refused_before_any_work(env, tmp_path, capsys, monkeypatch):
    """A 9000x9000 image (one colour: a PNG of ~100 KB) with 8 GB available: one line naming
    it, what it needs, the --tile and the --max-side that fit, exit 2, before the network is built (the
    estimate itself is checked by hand in test_predict_memory.py)."""
    from test_predict_memory import one_colour_png
    from deeplab_resnet.predict import memory
    one_colour_png(str(tmp_path / 'huge.png'), 9000, 9000)
    one_colour_png(str(tmp_path / 'huge_label.png'), 9000, 9000, rgb=(1,))
    data_list = write_list(tmp_path, ['huge.png huge_label.png'])
    monkeypatch.setattr(memory, 'available_bytes', lambda: 8 * 2 ** 30)
    line = expect_error(capsys, evaluate_msc.main,
                        ['--data-dir', str(tmp_path), '--data-list', data_list,
                         '--restore-from', env['prefix'], '--scales', '1.0,0.75,0.5'],
                        str(tmp_path / 'huge.png'))
    need = memory.needed_bytes(9000, 9000, (1.0, 0.75, 0.5), False, NUM_CLASSES)
    assert ('a 9000x9000 image needs about %.1f GB to segment (scales 1,0.75,0.5), 8.0 GB is '
            'available: pass --tile 513,513 (full resolution, in windows) or '
            '--max-side ' % (need / 2 ** 30)) in line, line
