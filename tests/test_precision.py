"""--precision bfloat16: when it runs, and that its predictions stay those of float32."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab_resnet import checkpoints, msc, precision
from helpers import make_calibrated_checkpoint, make_dataset

tf1 = tf.compat.v1
SIZE = 49


def test_bfloat16_only_where_the_hardware_is_fast():
    warnings = []
    assert precision.choose('float32', warnings.append, flags=set(), gpu=False) == 'float32'
    assert precision.choose('bfloat16', warnings.append, flags={'avx2', 'avx512_bf16'},
                            gpu=False) == 'bfloat16'
    assert precision.choose('bfloat16', warnings.append, flags={'amx_bf16'},
                            gpu=False) == 'bfloat16'
    assert precision.choose('bfloat16', warnings.append, flags={'avx2'}, gpu=True) == 'bfloat16'
    assert warnings == []
    assert precision.choose('bfloat16', warnings.append, flags={'avx2', 'fma'},
                            gpu=False) == 'float32'
    assert len(warnings) == 1 and 'avx512_bf16' in warnings[0] and 'float32' in warnings[0]


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


def fused_logits(prefix, images, arithmetic):
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [1, None, None, 3])
        logits = msc.multi_scale_logits(x, 3, False, (1.0, 0.75, 0.5),
                                        precision=arithmetic).fused
        with tf1.Session() as sess:
            checkpoints.restore_variables(sess, prefix, checkpoints.model_variables())
            return sess.run(logits, {x: images})


def test_bfloat16_towers_give_float32_logits_close_to_float32(network):
    """bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 per operation): through the
    layers of this untrained network (whose logits amplify every rounding; measured through
    ResNet-101's 100 layers: median error 1.8% of the logits' range, largest 13%; through the
    small test network's 17 used here: 0.5%, 3.4%) the logits stay close, and the argmax of
    every pixel whose decision is clear stays. (On the trained demo model 99.92% of the
    pixels keep their label.) The variables stay float32 (the float32 checkpoint restores
    into the bfloat16 graph); the logits come back as float32."""
    images = np.random.RandomState(0).normal(0, 40, (1, SIZE, SIZE, 3)).astype(np.float32)
    l32 = fused_logits(network, images, 'float32')
    l16 = fused_logits(network, images, 'bfloat16')
    assert l16.dtype == np.float32 and l16.shape == l32.shape == (1, 7, 7, 3)
    scale = np.abs(l32).max()
    error = np.abs(l16 - l32)
    assert np.median(error) < 0.04 * scale and error.max() < 0.25 * scale
    ordered = np.sort(l32, axis=-1)
    clear = ordered[..., -1] - ordered[..., -2] > 0.1 * scale
    assert clear.mean() > 0.5
    assert np.array_equal(l16.argmax(-1)[clear], l32.argmax(-1)[clear])
