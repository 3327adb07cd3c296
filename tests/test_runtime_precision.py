"""--precision bfloat16 / float16: when each runs, that their predictions stay those of float32,
and that float16 training with loss scaling follows float32's losses."""
import collections

import numpy as np
import pytest
import tensorflow as tf

from deeplab_resnet.checkpoint import checkpoints
from deeplab_resnet.network import msc
from deeplab_resnet.runtime import precision
from helpers import make_calibrated_checkpoint, make_dataset

tf1 = tf.compat.v1
SIZE = 49


NO_FAST_CPU = {'avx2', 'fma'}
BF16_CPU = {'avx2', 'avx512_bf16'}
# (requested, GPU compute capability or None for no GPU, CPU flags, expected, warns)
CHOICES = [
    ('float32', None, NO_FAST_CPU, 'float32', False),
    ('float32', (6, 1), NO_FAST_CPU, 'float32', False),
    # bfloat16: bf16 tensor cores from Ampere (8.0); without a GPU, AVX512_BF16 or AMX.
    ('bfloat16', None, NO_FAST_CPU, 'float32', True),
    ('bfloat16', None, BF16_CPU, 'bfloat16', False),
    ('bfloat16', None, {'amx_bf16'}, 'bfloat16', False),
    ('bfloat16', (6, 1), NO_FAST_CPU, 'float32', True),
    ('bfloat16', (7, 0), NO_FAST_CPU, 'float32', True),
    ('bfloat16', (7, 5), BF16_CPU, 'float32', True),   # the GPU runs the network, not the CPU
    ('bfloat16', (8, 0), NO_FAST_CPU, 'bfloat16', False),
    ('bfloat16', (9, 0), NO_FAST_CPU, 'bfloat16', False),
    # float16: fp16 tensor cores from Volta (7.0; T4 7.5); a CPU runs it, slowly, saying so.
    ('float16', None, NO_FAST_CPU, 'float16', True),
    ('float16', None, BF16_CPU, 'float16', True),
    ('float16', (6, 1), NO_FAST_CPU, 'float32', True),
    ('float16', (7, 0), NO_FAST_CPU, 'float16', False),
    ('float16', (7, 5), NO_FAST_CPU, 'float16', False),
    ('float16', (8, 0), NO_FAST_CPU, 'float16', False),
    ('float16', (9, 0), NO_FAST_CPU, 'float16', False),
]


@pytest.mark.parametrize('requested,capability,flags,expected,warns', CHOICES)
def test_precision_per_compute_capability(monkeypatch, requested, capability, flags, expected,
                                          warns):
    monkeypatch.setattr(precision, 'gpu_compute_capability', lambda: capability)
    warnings = []
    assert precision.choose(requested, warnings.append, flags=flags) == expected
    assert len(warnings) == (1 if warns else 0)
    if warns:
        assert warnings[0].startswith('--precision %s: ' % requested)
        assert ('float32' in warnings[0]) and '\n' not in warnings[0]
        if capability is not None:
            assert '%d.%d' % capability in warnings[0]
    # The capability passed in directly decides the same way.
    if capability is not None:
        monkeypatch.setattr(precision, 'gpu_compute_capability', lambda: 1 / 0)
        assert precision.choose(requested, [].append, flags, capability) == expected


def test_compute_capability_of_the_first_gpu(monkeypatch):
    device = collections.namedtuple('PhysicalDevice', ['name', 'device_type'])
    gpus = [device('/physical_device:GPU:0', 'GPU'), device('/physical_device:GPU:1', 'GPU')]
    details = {gpus[0]: {'device_name': 'Tesla T4', 'compute_capability': (7, 5)},
               gpus[1]: {'compute_capability': (9, 0)}}
    monkeypatch.setattr(tf.config, 'list_physical_devices', lambda kind=None: gpus)
    monkeypatch.setattr(tf.config.experimental, 'get_device_details', details.get)
    assert precision.gpu_compute_capability() == (7, 5)
    gpus[:] = []
    assert precision.gpu_compute_capability() is None


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\n'
                    'processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512_bf16\n')
    assert precision.cpu_flags(str(info)) == {'fpu', 'sse2', 'avx2', 'avx512_bf16'}
    assert precision.cpu_flags(str(tmp_path / 'missing')) == set()


@pytest.fixture(scope='module')
def network(module_dir, small_network):
    """The small test network (conftest.small_network): one block per stage."""
    root = str(module_dir('precision_data'))
    lst = make_dataset(root, num_images=2, sizes=((SIZE, SIZE),), num_classes=3)
    return make_calibrated_checkpoint(root + '/init', root, lst, (SIZE, SIZE))


@pytest.fixture(scope='module')
def float32_reference(network):
    """(images [1, SIZE, SIZE, 3], their float32 fused logits), shared by the 16-bit tests."""
    images = np.random.RandomState(0).normal(0, 40, (1, SIZE, SIZE, 3)).astype(np.float32)
    return images, fused_logits(network, images, 'float32')


def fused_logits(prefix, images, arithmetic):
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [1, None, None, 3])
        logits = msc.multi_scale_logits(x, 3, False, (1.0, 0.75, 0.5),
                                        precision=arithmetic).fused
        with tf1.Session() as sess:
            checkpoints.restore_variables(sess, prefix, checkpoints.model_variables())
            return sess.run(logits, {x: images})


def test_bfloat16_towers_give_float32_logits_close_to_float32(network, float32_reference):
    """bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 per operation): through the
    layers of this untrained network (whose logits amplify every rounding; measured through
    ResNet-101's 100 layers: median error 1.8% of the logits' range, largest 13%; through the
    small test network's 17 used here: 0.5%, 3.4%) the logits stay close, and the argmax of
    every pixel whose decision is clear stays. (On the trained demo model 99.92% of the
    pixels keep their label.) The variables stay float32 (the float32 checkpoint restores
    into the bfloat16 graph); the logits come back as float32."""
    images, l32 = float32_reference
    l16 = fused_logits(network, images, 'bfloat16')
    assert l16.dtype == np.float32 and l16.shape == l32.shape == (1, 7, 7, 3)
    scale = np.abs(l32).max()
    error = np.abs(l16 - l32)
    assert np.median(error) < 0.04 * scale and error.max() < 0.25 * scale
    ordered = np.sort(l32, axis=-1)
    clear = ordered[..., -1] - ordered[..., -2] > 0.1 * scale
    assert clear.mean() > 0.5
    assert np.array_equal(l16.argmax(-1)[clear], l32.argmax(-1)[clear])



def test_float16_towers_give_float32_logits_closer_than_bfloat16(network, float32_reference):
    """float16 keeps 11 bits of mantissa (relative rounding 2^-12, 8x finer than bfloat16's):
    on the same untrained network the float16 logits' error is a fraction of bfloat16's
    (measured: median 0.30% of the logits' range, largest 3.1%; bfloat16 1.8% and 13%), and
    every pixel whose decision is clear keeps its label. (Its range ends at 65504: this
    network's activations stay below it, or the logits would not be finite.)"""
    images, l32 = float32_reference
    l16 = fused_logits(network, images, 'float16')
    assert l16.dtype == np.float32 and l16.shape == l32.shape == (1, 7, 7, 3)
    scale = np.abs(l32).max()
    error = np.abs(l16 - l32)
    assert np.isfinite(l16).all()
    assert 0 < np.median(error) < 0.01 * scale and error.max() < 0.06 * scale
    ordered = np.sort(l32, axis=-1)
    clear = ordered[..., -1] - ordered[..., -2] > 0.1 * scale
    assert clear.mean() > 0.5
    assert np.array_equal(l16.argmax(-1)[clear], l32.argmax(-1)[clear])

TRAIN_SIZE = 33
TRAIN_STEPS = 3
TRAIN_LR = 3e-6
LOSS_RTOL = 0.01


def test_float16_training_with_loss_scaling_follows_float32(network, monkeypatch):
    """3 momentum updates at 33 px (one tower, frozen batch norm) through
    train_step.build_train_step in float32 and in float16, from the same weights and batches:
    the float16 cross-entropy (float16 towers, float32 logits and loss) before each update and
    after the last stays within LOSS_RTOL of float32's (measured: at most 0.18%), while the
    updates move it by far more (2.21 to 1.60: the same batch every step). Only the classifier
    (ASPP) trains, so that the float16 backward pass stays cheap on a CPU; its weights start at
    1% of the random checkpoint's so that the losses are those of a network that has begun to
    learn (about 2, not 30). The loss scale starts at 2^10 here, where no update overflows
    (every one must be applied for the comparison; the skip is tested in test_training_loss_scale.py):
    at the default 2^15 this random network's classifier gradients overflow float16 and the
    first updates are skipped."""
    from deeplab_resnet.network.model import is_aspp_variable, variable_name
    from deeplab_resnet.runtime.session import session_config
    from deeplab_resnet.training import optim, train_step
    monkeypatch.setattr(train_step, 'trainable_variables', lambda variables, bn=False: [
        v for v in variables if is_aspp_variable(variable_name(v))])
    make_scale = optim.dynamic_loss_scale
    monkeypatch.setattr(optim, 'dynamic_loss_scale', lambda: make_scale(2.0 ** 10))
    rng = np.random.RandomState(0)
    feed_values = (rng.normal(0, 40, (1, TRAIN_SIZE, TRAIN_SIZE, 3)).astype(np.float32),
                   rng.randint(0, 3, (1, TRAIN_SIZE, TRAIN_SIZE, 1)).astype(np.uint8))
    losses = {}
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [1, TRAIN_SIZE, TRAIN_SIZE, 3])
        y = tf1.placeholder(tf.uint8, [1, TRAIN_SIZE, TRAIN_SIZE, 1])
        steps = {}
        for arithmetic in ('float32', 'float16'):
            hparams = train_step.PAPER._replace(num_classes=3, scales=(1.0,),
                                                learning_rate=TRAIN_LR, precision=arithmetic,
                                                grad_update_every=1)
            with tf1.variable_scope(tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE):
                steps[arithmetic] = train_step.build_train_step(x, y, hparams)
        network_variables = checkpoints.model_variables()
        names = [variable_name(v) for v in tf1.global_variables()]
        assert 'loss_scale/scale' in names and 'loss_scale/finite_updates' in names
        assert not any(n.startswith('loss_scale/') for n in map(variable_name,
                                                                 network_variables))
        assert all(v.dtype.base_dtype == tf.float32 for v in network_variables)
        aspp = [v for v in network_variables if is_aspp_variable(variable_name(v))]
        shrink = tf.group(*[v.assign(0.01 * v) for v in aspp])
        scale = steps['float16'].ops.loss_scale
        with tf1.Session(config=session_config(2)) as sess:
            for arithmetic, step in steps.items():
                sess.run(tf1.global_variables_initializer())
                # The original variable list restores (the loss scale is not in it).
                checkpoints.restore_variables(sess, network, network_variables)
                sess.run(shrink)
                seen = []
                feed = dict(zip((x, y), feed_values))
                for _ in range(TRAIN_STEPS):
                    seen.append(sess.run([step.loss.cross_entropy, step.ops.apply], feed)[0])
                seen.append(sess.run(step.loss.cross_entropy, feed))
                losses[arithmetic] = np.array(seen)
            applied, final_scale = sess.run([scale.finite_updates, scale.scale])
    assert applied == TRAIN_STEPS and final_scale == 2.0 ** 10
    l32, l16 = losses['float32'], losses['float16']
    print('float32 losses %s, float16 %s, relative differences %s'
          % (l32, l16, np.abs(l16 - l32) / l32))
    assert not np.array_equal(l16, l32)   # the towers did compute in float16
    np.testing.assert_allclose(l16, l32, rtol=LOSS_RTOL)
    assert abs(l32[-1] - l32[0]) > 5 * LOSS_RTOL * l32[0]   # the updates moved the loss
