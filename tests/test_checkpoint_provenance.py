"""Provenance records (convert.py, train_msc.py) and the guards built on them: train /
evaluation overlap, resuming only a matching snapshot, flags that contradict a record.

Module fixtures: one full-size synthetic caffemodel named as the authors' VOC 2012 release,
converted once; one training run of 1 step at 33x33 initialised from it.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import caffe_reference as ref  # noqa: E402
import evaluate_msc  # noqa: E402
import helpers  # noqa: E402
from helpers import run_captured  # noqa: E402
import train_msc  # noqa: E402
from deeplab_resnet.checkpoint import provenance, settings  # noqa: E402
from deeplab_resnet.common.constants import IGNORE_LABEL, IMG_MEAN_BGR, VOC_CLASS_NAMES  # noqa: E402
from deeplab_resnet.weights import caffemodel  # noqa: E402

SIZE = 33


@pytest.fixture(scope='module')
def env(module_dir):
    root = str(module_dir('provenance'))
    data = os.path.join(root, 'data')
    train = helpers.make_dataset(data, num_images=4, num_classes=3)
    other = helpers.make_dataset(data, num_images=3, num_classes=3, list_name='other.txt',
                                 prefix='oth', seed=1)
    voc_val = helpers.make_dataset(data, num_images=2, num_classes=3, list_name='voc_val.txt',
                                   prefix='2007_000', seed=2)   # 2007_000000, 2007_000001
    model = os.path.join(root, 'train2_iter_20000.caffemodel')
    caffemodel.write_caffemodel(model, ref.random_caffe_layers(21, seed=1))
    from deeplab_resnet.weights import to_checkpoint as convert
    warnings = []
    converted, _, _ = run_captured(convert.convert, model, os.path.join(root, 'converted'),
                                   warn=warnings.append)
    os.remove(model)
    snap = os.path.join(root, 'snap')
    code, out, err = run_captured(train_msc.main, train_args(
        data, train, snap, '--restore-from', converted[0], '--num-classes', '21'))
    assert code == 0, out + err
    return {'root': root, 'data': data, 'train': train, 'other': other, 'voc_val': voc_val,
            'converted': converted[0], 'convert_record': converted[1],
            'convert_warnings': warnings, 'snap': snap,
            'trained': os.path.join(snap, 'model.ckpt-1'), 'train_out': out,
            'train_err': err}


def train_args(data, lst, snap, *extra):
    return ['--data-dir', data, '--data-list', lst, '--input-size', '%d,%d' % (SIZE, SIZE),
            '--batch-size', '1', '--grad-update-every', '1', '--num-steps', '1',
            '--snapshot-dir', snap, '--threads', '2'] + list(extra)


def eval_args(env, lst, ckpt, *extra):
    return ['--data-dir', env['data'], '--data-list', lst, '--restore-from', ckpt,
            '--scales', '1.0', '--threads', '2'] + list(extra)


def git_head():
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def test_converted_record(env):
    record = provenance.read_record(env['converted'])
    assert record == env['convert_record']
    assert record['num_classes'] == 21 and record['class_names'] == list(VOC_CLASS_NAMES)
    assert record['source']['file'] == 'train2_iter_20000.caffemodel'
    assert len(record['source']['sha256']) == 64
    assert record['channel_order'] == 'BGR' and record['image_mean'] == list(IMG_MEAN_BGR)
    assert record['ignore_label'] == IGNORE_LABEL
    assert record['trained_on'] == provenance.AUTHORS_VOC12_TRAINED_ON
    assert record['git_commit'] == git_head()
    assert any('not a fair' in w and 'VOC12 val' in w for w in env['convert_warnings'])


def test_convert_trained_on_a_list(env):
    from deeplab_resnet.weights import to_checkpoint as convert
    fields = convert.trained_on_fields(env['other'], 'mine.caffemodel')
    assert fields['trained_on'] == os.path.abspath(env['other'])
    assert fields['train_list']['entries'] == 3
    assert fields['train_images'] == ['oth000', 'oth001', 'oth002']
    assert convert.trained_on_fields('VOC2012 trainval', 'x.caffemodel') == {
        'trained_on': 'VOC2012 trainval'}


def test_trained_record(env):
    record = provenance.read_record(env['trained'])
    assert record['created_by'] == 'train_msc.py' and record['step'] == 1
    assert record['num_classes'] == 21 and record['class_names'] == list(VOC_CLASS_NAMES)
    assert record['channel_order'] == 'BGR' and record['image_mean'] == list(IMG_MEAN_BGR)
    assert record['input_size'] == [SIZE, SIZE] and record['scales'] == [1.0, 0.75, 0.5]
    assert record['ignore_label'] == IGNORE_LABEL
    # Initialised from the converted checkpoint: its caffemodel source is carried over.
    init = record['initialised_from']
    assert init['checkpoint'] == os.path.abspath(env['converted'])
    assert init['trained_on'] == provenance.AUTHORS_VOC12_TRAINED_ON
    assert record['source'] == env['convert_record']['source']
    assert 'train2_iter_20000.caffemodel' in init['description']
    paths = sorted('/images/img%03d.jpg' % i for i in range(4))
    assert record['train_list']['path'] == os.path.abspath(env['train'])
    assert record['train_list']['entries'] == 4
    assert record['train_list']['sha256'] == hashlib.sha256(
        '\n'.join(paths).encode()).hexdigest()
    assert record['train_images'] == ['img000', 'img001', 'img002', 'img003']
    import tensorflow as tf
    assert record['tensorflow_version'] == tf.__version__
    assert record['git_commit'] == git_head()
    flags = record['flags']
    assert flags['batch_size'] == 1 and flags['grad_update_every'] == 1
    assert flags['learning_rate'] == 2.5e-4 and flags['is_training'] is False
    assert flags['num_steps'] == 1
    # The start-up line: what, from where, at which step, what the record said.
    line = [l for l in env['train_out'].splitlines() if l.startswith('initialised ')][0]
    print(line)
    assert 'from %s' % env['converted'] in line and 'step 0' in line
    assert 'converted from train2_iter_20000.caffemodel' in line and '21 classes' in line


def test_scratch_record_and_he_init(env, tmp_path):
    from deeplab_resnet.training import snapshots
    args = train_msc.get_arguments(train_args(env['data'], env['train'], str(tmp_path),
                                              '--restore-from', 'none', '--is-training'))
    assert snapshots.from_scratch(args)
    init = provenance.initialisation(None)
    record = provenance.training_record(args, provenance.list_info(env['train']), init, 7,
                                        ['a'] * 21)
    assert record['initialised_from']['description'] == 'none (He initialisation)'
    assert record['source'] is None and record['step'] == 7
    json.dumps(record)   # JSON-serialisable


def test_evaluating_on_the_training_list_reports_the_overlap(env, tmp_path):
    out_json = str(tmp_path / 'res.json')
    code, out, err = run_captured(evaluate_msc.main, eval_args(
        env, env['train'], env['trained'], '--output-json', out_json))
    assert code == 0, err
    summary = [l for l in out.splitlines() if l.startswith('restored ')][0]
    warning = [l for l in err.splitlines() if l.startswith('warning: ')]
    print(summary)
    print('\n'.join(warning))
    assert 'step 1' in summary and 'record by train_msc.py' in summary
    assert '21 classes (provenance record)' in summary
    assert len(warning) == 1 and '4 of the 4 evaluated images' in warning[0]
    assert 'img000' in warning[0] and '--strict' in warning[0]
    with open(out_json) as f:
        assert json.load(f)['overlap'] == 4
    code, out, err = run_captured(evaluate_msc.main, eval_args(
        env, env['train'], env['trained'], '--strict'))
    err = err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith('error: ')
    assert '4 of the 4 evaluated images' in err[0] and '(--strict)' in err[0]


def test_authors_release_on_voc_val(env):
    record = provenance.read_record(env['converted'])
    assert provenance.training_overlap(record, ['2007_000000', 'img000']) == (
        ['2007_000000'], "trained on voc12_trainval (authors' release)")
    assert provenance.training_overlap(None, ['2007_000000']) == ([], None)
    code, out, err = run_captured(evaluate_msc.main, eval_args(
        env, env['voc_val'], env['converted'], '--strict'))
    assert code == 2 and "2 of the 2 evaluated images" in err
    assert "voc12_trainval (authors' release)" in err
    # A checkpoint fine-tuned from it inherits the warning for VOC ids.
    trained = provenance.read_record(env['trained'])
    assert provenance.training_overlap(trained, ['2008_000123', 'oth000'])[0] == [
        '2008_000123']


def test_resume_guard(env, tmp_path):
    snap = env['snap']
    code, out, err = run_captured(train_msc.main, train_args(
        env['data'], env['train'], snap, '--num-classes', '3', '--num-steps', '2'))
    err = err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    print(err[0])
    assert 'cannot resume' in err[0] and 'the class count (21; this command: --num-classes 3)' \
        in err[0] and '--snapshot-dir' in err[0] and '--force-resume' in err[0]
    code, out, err = run_captured(train_msc.main, train_args(
        env['data'], env['other'], snap, '--num-classes', '21', '--num-steps', '2',
        '--input-size', '41,41'))
    err = err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert 'the data list' in err[0] and 'other.txt' in err[0] and 'input size' in err[0]
    assert 'class count' not in err[0]

    from deeplab_resnet.training import snapshots
    args = train_msc.get_arguments(train_args(env['data'], env['other'], snap,
                                              '--num-classes', '21', '--force-resume'))
    warnings = []
    latest, record = snapshots.check_resume(args, provenance.list_info(env['other']),
                                          warn=warnings.append)
    assert latest == env['trained'] and record['step'] == 1
    assert len(warnings) == 1 and '--force-resume' in warnings[0]
    # A snapshot without a record (an older version) resumes with a warning.
    bare = str(tmp_path / 'bare')
    os.makedirs(bare)
    for name in os.listdir(snap):
        if name.startswith('model.ckpt-1.') and not name.endswith('.json'):
            shutil.copy(os.path.join(snap, name), bare)
    with open(os.path.join(bare, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "model.ckpt-1"\n')
    args = train_msc.get_arguments(train_args(env['data'], env['other'], bare,
                                              '--num-classes', '3'))
    warnings = []
    latest, record = snapshots.check_resume(args, provenance.list_info(env['other']),
                                          warn=warnings.append)
    assert latest.endswith('model.ckpt-1') and record is None
    assert len(warnings) == 1 and 'no provenance record' in warnings[0]


def test_contradicting_flags_warn_with_both_values(env):
    code, out, err = run_captured(evaluate_msc.main, eval_args(
        env, env['train'], env['trained'], '--num-classes', '5'))
    lines = err.strip().splitlines()
    print('\n'.join(lines))
    # The flag is used; here it cannot fit the checkpoint, so the error alone is shown.
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith('error: ') and 'for 21 classes' in lines[0]
    warnings = []
    settings.resolve(env['trained'], provenance.read_record(env['trained']), num_classes=5,
                     warn=warnings.append)
    assert warnings == ["--num-classes 5 contradicts the checkpoint's record (21); using 5"]
    restored = settings.restore_settings(env['trained'], None, (1.0, 2.0, 3.0))
    used = restored.settings
    assert used['num_classes'] == 21 and used['img_mean'] == (1.0, 2.0, 3.0)
    assert 'step 1' in settings.summary_line(restored)
    assert list(restored.warnings) == ["--img-mean 1,2,3 contradicts the checkpoint's record "
                                       "(104.007,116.669,122.679); using 1,2,3"]


def test_checkpoint_without_record_still_evaluates(env, tmp_path, monkeypatch):
    monkeypatch.setenv('DEEPLAB_BLOCKS', ','.join(map(str, helpers.SMALL_BLOCKS)))  # small net
    prefix = helpers.make_checkpoint(str(tmp_path / 'bare'), num_classes=3, aspp_std=1e-3)
    out_json = str(tmp_path / 'res.json')
    code, out, err = run_captured(evaluate_msc.main, eval_args(
        env, env['train'], prefix, '--num-classes', '3', '--output-json', out_json,
        '--strict'))
    assert code == 0, err
    assert 'warning' not in err
    summary = [l for l in out.splitlines() if l.startswith('restored ')][0]
    assert summary.endswith('; no provenance record')
    with open(out_json) as f:
        assert json.load(f)['overlap'] == 0
