"""The GPU path, checked on a CPU (no machine this suite runs on has a GPU): the devices line,
memory on demand, NCCL between workers, one cross-replica reduction per synchronised batch
norm and pass, the training graph a GPU host builds, a CRF default and help text that do not
depend on the machine. benchmarks/gpu_check.py measures the rest on a user's GPU."""
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from deeplab_resnet.network import layers
from deeplab_resnet.predict import crf
from deeplab_resnet.runtime import devices, distribute, tf_startup

tf1 = tf.compat.v1

H200 = devices.Gpu('GPU:0', 'NVIDIA H200', (9, 0))
T4 = devices.Gpu('GPU:1', 'Tesla T4', (7, 5))
DRIVER = 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024'


# ----------------------------------------------------------------------------- devices line

def test_devices_line_names_each_gpu_and_its_compute_capability():
    line, warning = devices.devices_line([H200, T4], DRIVER, environ={})
    assert line == ('devices: GPU:0 NVIDIA H200 (compute capability 9.0), '
                    'GPU:1 Tesla T4 (compute capability 7.5)')
    assert warning is None


def test_devices_line_on_a_cpu_machine_without_a_driver_is_quiet():
    assert devices.devices_line([], None, environ={}) == (
        'devices: CPU only (no GPU visible)', None)


def test_driver_without_a_listed_gpu_is_a_warning(tmp_path):
    driver_file = tmp_path / 'version'
    driver_file.write_text(DRIVER + '\nGCC version: 12\n')
    logged, warned = [], []
    gpus = devices.log_devices(logged.append, warned.append, gpus=[],
                               driver_path=str(driver_file), environ={})
    assert gpus == [] and logged == ['devices: CPU only (no GPU visible)']
    assert len(warned) == 1 and DRIVER in warned[0] and 'tensorflow[and-cuda]' in warned[0]
    # GPUs hidden on purpose (as this suite hides them): said in the line, no warning.
    line, warning = devices.devices_line([], DRIVER, environ={'CUDA_VISIBLE_DEVICES': '-1'})
    assert warning is None and "CUDA_VISIBLE_DEVICES='-1'" in line


def test_this_suite_sees_no_gpu_and_no_driver_file_means_none(tmp_path):
    assert os.environ['CUDA_VISIBLE_DEVICES'] == '-1'
    assert devices.list_gpus() == []
    assert devices.nvidia_driver(str(tmp_path / 'absent')) is None


def test_cuda_library_warnings_pass_the_start_up_filter():
    dlopen = (b'W0000 00:00:1795789066.1    9231 gpu_device.cc:2344] Cannot dlopen some GPU '
              b'libraries. Please make sure the missing libraries mentioned above are installed'
              b' properly.\n')
    other = b'W0000 00:00:1795789066.1    9231 op_kernel.cc:1857] OP_REQUIRES failed\n'
    assert tf_startup.keep_line(dlopen, 2, False)
    assert not tf_startup.keep_line(other, 2, False)
    assert not tf_startup.keep_line(dlopen.replace(b'W0000', b'I0000'), 2, False)


# ----------------------------------------------------------------------------- memory

def test_gpu_memory_on_demand_by_default_and_the_users_value_wins():
    environ = {}
    tf_startup.set_env_defaults(environ)
    assert environ['TF_FORCE_GPU_ALLOW_GROWTH'] == 'true'
    environ = {'TF_FORCE_GPU_ALLOW_GROWTH': 'false', 'TF_CPP_MIN_LOG_LEVEL': '0'}
    tf_startup.set_env_defaults(environ)
    assert environ == {'TF_FORCE_GPU_ALLOW_GROWTH': 'false', 'TF_CPP_MIN_LOG_LEVEL': '0'}


@pytest.mark.parametrize('given,expected', [(None, 'true'), ('false', 'false')])
def test_importing_the_package_sets_the_memory_default_before_tensorflow(given, expected):
    env = {k: v for k, v in os.environ.items() if k != 'TF_FORCE_GPU_ALLOW_GROWTH'}
    if given is not None:
        env['TF_FORCE_GPU_ALLOW_GROWTH'] = given
    code = ('import os, sys, deeplab_resnet; '
            'print(os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"), "tensorflow" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, timeout=60,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert out.split() == [expected, 'False']


# ----------------------------------------------------------------------------- NCCL

class _StubStrategy(object):
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.mark.parametrize('gpus,expected', [
    (['/physical_device:GPU:0'], 'NCCL'), ([], 'AUTO')])
def test_workers_talk_nccl_when_they_have_gpus(monkeypatch, gpus, expected):
    real_list = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, 'list_physical_devices',
                        lambda kind=None: [types.SimpleNamespace(name=g, device_type='GPU')
                                           for g in gpus] if kind == 'GPU' else real_list(kind))
    monkeypatch.setattr(tf1.distribute.experimental, 'MultiWorkerMirroredStrategy',
                        _StubStrategy)
    resolver = object()
    strategy = distribute.multi_worker_strategy(resolver)
    assert strategy.kwargs['cluster_resolver'] is resolver
    assert strategy.kwargs['communication'].value == expected


# ----------------------------------------------------------------------------- sync batch norm

def _two_replica_batch_norms(x_np, r_np, num_layers):
    """Per replica: its half of x through num_layers synchronised batch norms (each followed
    by ReLU and a channel-dependent scale), loss sum(y * r); returns the first layer's moments
    and both replicas' d loss / d x (PerReplica fetches as lists)."""
    strategy = tf1.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    half = x_np.shape[0] // 2
    scale = np.linspace(0.5, 2.0, x_np.shape[-1]).astype(np.float32)

    def replica_fn():
        i = tf.distribute.get_replica_context().replica_id_in_sync_group
        x = tf.constant(x_np)[i * half:(i + 1) * half]
        r = tf.constant(r_np)[i * half:(i + 1) * half]
        moments = layers.global_batch_moments(x)
        y = x
        for n in range(num_layers):
            y = layers.batch_norm(y, 'bn%d' % n, True, relu=True, update_moving_stats=False,
                                  sync=True) * scale
        return moments, tf.gradients(tf.reduce_sum(y * r), x)[0]

    with strategy.scope():
        moments, grad = strategy.extended.call_for_each_replica(
            tf.autograph.experimental.do_not_convert(replica_fn))
    fetch = (strategy.experimental_local_results(moments[0]),
             strategy.experimental_local_results(moments[1]),
             strategy.experimental_local_results(grad))
    return fetch


def _one_device_gradient(x_np, r_np, num_layers):
    """The same layers on the whole batch on one device (tf.nn.moments, no strategy)."""
    scale = np.linspace(0.5, 2.0, x_np.shape[-1]).astype(np.float32)
    x = tf.constant(x_np)
    y = x
    for n in range(num_layers):
        y = layers.batch_norm(y, 'bn%d' % n, True, relu=True, update_moving_stats=False) * scale
    return tf.gradients(tf.reduce_sum(y * tf.constant(r_np)), x)[0]


def test_sync_batch_norm_one_reduction_per_layer_and_pass_equal_to_one_device(monkeypatch):
    """3 layers, 2 replicas: per replica 1 reduction per layer forward (count, sum and sum of
    squares packed) + 1 backward, + 1 forward for the extra global_batch_moments call, whose
    output needs no gradient: 2 * 3 + 1 = 7 per replica, 14 in all (it was 5 per layer)."""
    num_layers = 3
    calls = []
    real_all_sum = distribute._all_sum
    monkeypatch.setattr(distribute, '_all_sum', lambda v: calls.append(v) or real_all_sum(v))
    rs = np.random.RandomState(0)
    x_np = (rs.normal(size=(4, 5, 6, 8)) * np.arange(1, 9) + np.arange(8)).astype(np.float32)
    r_np = rs.normal(size=x_np.shape).astype(np.float32)
    with tf.Graph().as_default():
        fetch = _two_replica_batch_norms(x_np, r_np, num_layers)
        assert len(calls) == 2 * (2 * num_layers + 1)
        # Each reduction carries [1 + 2C]: the count and both sums.
        assert all(c.get_shape().as_list() == [1 + 2 * 8] for c in calls)
        config = tf1.ConfigProto(device_count={'CPU': 2})
        with tf1.Session(config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            means, variances, grads = sess.run(fetch)
    with tf.Graph().as_default(), tf1.Session() as sess:
        expected_grad = _one_device_gradient(x_np, r_np, num_layers)
        sess.run(tf1.global_variables_initializer())
        expected_grad = sess.run(expected_grad)
    for mean, var in zip(means, variances):
        np.testing.assert_allclose(mean, x_np.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(var, x_np.var(axis=(0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(np.concatenate(grads), expected_grad, rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------- GPU graph

def test_training_graph_as_built_on_a_gpu_host(monkeypatch):
    """With _gpu_present() True (a GPU host), one tower of the training step uses TensorFlow's
    own dilated-convolution gradients (the GPU has them: no custom gradient's IdentityN, no
    tap MatMuls) and pins no op to a device (placement is TensorFlow's). ResNet-101's dilated
    3x3 convolutions: res4's 23 blocks (rate 2) + res5's 3 (rate 4) + the 4 ASPP branches
    = 30 per tower."""
    from deeplab_resnet.training.train_step import PAPER, build_train_step
    monkeypatch.setattr(layers, '_gpu_present', lambda: True)
    hparams = PAPER._replace(scales=(1.0,), grad_update_every=1)
    with tf.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [1, 33, 33, 3])
        labels = tf1.placeholder(tf.uint8, [1, 33, 33, 1])
        build_train_step(images, labels, hparams)
    ops = graph.get_operations()

    def dilated(op_type):
        return sum(1 for op in ops if op.type == op_type
                   and max(op.get_attr('dilations')) > 1)
    assert dilated('Conv2D') == 30
    assert dilated('Conv2DBackpropInput') == 30 and dilated('Conv2DBackpropFilter') == 30
    assert [op.type for op in ops if op.type in ('IdentityN', 'MatMul')] == []
    assert [op.name for op in ops if op.device] == []


# ----------------------------------------------------------------------------- help text

def test_crf_workers_default_follows_the_affinity_with_a_cap():
    assert crf.default_workers(set(range(224))) == crf.MAX_DEFAULT_WORKERS == 32
    assert crf.default_workers({0, 1}) == 2
    assert crf.default_workers(set()) == 1


def test_help_text_does_not_depend_on_the_machine(monkeypatch):
    from deeplab_resnet.evaluation import run as evaluation
    texts = []
    for cpus in (2, 200):
        monkeypatch.setattr(os, 'sched_getaffinity', lambda pid, n=cpus: set(range(n)))
        monkeypatch.setattr(os, 'cpu_count', lambda n=cpus: n)
        parser = evaluation.build_parser(crf=True)
        texts.append(parser.format_help())
        assert parser.parse_args([]).crf_workers == min(cpus, 32)
    assert texts[0] == texts[1]


def test_deterministic_flag_in_training_evaluation_and_inference():
    import importlib
    from deeplab_resnet.evaluation import run as evaluation
    train_msc = importlib.import_module('train_msc')
    inference = importlib.import_module('inference')
    assert train_msc.get_arguments(['--deterministic']).deterministic is True
    assert train_msc.get_arguments([]).deterministic is False
    assert evaluation.parse_arguments(['--deterministic'], crf=True).deterministic is True
    assert inference.get_arguments(['a.jpg', 'ckpt', '--deterministic']).deterministic is True
