"""train_msc.py as a long-running job: SIGTERM between micro-batches, exact resume, a lone
chief that cannot reach its peer, validation while training, safe defaults.

The runs use the small test network (ResNet-101's stem, strides, dilations and ASPP with one
block per stage: conftest.small_network, DEEPLAB_BLOCKS) at 33x33, one scale, batch norm in
training mode (so the moving averages move with every micro-batch and the roll-back of a
dropped update is exercised), from a checkpoint whose batch-norm statistics are those of the
images. What is tested here (signals, resume, validation) does not depend on the depth.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import train_msc
from helpers import make_calibrated_checkpoint, make_dataset, read_until

pytestmark = pytest.mark.usefixtures('small_network')
tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 33
STEPS = 4


@pytest.fixture(scope='module')
def setup(module_dir):
    root = str(module_dir('stop_data'))
    lst = make_dataset(root, num_images=5, sizes=((40, 50), (41, 37)), num_classes=3)
    init = make_calibrated_checkpoint(os.path.join(root, 'init'), root, lst, (SIZE, SIZE))
    return root, lst, init


def argv(setup, snap, *extra):
    root, lst, init = setup
    return ['--data-dir', root, '--data-list', lst, '--input-size', '%d,%d' % (SIZE, SIZE),
            '--num-classes', '3', '--scales', '1', '--batch-size', '1',
            '--grad-update-every', '2', '--num-steps', str(STEPS), '--save-pred-every', '10',
            '--restore-from', init, '--is-training', '--random-mirror', '--random-scale',
            '--threads', '2', '--snapshot-dir', str(snap)] + list(extra)


def start(args, env=None, log=None):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train_msc.py')] + args,
                            cwd=ROOT, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED='1', **(env or {})))


def variables(prefix):
    return {name: tf.train.load_variable(prefix, name)
            for name, _ in tf.train.list_variables(prefix)}


def interrupted_then_resumed(args):
    """Starts a run, sends SIGTERM once the first update is logged, checks the stop, restarts
    the same command to the end. Returns (seconds from SIGTERM to exit, output of the stop,
    output of the resumed run)."""
    proc = start(args)
    lines = read_until(proc, 'step 1/%d' % STEPS)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    seconds = time.time() - t0
    stop_out = ''.join(lines) + out
    assert proc.returncode == 143, stop_out
    again = subprocess.run([sys.executable, os.path.join(ROOT, 'train_msc.py')] + args,
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    return seconds, stop_out, again.stdout


@pytest.mark.parametrize('replicas', ['1', '2'])
def test_sigterm_saves_the_last_update_and_resume_is_exact(setup, tmp_path, replicas):
    """SIGTERM: exit 143 after saving the last finished update (a snapshot with its record,
    listed in the state file); the same command then continues, and the run ends with the
    variables of an uninterrupted run with the same seed (the data sequence continues where it
    stopped; a dropped update leaves no trace in the batch-norm averages)."""
    extra = ['--num-replicas', replicas]
    whole = subprocess.run([sys.executable, os.path.join(ROOT, 'train_msc.py')]
                           + argv(setup, tmp_path / 'whole', *extra), cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    snap = tmp_path / 'stopped'
    seconds, stop_out, resumed = interrupted_then_resumed(argv(setup, snap, *extra))
    print('SIGTERM to exit: %.1f s' % seconds)
    assert seconds < 60, stop_out   # 30 s asked for; two test files share the two cores
    assert 'SIGTERM: stop requested' in stop_out and 'interrupted at step' in stop_out
    assert 'Traceback' not in stop_out
    stopped_at = int(stop_out.split('interrupted at step ')[1].split()[0])
    assert 1 <= stopped_at < STEPS
    prefix = str(snap / ('model.ckpt-%d' % stopped_at))
    record = json.load(open(prefix + '.json'))
    assert record['step'] == stopped_at
    assert record['network_blocks'] == [1, 1, 1, 1]   # not to be taken for ResNet-101
    assert record['input']['position'] == stopped_at * 2 * int(replicas)
    assert 'resumed from %s at step %d' % (prefix, stopped_at) in resumed
    a = variables(str(tmp_path / 'whole' / ('model.ckpt-%d' % STEPS)))
    b = variables(str(snap / ('model.ckpt-%d' % STEPS)))
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert any(name.endswith('moving_mean') for name in a)
    # Each start of the run (the stopped one, the resumed one) records its hyperparameters
    # for the HParams dashboard in its own events file, at its first step.
    steps = []
    for name in sorted(n for n in os.listdir(str(snap)) if n.startswith('events.')):
        acc = EventAccumulator(str(snap / name), size_guidance={'tensors': 0}).Reload()
        steps += [e.step for e in acc.Tensors('_hparams_/session_start_info')]
    assert steps == [0, stopped_at]


def test_lone_chief_stops_on_sigterm_within_seconds(setup, tmp_path):
    """A chief of a two-worker TF_CONFIG whose peer never starts is blocked in a collective
    of its start-up; SIGTERM still ends it promptly with one line and no traceback."""
    import socket
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    tf_config = json.dumps({'cluster': {'worker': ['127.0.0.1:%d' % p for p in ports]},
                            'task': {'type': 'worker', 'index': 0}})
    proc = start(argv(setup, tmp_path / 'snap', '--worker-timeout', '600'),
                 env={'TF_CONFIG': tf_config})
    lines = read_until(proc, 'waiting at most')
    time.sleep(5)   # into the first collective
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    seconds = time.time() - t0
    out = ''.join(lines) + out
    print('lone chief, SIGTERM to exit: %.1f s' % seconds)
    assert proc.returncode == 143, out
    assert seconds < 60, out
    assert 'Traceback' not in out
    stops = [l for l in out.splitlines() if 'during start-up' in l]
    assert stops == ['SIGTERM during start-up: nothing trained yet, nothing to save; exiting'], out


def test_validation_while_training_keeps_the_best(setup, tmp_path):
    """--val-list: the evaluation loop runs at steps 2 and 4; its lines, TensorBoard scalars
    and the best snapshot (its own directory, its score in its record, not counted by
    --keep-snapshots, not resumed from)."""
    root, lst, _ = setup
    snap = tmp_path / 'snap'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train_msc.py')] + argv(
        setup, snap, '--val-list', lst, '--val-every', '2', '--keep-snapshots', '1',
        '--save-pred-every', '2'), cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert 'validation images are in the training list' in proc.stderr   # same list
    lines = [l for l in proc.stdout.splitlines() if l.startswith('validation at step')]
    assert [l.split()[3].rstrip(':') for l in lines] == ['2', '4'], out
    assert 'IoU per class: background' in proc.stdout or 'IoU per class: class_0' in out
    # The best snapshot's state names it relative to best/ (found from any working directory).
    state = (snap / 'best' / 'checkpoint').read_text()
    assert state.startswith('model_checkpoint_path: "model.ckpt-'), state
    best = tf.train.latest_checkpoint(str(snap / 'best'))
    record = json.load(open(best + '.json'))
    scores = [float(l.split('mIoU ')[1].split(',')[0]) for l in lines]
    assert record['validation']['mean_iou'] == pytest.approx(max(scores), abs=1e-4)
    assert record['validation']['step'] == 2 + 2 * int(scores[1] > scores[0])
    assert tf.train.latest_checkpoint(str(snap)).endswith('model.ckpt-%d' % STEPS)
    kept = sorted(n for n in os.listdir(str(snap)) if n.startswith('model.ckpt'))
    assert kept == ['model.ckpt-4.data-00000-of-00001', 'model.ckpt-4.index',
                    'model.ckpt-4.json']
    tags = set()
    for name in os.listdir(str(snap)):
        if name.startswith('events.'):
            for event in tf1.train.summary_iterator(str(snap / name)):
                tags.update(v.tag for v in event.summary.value)
    assert {'validation/mean_iou', 'validation/pixel_accuracy'} <= tags
    assert len([t for t in tags if t.startswith('validation/iou/')]) == 3
    # TensorBoard's own reader: at each validation step the confusion-matrix picture and the
    # first 3 (--val-images' default) images as image | ground truth | prediction; the best
    # mIoU so far; the HParams plugin's session data; the command line and record as text.
    acc = EventAccumulator(str(snap), size_guidance={'images': 0, 'tensors': 0,
                                                      'scalars': 0}).Reload()
    images = acc.Tags()['images']
    assert 'validation/confusion_matrix' in images
    assert sorted(t for t in images if t.startswith('validation/images/')) == [
        'validation/images/%d' % i for i in range(3)]
    with open(lst) as f:
        first = [line.split() for line in f][:3]
    for i, (image, _) in enumerate(first):
        events = acc.Images('validation/images/%d' % i)
        assert [e.step for e in events] == [2, 4]
        h, w = np.asarray(Image.open(os.path.join(root, image.lstrip('/')))).shape[:2]
        assert (events[-1].height, events[-1].width) == (h, 3 * w)
    assert [e.step for e in acc.Images('validation/confusion_matrix')] == [2, 4]
    best = [(e.step, e.value) for e in acc.Scalars('validation/best_mean_iou')]
    assert best == [(2, pytest.approx(scores[0], abs=1e-4)),
                    (4, pytest.approx(max(scores), abs=1e-4))]
    hparams = acc.PluginTagToContent('hparams')
    start_info = plugin_data_pb2.HParamsPluginData.FromString(
        hparams['_hparams_/session_start_info']).session_start_info
    assert start_info.hparams['batch'].string_value == '1x2'
    assert start_info.hparams['crop'].string_value == '%dx%d' % (SIZE, SIZE)
    assert start_info.hparams['data_list'].string_value == lst
    assert start_info.hparams['precision'].string_value == 'float32'
    assert '_hparams_/experiment' in hparams
    texts = acc.PluginTagToContent('text')
    assert {'run/command', 'run/provenance'} <= set(texts)
    record_text = acc.Tensors('run/provenance')[0].tensor_proto.string_val[0].decode()
    assert '"trained_on": "%s"' % lst in record_text and 'train_images' not in record_text


def test_safe_defaults(setup, tmp_path, capsys, monkeypatch):
    """No --restore-from: the default ./deeplab_resnet.ckpt is missing -> one line saying how
    to get initial weights; none without --is-training is refused; a missing list says how to
    make one."""
    root, lst, _ = setup
    monkeypatch.chdir(str(tmp_path))
    with pytest.raises(SystemExit) as info:
        train_msc.main(['--data-dir', root, '--data-list', lst, '--num-classes', '3',
                        '--snapshot-dir', str(tmp_path / 's')])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert err[0].startswith('error: ./deeplab_resnet.ckpt: no initial weights here')
    assert 'convert.py init.caffemodel' in err[0] and '--restore-from none' in err[0]
    with pytest.raises(SystemExit) as info:
        train_msc.get_arguments(['--restore-from', 'none'])
    assert info.value.code == 2
    assert '--is-training' in capsys.readouterr().err.strip().splitlines()[-1]
    with pytest.raises(SystemExit) as info:
        train_msc.main([])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1
    assert 'dataset/train.txt: list file not found' in err[0]
    assert 'python -m dataset.tools voc' in err[0]


def test_bad_validation_input_is_one_line(setup, tmp_path, capsys):
    """--val-list is checked before the graph is built: a missing list, labels outside the
    class count; and --val-every / --precision values are refused by the parser."""
    root, lst, _ = setup
    with pytest.raises(SystemExit) as info:
        train_msc.main(argv(setup, tmp_path / 's1', '--val-list', str(tmp_path / 'nope.txt')))
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert 'nope.txt: list file not found' in err[0]
    with pytest.raises(SystemExit) as info:   # the labels hold classes 0..2
        train_msc.main(argv(setup, tmp_path / 's2', '--val-list', lst) + ['--num-classes', '2',
                                                                           '--not-restore-last'])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert 'label values 2 are neither classes 0..1' in err[0]
    for flags in (['--val-every', '0'], ['--precision', 'float64']):
        with pytest.raises(SystemExit) as info:
            train_msc.get_arguments(flags)
        assert info.value.code == 2
        assert flags[0] in capsys.readouterr().err.strip().splitlines()[-1]
