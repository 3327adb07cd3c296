"""--class-weights and --top-k-pixels: the loss against one written in NumPy on hand-made
logits and labels (weights, ignored pixels, a fraction that keeps one pixel, the warm-up,
gradient accumulation), the paper's graph unchanged without them, and the trainer's wiring on
the small test network: the record and the HParams hold the settings, resuming refuses
others, bad weights files stop with one line."""
import hashlib
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from deeplab_resnet.checkpoint import provenance
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data import class_weights
from deeplab_resnet.network.msc import MSCOutput
from deeplab_resnet.training import losses, optim
from helpers import make_dataset

tf1 = tf.compat.v1
C = 4
IGNORE = 255


# ----------------------------------------------------------------------------- NumPy

def np_pixel_losses(logits, labels, weights=None):
    """[N, h, w] weighted cross-entropy (0 where ignored) and the valid mask, in float64."""
    logits = logits.astype(np.float64)
    valid = labels < C
    safe = np.where(valid, labels, 0)
    top = logits.max(axis=-1)
    lse = np.log(np.exp(logits - top[..., None]).sum(axis=-1)) + top
    xent = lse - np.take_along_axis(logits, safe[..., None], axis=-1)[..., 0]
    w = np.ones(C) if weights is None else np.asarray(weights, np.float64)
    return np.where(valid, xent * w[safe], 0.0), valid


def np_selected(logits, labels, weights, fraction):
    """(mask of the pixels the loss averages, divisor): every valid pixel over the valid
    count, or the k = max(1, floor(fraction * valid)) largest losses over k."""
    pixel, valid = np_pixel_losses(logits, labels, weights)
    if fraction is None:
        return valid, valid.sum()
    k = max(1, int(math.floor(fraction * valid.sum())))
    order = np.argsort(-pixel.ravel(), kind='stable')
    chosen = np.zeros(pixel.size, bool)
    chosen[order[:k]] = True
    return chosen.reshape(pixel.shape), k


def np_loss(logits, labels, weights=None, fraction=None):
    pixel, _ = np_pixel_losses(logits, labels, weights)
    chosen, divisor = np_selected(logits, labels, weights, fraction)
    return pixel[chosen].sum() / divisor


def np_grad(logits, labels, weights=None, fraction=None):
    """d loss / d logits: (softmax - one-hot) * weight / divisor on the chosen pixels."""
    chosen, divisor = np_selected(logits, labels, weights, fraction)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    onehot = np.eye(C)[np.where(labels < C, labels, 0)]
    w = np.ones(C) if weights is None else np.asarray(weights, np.float64)
    safe = np.where(labels < C, labels, 0)
    return (p - onehot) * (w[safe] * chosen / divisor)[..., None]


def hand_made(seed, shape=(2, 3, 4), ignored=3):
    """Logits [N, h, w, C] float32 with distinct pixel losses, labels [N, h, w] with
    `ignored` pixels set to the ignore label."""
    rng = np.random.RandomState(seed)
    logits = rng.normal(0, 2, shape + (C,)).astype(np.float32)
    labels = rng.randint(0, C, shape)
    labels.ravel()[rng.choice(labels.size, ignored, replace=False)] = IGNORE
    return logits, labels


WEIGHTS = (0.5, 2.0, 0.0, 3.5)   # a weight 0 too


def _run(fn):
    with tf.Graph().as_default(), tf1.Session() as sess:
        return sess.run(fn())


# ----------------------------------------------------------------------------- the loss

@pytest.mark.parametrize('weights,fraction', [(WEIGHTS, None), (None, 0.5), (WEIGHTS, 0.3),
                                              (WEIGHTS, 1.0)])
def test_four_terms_match_numpy(weights, fraction):
    """msc_loss with four towers of their own logits (at the labels' size): every term is the
    NumPy loss of its logits, weighted, over the valid pixels or their top k; the cross
    entropy is their sum."""
    towers = [hand_made(seed)[0] for seed in range(4)]
    labels = hand_made(0)[1]

    def build():
        ts = [tf.constant(t) for t in towers]
        loss = losses.msc_loss(MSCOutput(ts[0], ts[1:], []), tf.constant(labels[..., None]),
                               C, [], 0.0, (1.0, 0.75, 0.5), weights,
                               losses.top_k_fraction(fraction))
        return loss.terms, loss.cross_entropy
    terms, total = _run(build)
    want = [np_loss(t, labels, weights, fraction) for t in towers]
    np.testing.assert_allclose(list(terms.values()), want, rtol=1e-5)
    assert list(terms) == ['fused', 'scale_1', 'scale_0.75', 'scale_0.5']
    np.testing.assert_allclose(total, sum(want), rtol=1e-5)


@pytest.mark.parametrize('fraction', [0.1, 0.05])
def test_a_fraction_that_keeps_one_pixel(fraction):
    """10 valid pixels of 14: floor(0.1 x 10) = 1 and floor(0.05 x 10) = 0 -> k = 1: the loss
    is the largest weighted pixel loss, and only that pixel has a gradient."""
    logits, labels = hand_made(5, shape=(1, 2, 7), ignored=4)
    assert (labels < C).sum() == 10
    pixel, _ = np_pixel_losses(logits, labels, WEIGHTS)

    def build():
        x = tf.constant(logits)
        loss = losses.softmax_loss(x, tf.constant(labels[..., None]), C, WEIGHTS,
                                   losses.top_k_fraction(fraction))[0]
        return loss, tf.gradients(loss, x)[0]
    loss, grad = _run(build)
    np.testing.assert_allclose(loss, pixel.max(), rtol=1e-6)
    assert (np.abs(grad).sum(axis=-1) > 0).sum() == 1
    np.testing.assert_allclose(grad, np_grad(logits, labels, WEIGHTS, fraction), atol=1e-6)


def test_no_valid_pixel_is_a_zero_loss():
    logits, labels = hand_made(2, shape=(1, 2, 2), ignored=4)
    got = _run(lambda: [losses.softmax_loss(tf.constant(logits), tf.constant(labels[..., None]),
                                            C, WEIGHTS, f)[0]
                        for f in (None, losses.top_k_fraction(0.5))])
    assert got == [0.0, 0.0]


def test_the_warmup_schedule():
    """f = r * F + 1 - r, r = min(step / W, 1): with 21 valid pixels, F = 0.25, W = 4 the loss
    at steps 0, 1, 3, 4 and 9 averages the top 21, 17, 9, 5 and 5 pixels."""
    logits, labels = hand_made(7, shape=(1, 4, 6), ignored=3)
    n = (labels < C).sum()
    assert n == 21
    ks = []
    for step in (0, 1, 3, 4, 9):
        r = min(step / 4.0, 1.0)
        ks.append(max(1, int(math.floor((r * 0.25 + 1 - r) * n))))
    assert ks == [21, 17, 9, 5, 5]

    with tf.Graph().as_default(), tf1.Session() as sess:
        step = tf1.placeholder(tf.int64, [])
        loss = losses.softmax_loss(tf.constant(logits), tf.constant(labels[..., None]), C,
                                   WEIGHTS, losses.top_k_fraction(0.25, 4, step))[0]
        got = [sess.run(loss, {step: s}) for s in (0, 1, 3, 4, 9)]
    pixel = np.sort(np_pixel_losses(logits, labels, WEIGHTS)[0].ravel())[::-1]
    np.testing.assert_allclose(got, [pixel[:k].sum() / k for k in ks], rtol=1e-6)


@pytest.mark.parametrize('fraction', [None, 0.4])
def test_gradient_accumulation(fraction):
    """Two micro-batches with different numbers of ignored pixels, accumulated
    (--grad-update-every 2): the accumulated gradient is the mean of the two micro-batches'
    NumPy gradients, each with its own valid count or its own k."""
    batches = [hand_made(11, ignored=2), hand_made(12, ignored=9)]
    with tf.Graph().as_default(), tf1.Session() as sess:
        logits = tf1.get_variable('res2a_branch2a/weights', batches[0][0].shape,
                                  initializer=tf1.zeros_initializer())
        offset = tf1.placeholder(tf.float32, batches[0][0].shape)
        labels = tf1.placeholder(tf.int32, batches[0][1].shape + (1,))
        loss = losses.softmax_loss(logits + offset, labels, C, WEIGHTS,
                                   losses.top_k_fraction(fraction))[0]
        ops = optim.build_train_ops(loss, [logits], 0.1, 0.9, 10, 0.9, grad_update_every=2,
                                    update_ops=[])
        sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
        for x, y in batches:
            sess.run(ops.accumulate, {offset: x, labels: y[..., None]})
        got = sess.run(ops.accumulators[0])
    want = np.mean([np_grad(x, y, WEIGHTS, fraction) for x, y in batches], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_without_the_flags_the_graph_is_the_papers():
    """No weights, no top k: no gather, no top-k, no float64 op in the loss's graph (the
    loss as before these flags); with them, both appear."""
    logits, labels = hand_made(3)

    def op_types(weights=None, fraction=None):
        with tf.Graph().as_default() as g:
            losses.softmax_loss(tf.constant(logits), tf.constant(labels[..., None]), C,
                                weights, losses.top_k_fraction(fraction))
            return set(op.type for op in g.get_operations())
    plain = op_types()
    assert not plain & {'GatherV2', 'TopKV2', 'Floor', 'Maximum'}
    assert {'GatherV2', 'TopKV2', 'Floor'} <= op_types(WEIGHTS, 0.5)
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match='3 class weights for 4 classes'):
            losses.softmax_loss(tf.constant(logits), tf.constant(labels[..., None]), C,
                                WEIGHTS[:3])


# ----------------------------------------------------------------------------- the file

def _weights_file(path, values, names=None):
    classes = [{'index': i, 'name': (names or ['c%d' % i for i in range(len(values))])[i],
                'weight': v} for i, v in enumerate(values)]
    with open(path, 'w') as f:
        json.dump({'method': 'median-frequency', 'classes': classes}, f)
    return str(path)


@pytest.mark.parametrize('values,message', [
    ([1.0, 2.0], 'weights for 2 classes, this run has --num-classes 3'),
    ([1.0, -0.5, 1.0], 'class 1 (c1): weight -0.5 is negative'),
    ([1.0, float('nan'), 1.0], 'class 1 (c1): weight nan is not finite'),
    ([1.0, 1.0, float('inf')], 'class 2 (c2): weight inf is not finite'),
    ([0, 0, 0], 'every weight is 0'),
    ([1.0, 'x', 1.0], "class 1 (c1): weight 'x' is not a number")])
def test_bad_weights_files_are_one_line(tmp_path, values, message):
    path = _weights_file(tmp_path / 'w.json', values)
    with pytest.raises(InputError) as e:
        class_weights.read(path, 3)
    assert str(e.value).startswith('%s: %s' % (path, message)), str(e.value)


def test_unreadable_weights_files_are_one_line(tmp_path):
    missing = str(tmp_path / 'missing.json')
    with pytest.raises(InputError, match='^%s: cannot read the class weights'
                       % missing):
        class_weights.read(missing, 3)
    broken = tmp_path / 'broken.json'
    broken.write_text('{"classes": [{"weight": 1}')
    with pytest.raises(InputError, match='not a class-weights file'):
        class_weights.read(str(broken), 1)


@pytest.mark.parametrize('argv,message', [
    (['--top-k-pixels', '0'], "argument --top-k-pixels: expected a fraction in (0, 1], got '0'"),
    (['--top-k-pixels', '1.5'], "expected a fraction in (0, 1], got '1.5'"),
    (['--top-k-pixels', 'nan'], "expected a fraction in (0, 1], got 'nan'"),
    (['--top-k-pixels-warmup', '10'], '--top-k-pixels-warmup needs --top-k-pixels'),
    (['--top-k-pixels', '0.5', '--top-k-pixels-warmup', '-1'], 'expected an integer >= 0')])
def test_bad_hard_pixel_flags_are_a_usage_error(argv, message, capsys):
    import train_msc
    with pytest.raises(SystemExit) as e:
        train_msc.get_arguments(argv)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert ': error: ' in last and message in last, last


def test_flags_default_to_the_papers_loss():
    import train_msc
    from deeplab_resnet.training.train_step import PAPER, hparams_from_args
    args = train_msc.get_arguments([])
    assert (args.class_weights, args.top_k_pixels, args.top_k_pixels_warmup) == (None, None, 0)
    hparams = hparams_from_args(args, False)
    assert (hparams.class_weights, hparams.top_k_pixels, hparams.top_k_pixels_warmup) == (
        PAPER.class_weights, PAPER.top_k_pixels, PAPER.top_k_pixels_warmup) == (None, None, 0)


# ----------------------------------------------------------------------------- the trainer

@pytest.fixture(scope='module')
def data(module_dir):
    root = str(module_dir('balance'))
    return root, make_dataset(root, num_images=2, sizes=((30, 30),), num_classes=3)


def _command(root, lst, snap, *extra):
    return ['--data-dir', root, '--data-list', lst, '--input-size', '25,25',
            '--num-classes', '3', '--batch-size', '1', '--grad-update-every', '2',
            '--scales', '1', '--snapshot-dir', str(snap), '--threads', '2',
            '--restore-from', 'none', '--is-training', '--save-pred-every', '2',
            '--log-every', '1'] + list(extra)


def _swap(command, flag, value):
    """The command with flag's value replaced (None: the flag dropped)."""
    i = command.index(flag)
    return command[:i] + ([flag, value] if value is not None else []) + command[i + 2:]


@pytest.mark.usefixtures('small_network')   # the wiring is the point, not the network's size
def test_trainer_records_weights_and_hard_pixels_and_resume_compares_them(data, tmp_path,
                                                                          capsys):
    """Two steps with --class-weights and --top-k-pixels: the record holds the weights'
    values and the file's sha256 (computed here from its bytes) and the top-k settings; the
    HParams dashboard has them; resuming with other weights (same count), without them or
    with another fraction is one line; a file for another class count is one line before any
    graph."""
    import train_msc
    root, lst = data
    snap = tmp_path / 'snap'
    weights = _weights_file(tmp_path / 'w.json', [0.25, 1.5, 2.0])
    command = _command(root, lst, snap, '--num-steps', '2', '--class-weights', weights,
                       '--top-k-pixels', '0.5', '--top-k-pixels-warmup', '1')
    assert train_msc.main(command) == 0
    capsys.readouterr()
    record = provenance.read_record(str(snap / 'model.ckpt-2'))
    with open(weights, 'rb') as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    assert record['class_weights']['values'] == [0.25, 1.5, 2.0]
    assert record['class_weights']['sha256'] == sha
    assert (record['top_k_pixels'], record['top_k_pixels_warmup']) == (0.5, 1)

    events = [n for n in os.listdir(str(snap)) if n.startswith('events.')]
    acc = EventAccumulator(str(snap / events[0]), size_guidance={'tensors': 0}).Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent('hparams')['_hparams_/session_start_info']).session_start_info
    assert start.hparams['loss_class_weights'].string_value == 'sha256 ' + sha[:12]
    assert start.hparams['loss_class_weight_values'].string_value == '0.25,1.5,2'
    assert start.hparams['loss_top_k_pixels'].number_value == 0.5
    assert start.hparams['loss_top_k_pixels_warmup'].number_value == 1

    other = _weights_file(tmp_path / 'other.json', [0.25, 1.5, 2.5])
    more = _swap(command, '--num-steps', '4')
    for changed, says in (
            (_swap(more, '--class-weights', other),
             'the class weights ([0.25, 1.5, 2]; this command: --class-weights %s '
             '[0.25, 1.5, 2.5])' % other),
            (_swap(more, '--class-weights', None),
             'the class weights ([0.25, 1.5, 2]; this command: none)'),
            (_swap(more, '--top-k-pixels', '0.25'), '--top-k-pixels (0.5; this command: 0.25)')):
        with pytest.raises(SystemExit) as e:
            train_msc.main(changed)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert 'cannot resume' in err and says in err, err
    assert sorted(os.listdir(str(snap))).count('model.ckpt-2.index') == 1

    wrong = _weights_file(tmp_path / 'two.json', [1.0, 2.0])
    with pytest.raises(SystemExit) as e:
        train_msc.main(_command(root, lst, tmp_path / 'fresh', '--num-steps', '1',
                                '--class-weights', wrong))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == 'error: %s: weights for 2 classes, this run has --num-classes 3' % wrong
    assert not os.path.exists(str(tmp_path / 'fresh' / 'model.ckpt-1.index'))
