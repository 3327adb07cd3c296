"""train_msc.py: accumulation, learning, summaries, snapshots / resume, bad input.

The small test network (ResNet-101's stem, strides, dilations, ASPP and names with one block
per stage: conftest.small_network, DEEPLAB_BLOCKS) except in the from-scratch recipe test,
train_msc.py's end-to-end run of the real ResNet-101 (its 33 residual branches, 104 batch
norms).
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

import train_msc
from deeplab_resnet.checkpoint import checkpoints
from deeplab_resnet.data.colormap import IGNORE_COLOUR
from deeplab_resnet.network import msc
from deeplab_resnet.runtime.session import session_config
from deeplab_resnet.training import losses, optim
from helpers import (TOY_PALETTE, TOY_SERVER_IDS, make_calibrated_checkpoint, make_checkpoint,
                     make_dataset, make_descriptor, read_until)

pytestmark = pytest.mark.usefixtures('small_network')
tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 33
LEARNING_TEST_LR = '2.5e-4'
ONE_SCALE = (1.0,)


@pytest.fixture(scope='module')
def data(module_dir):
    root = str(module_dir('train_data'))
    return root, make_dataset(root, num_images=6, sizes=((40, 50), (41, 37)), num_classes=3)


def base_args(data, snapshot_dir, *extra):
    root, lst = data
    return ['--data-dir', root, '--data-list', lst, '--input-size', '%d,%d' % (SIZE, SIZE),
            '--num-classes', '3', '--batch-size', '2', '--grad-update-every', '1',
            '--snapshot-dir', str(snapshot_dir), '--threads', '2', '--restore-from', 'none',
            '--is-training'] + list(extra)


def read_events(directory):
    scalars, images, graphs = {}, {}, 0
    for name in sorted(os.listdir(directory)):
        if not name.startswith('events.'):
            continue
        for event in tf1.train.summary_iterator(os.path.join(directory, name)):
            graphs += bool(event.graph_def)
            for value in event.summary.value:
                if value.HasField('image'):
                    images.setdefault(value.tag, []).append((event.step, value.image))
                else:
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars, images, graphs


def _train_graph(batch, k):
    """Frozen batch norm, one tower (the accumulation does not depend on the towers), the
    real loss and update ops on placeholders."""
    images = tf1.placeholder(tf.float32, [batch, SIZE, SIZE, 3])
    labels = tf1.placeholder(tf.uint8, [batch, SIZE, SIZE, 1])
    out = msc.multi_scale_logits(images, 3, is_training=False, scales=ONE_SCALE)
    variables = checkpoints.model_variables()
    loss = losses.msc_loss(out, labels, 3, variables, 5e-4, ONE_SCALE)
    trainable = [v for v in variables if v in tf1.trainable_variables()]
    ops = optim.build_train_ops(loss.total, trainable, 1e-3, 0.9, 10, 0.9, k)
    return images, labels, ops, trainable


def test_accumulated_micro_batches_equal_one_big_batch(data, tmp_path):
    """With frozen batch norm, 2 accumulated batches of 1 give the update of one batch of 2
    (two updates, so that the momentum is exercised too). The batch-norm statistics are those
    of the images (an uncalibrated random network's activations reach ~1e7, where the
    rounding of other kernels for batch 1 and 2 is no longer negligible)."""
    rng = np.random.RandomState(0)
    x = rng.normal(0, 50, (2, 2, SIZE, SIZE, 3)).astype(np.float32)   # [update, image, ...]
    y = rng.randint(0, 3, (2, 2, SIZE, SIZE, 1)).astype(np.uint8)
    init = make_calibrated_checkpoint(str(tmp_path), data[0], data[1], (SIZE, SIZE))
    results = []
    for batch, k in [(2, 1), (1, 2)]:
        with tf.Graph().as_default():
            images, labels, ops, trainable = _train_graph(batch, k)
            with tf1.Session(config=session_config(2)) as sess:
                sess.run([tf1.global_variables_initializer(),
                          tf1.local_variables_initializer()])
                checkpoints.restore_variables(sess, init, checkpoints.model_variables())
                for update in range(2):
                    if k == 1:
                        sess.run(ops.apply, {images: x[update], labels: y[update]})
                    else:
                        for i in range(2):
                            sess.run(ops.accumulate, {images: x[update, i:i + 1],
                                                      labels: y[update, i:i + 1]})
                        sess.run(ops.apply)
                results.append({v.op.name: sess.run(v) for v in trainable})
    moved = 0
    for name, value in results[0].items():
        np.testing.assert_allclose(results[1][name], value, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    with tf.Graph().as_default():
        start = dict((n, tf.train.load_variable(init, n)) for n in results[0])
    moved = sum(not np.allclose(start[n], results[0][n]) for n in results[0])
    assert moved == len(results[0])   # every trainable variable took part


def colours_of(png_bytes, columns):
    """The set of RGB colours in columns [a, b) of a summary image."""
    import io
    from PIL import Image
    rgb = np.asarray(Image.open(io.BytesIO(png_bytes)).convert('RGB'))[:, columns[0]:columns[1]]
    return set(map(tuple, rgb.reshape(-1, 3).tolist()))


def test_training_learns_and_writes_summaries(data, tmp_path):
    snap = tmp_path / 'snap'
    # The data flags from a dataset descriptor alone (its "train" split, names, colours).
    desc = make_descriptor(tmp_path, data[0], {'train': data[1]})
    # From scratch, the paper's x10 / x20 classifier rates oscillate (docs/demo.md);
    # with 0.1 / 0.2 the fused loss measured 2.60 at step 1 and 0.66 over steps 26-30.
    code = train_msc.main(['--dataset', desc, '--input-size', '%d,%d' % (SIZE, SIZE),
                           '--batch-size', '2', '--grad-update-every', '1',
                           '--snapshot-dir', str(snap), '--threads', '2',
                           '--restore-from', 'none', '--num-steps', '30', '--is-training',
                           '--learning-rate', LEARNING_TEST_LR, '--aspp-lr-mult', '0.1,0.2',
                           '--save-pred-every', '15', '--save-num-images', '2',
                           '--keep-snapshots', '1'])
    assert code == 0
    scalars, images, graphs = read_events(str(snap))
    for tag in ['loss/total', 'loss/cross_entropy', 'loss/weight_decay', 'loss/fused',
                'loss/scale_1', 'loss/scale_0.75', 'loss/scale_0.5', 'learning_rate',
                'pixel_accuracy']:
        assert [s for s, _ in scalars[tag]] == list(range(1, 31)), tag
    fused = [v for _, v in scalars['loss/fused']]
    assert np.mean(fused[-5:]) < 0.5 * fused[0], fused
    lr = dict(scalars['learning_rate'])
    assert lr[1] == pytest.approx(float(LEARNING_TEST_LR))                 # step 0's rate
    assert lr[11] == pytest.approx(float(LEARNING_TEST_LR) * (1 - 10 / 30.) ** 0.9, rel=1e-5)
    assert graphs >= 1
    # Two rows of image | label | prediction, each SIZE x 3 SIZE, at steps 15 and 30.
    assert sorted(images) == ['image_label_prediction/image/0', 'image_label_prediction/image/1']
    palette = set(map(tuple, TOY_PALETTE))
    for shots in images.values():
        assert [s for s, _ in shots] == [15, 30]
        assert (shots[0][1].height, shots[0][1].width) == (SIZE, 3 * SIZE)
        # Label and prediction panels in the descriptor's colours (none of them VOC's).
        encoded = shots[-1][1].encoded_image_string
        label_colours = colours_of(encoded, (SIZE, 2 * SIZE))
        assert label_colours <= palette | {IGNORE_COLOUR} and label_colours & palette
        assert colours_of(encoded, (2 * SIZE, 3 * SIZE)) <= palette
    with open(str(snap / 'model.ckpt-30.json')) as f:
        record = json.load(f)
    assert record['class_names'] == ['bg', 'rect', 'disc'] and record['num_classes'] == 3
    assert record['palette'] == TOY_PALETTE and record['server_ids'] == TOY_SERVER_IDS
    assert record['dataset'] == desc and record['train_list']['path'] == data[1]
    assert sorted(os.listdir(str(snap))).count('checkpoint') == 1
    assert checkpoints.latest_in_dir(str(snap)).endswith('model.ckpt-30')
    stored = dict(tf.train.list_variables(str(snap / 'model.ckpt-30')))
    assert 'conv1/weights/Momentum' in stored and 'global_step' in stored


def _start(data, snap, *extra):
    cmd = [sys.executable, os.path.join(ROOT, 'train_msc.py')] + base_args(data, snap, *extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED='1'))


def test_kill_and_resume_continue_the_schedule(data, tmp_path):
    snap = tmp_path / 'snap'
    proc = _start(data, snap, '--num-steps', '6', '--save-pred-every', '2', '--is-training',
                  '--scales', '1', '--keep-snapshots', '1')
    read_until(proc, 'saved snapshot')
    proc.send_signal(signal.SIGKILL)          # a crash: no chance to save
    proc.wait(timeout=60)
    saved = checkpoints.latest_in_dir(str(snap))
    step = int(saved.rsplit('-', 1)[1])
    before = tf.train.load_variable(saved, 'res5a_branch2c/weights')
    proc = _start(data, snap, '--num-steps', '6', '--save-pred-every', '2', '--is-training',
                  '--scales', '1', '--keep-snapshots', '1')
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    assert 'resumed from %s at step %d' % (saved, step) in out
    steps = [int(l.split()[1].split('/')[0]) for l in out.splitlines() if l.startswith('step ')]
    assert steps == list(range(step + 1, 7))
    lr_first = float(out.split('step %d/6' % (step + 1))[1].split(' lr ')[1].split()[0])
    assert lr_first == pytest.approx(2.5e-4 * (1 - step / 6.) ** 0.9, rel=1e-2)
    after = tf.train.load_variable(str(snap / 'model.ckpt-6'), 'res5a_branch2c/weights')
    # Continued from the snapshot: a few small updates away, not a fresh initialisation.
    assert np.abs(after - before).max() < 0.05 * np.abs(before).max()
    # --keep-snapshots 1: the older snapshots and their provenance records are gone.
    kept = sorted(n for n in os.listdir(str(snap)) if n.startswith('model.ckpt'))
    assert kept == ['model.ckpt-6.data-00000-of-00001', 'model.ckpt-6.index',
                    'model.ckpt-6.json'], kept


def test_ctrl_c_saves_a_snapshot(data, tmp_path):
    snap = tmp_path / 'snap'
    proc = _start(data, snap, '--num-steps', '1000', '--save-pred-every', '500',
                  '--is-training', '--scales', '1')
    read_until(proc, 'step 1/1000')
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    saved = checkpoints.latest_in_dir(str(snap))
    assert saved is not None and 'interrupted at step' in out
    assert 'run the same command to continue' in out


def _error_line(capsys, argv):
    with pytest.raises(SystemExit) as info:
        train_msc.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return info.value.code, err


def test_bad_input(data, tmp_path, capsys):
    root, lst = data
    broken = tmp_path / 'broken.txt'
    broken.write_text(open(lst).read() + '/images/nope.jpg /labels/nope.png\n')
    code, err = _error_line(capsys, base_args((root, str(broken)), tmp_path / 's1',
                                              '--num-steps', '1'))
    assert code == 2 and len(err) == 1 and 'nope.jpg' in err[0] and 'line 7' in err[0]

    for flags in (['--input-size', '321'], ['--num-steps', '-3'], ['--img-mean', '1,2'],
                  ['--keep-snapshots', '0']):
        with pytest.raises(SystemExit) as info:
            train_msc.get_arguments(flags)
        assert info.value.code == 2
        assert flags[0] in capsys.readouterr().err.strip().splitlines()[-1]

    other = make_checkpoint(str(tmp_path / 'ck21'), num_classes=21)
    code, err = _error_line(capsys, base_args(data, tmp_path / 's2', '--num-steps', '1',
                                              '--restore-from', other, '--scales', '1'))
    assert code == 2 and len(err) == 1
    assert '21 classes' in err[0] and '--num-classes is 3' in err[0]
    assert '--not-restore-last' in err[0]


def test_not_restore_last_and_non_finite_loss(data, tmp_path, capsys):
    other = make_checkpoint(str(tmp_path / 'ck21'), num_classes=21)
    assert train_msc.main(base_args(data, tmp_path / 's3', '--num-steps', '1',
                                    '--restore-from', str(tmp_path / 'ck21'),
                                    '--not-restore-last', '--scales', '1')) == 0
    out = capsys.readouterr().out
    # The 93 variables of the small network less the 8 of the classifier.
    assert 'initialised 85 network variables from %s' % other in out
    code = train_msc.main(base_args(data, tmp_path / 's4', '--num-steps', '5',
                                    '--learning-rate', '1e30', '--scales', '1'))
    out = capsys.readouterr().out
    assert code == 3 and 'the loss is not finite' in out and 'at step' in out


def test_from_scratch_recipe_adam_bn_params_zero_residual(data, tmp_path, capsys,
                                                         monkeypatch):
    """--optimizer adam --train-bn-params --zero-init-residual (the demo's recipe): the 33
    residual branches' last gamma start at 0 and, like every gamma and beta, take Adam's
    first step (|change| = lr, the first Adam step being lr * sign(g)); Adam slots are saved.
    The real ResNet-101 (train_msc.py's one end-to-end run of it here)."""
    monkeypatch.delenv('DEEPLAB_BLOCKS')
    lr = 1e-3
    snap = tmp_path / 'adam'
    assert train_msc.main(base_args(data, snap, '--num-steps', '1', '--scales', '1',
                                    '--is-training', '--optimizer', 'adam',
                                    '--learning-rate', str(lr), '--aspp-lr-mult', '1,1',
                                    '--train-bn-params', '--zero-init-residual')) == 0
    assert 'residual branches start at zero' in capsys.readouterr().out
    stored = dict(tf.train.list_variables(str(snap / 'model.ckpt-1')))
    # 3 + 4 + 23 + 3 blocks; 1 + 33 * 3 + 4 batch norms (conv1, three per block, shortcuts).
    branch2c = [n for n in stored if n.endswith('_branch2c/gamma')]
    gammas = [n for n in stored if n.endswith('/gamma')]
    assert len(branch2c) == 33 and len(gammas) == 104
    assert 'bn_conv1/gamma/Adam' in stored and 'conv1/weights/Adam_1' in stored
    def first_adam_step(name, start):
        # lr * g / (|g| + 1e-8 / sqrt(1 - beta2)): lr where |g| >> 3e-7, never more.
        step = np.abs(tf.train.load_variable(str(snap / 'model.ckpt-1'), name) - start)
        assert step.max() <= lr * 1.001, name
        assert np.median(step) == pytest.approx(lr, rel=1e-3), name

    for name in ('bn5c_branch2c/gamma', 'bn2a_branch2c/gamma', 'bn4b22_branch2c/gamma'):
        first_adam_step(name, 0.0)
    first_adam_step('bn_conv1/gamma', 1.0)
    first_adam_step('bn_conv1/beta', 0.0)

    with pytest.raises(SystemExit) as info:
        train_msc.get_arguments(['--zero-init-residual'])
    assert info.value.code == 2
    assert '--zero-init-residual needs --train-bn-params' in capsys.readouterr().err


# A wrapper around train_msc.main that prints a marker at a chosen moment of the start-up:
# while `import tensorflow` starts (an audit hook), or when the training graph is being built.
MARKED_START = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    moment = sys.argv[2]
    marked = []

    def hook(event, args):
        if moment == 'imports' and event == 'import' and args[0] == 'tensorflow' and not marked:
            marked.append(1)
            print('MARK: importing tensorflow', flush=True)

    sys.addaudithook(hook)
    import train_msc
    if moment == 'graph':
        from deeplab_resnet.training import trainer
        real = trainer.build_train_step

        def build_train_step(*args, **kwargs):
            print('MARK: building the graph', flush=True)
            return real(*args, **kwargs)
        trainer.build_train_step = build_train_step
    sys.exit(train_msc.main(sys.argv[3:]))
''')


@pytest.mark.parametrize('moment, sig, code, name', [
    ('imports', signal.SIGINT, 130, 'Ctrl-C'), ('graph', signal.SIGTERM, 143, 'SIGTERM')])
def test_signal_during_start_up_exits_at_once(data, tmp_path, moment, sig, code, name):
    """Ctrl-C while TensorFlow is imported, SIGTERM while the ResNet graph is built: exit
    within seconds with 130 / 143 and one line (no KeyboardInterrupt traceback), nothing
    written to the snapshot folder (nothing was trained)."""
    snap = tmp_path / 'snap'
    proc = subprocess.Popen(
        [sys.executable, '-c', MARKED_START, ROOT, moment] + base_args(data, snap),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED='1'))
    read_until(proc, 'MARK: ')
    t0 = time.time()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    seconds = time.time() - t0
    print('%s during %s to exit: %.1f s' % (name, moment, seconds))
    assert proc.returncode == code, out
    assert seconds < 30, out
    assert [l for l in out.splitlines() if l.strip()] == [
        '%s during start-up: nothing trained yet, nothing to save; exiting' % name], out
    assert not snap.exists() or not [n for n in os.listdir(str(snap)) if 'ckpt' in n]


def test_labels_outside_the_classes_stop_training(data, tmp_path, capsys):
    """--num-classes 2 on masks holding class 2: the first batch stops the run with one line
    naming a mask (exit 2), nothing saved; the flag that lets it through is the evaluation's."""
    root, lst = data
    code, err = _error_line(capsys, base_args(data, tmp_path / 's', '--num-classes', '2',
                                              '--scales', '1', '--num-steps', '1'))
    assert code == 2 and len(err) == 1, err
    assert re.match(r'error: %s/labels/img\d{3}\.png: label values 2 are neither classes '
                    r'0\.\.1 nor the ignore label 255 \(pass --ignore-out-of-range'
                    % re.escape(root), err[0]), err
    assert checkpoints.latest_in_dir(str(tmp_path / 's')) is None
    assert train_msc.get_arguments(['--ignore-out-of-range']).ignore_out_of_range
