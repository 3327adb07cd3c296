"""What train_msc.py writes for TensorBoard beyond scalars, read back by TensorBoard itself:
the validation pictures (confusion matrix; image | ground truth | prediction in the dataset's
colours), the HParams plugin's experiment and sessions of two runs, the run's text. Event files
are written directly from small arrays with the trainer's own writers (the network is not the
point here; tests/test_training_stop_resume.py checks a real training run's events); then a real
TensorBoard server on 127.0.0.1 answers for them over HTTP.
"""
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import train_msc
from deeplab_resnet.training import run_summaries, validation

tf1 = tf.compat.v1
NAMES = ['bg', 'rect', 'disc']
PALETTE = [(10, 20, 30), (200, 0, 0), (0, 0, 250)]   # a dataset's own colours
RUNS = {'run_a': '1e-3', 'run_b': '1e-4'}
STEPS = (2, 4)


def arrays(step):
    """A 4x5 image, its ground truth (with one ignore pixel) and the prediction at `step`."""
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    truth = np.array([[0, 0, 1, 1, 2]] * 4)
    truth[0, 0] = 255
    prediction = truth.copy() if step == STEPS[-1] else np.zeros_like(truth)
    prediction[0, 0] = 0
    return rgb, truth, prediction


def by_hand(rgb, truth, prediction):
    """The expected image row, coloured here without colormap.py."""
    def colour(labels):
        out = np.zeros(labels.shape + (3,), np.uint8)
        for c, rgb_c in enumerate(PALETTE):
            out[labels == c] = rgb_c
        out[labels == 255] = (224, 224, 192)     # VOC's void colour
        return out
    return np.concatenate([rgb, colour(truth), colour(prediction)], axis=1)


def write_run(logdir, name, lr):
    args = train_msc.get_arguments([
        '--data-list', 'train.txt', '--learning-rate', lr, '--batch-size', '2',
        '--grad-update-every', '5', '--input-size', '33,41', '--snapshot-dir',
        os.path.join(logdir, name), '--restore-from', 'none', '--is-training',
        '--train-bn-params'])
    record = {'trained_on': 'train.txt', 'train_images': ['img_%d' % i for i in range(50)],
              'initialised_from': {'description': 'He initialisation'}}
    with tf.Graph().as_default():   # FileWriter is graph-mode, as in the trainer
        writer = tf1.summary.FileWriter(args.snapshot_dir)
    run_summaries.write_run_start(writer, args, record, 0, argv=['train_msc.py', '--x', 'a b'])
    val = validation.Validation([], 'val.txt', (1.0,), NAMES, 255, None, num_images=1,
                                palette=PALETTE)
    for step in STEPS:
        rgb, truth, prediction = arrays(step)
        matrix = metric_matrix(truth, prediction)
        writer.add_summary(val.image_summary(matrix, [val.image_row(rgb, truth, prediction)],
                                             step), step)
        writer.add_summary(run_summaries.best_summary(0.25 * step), step)
    writer.close()


def metric_matrix(truth, prediction):
    keep = truth != 255
    matrix = np.zeros((3, 3), np.int64)
    np.add.at(matrix, (truth[keep], prediction[keep]), 1)
    return matrix


@pytest.fixture(scope='module')
def logdir(module_dir):
    root = str(module_dir('tensorboard'))
    for name, lr in RUNS.items():
        write_run(root, name, lr)
    return root


def test_event_files_hold_the_pictures_and_the_hparams(logdir):
    acc = EventAccumulator(os.path.join(logdir, 'run_a'),
                           size_guidance={'images': 0, 'tensors': 0}).Reload()
    for step, event in zip(STEPS, acc.Images('validation/images/0')):
        assert event.step == step
        row = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert('RGB'))
        np.testing.assert_array_equal(row, by_hand(*arrays(step)))
    matrices = acc.Images('validation/confusion_matrix')
    assert [e.step for e in matrices] == list(STEPS)
    assert Image.open(io.BytesIO(matrices[0].encoded_image_string)).size == (
        matrices[0].width, matrices[0].height)
    content = acc.PluginTagToContent('hparams')
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content['_hparams_/session_start_info']).session_start_info
    assert start.hparams['learning_rate'].number_value == pytest.approx(1e-3)
    assert start.hparams['batch'].string_value == '2x5'
    assert start.hparams['crop'].string_value == '33x41'
    assert start.hparams['init'].string_value == 'He initialisation'
    assert start.group_name == os.path.join(logdir, 'run_a')   # --snapshot-dir as given
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content['_hparams_/experiment']).experiment
    assert [m.name.tag for m in experiment.metric_infos][0] == 'validation/best_mean_iou'
    # The dashboard shows the first five by name at first: learning_rate is among them.
    assert sorted(h.name for h in experiment.hparam_infos)[:5] == [
        'batch', 'crop', 'data_list', 'init', 'learning_rate']
    command = acc.Tensors('run/command')[0].tensor_proto.string_val[0].decode()
    assert command.strip() == "train_msc.py --x 'a b'"
    record = acc.Tensors('run/provenance')[0].tensor_proto.string_val[0].decode()
    assert json.loads(record) == {'trained_on': 'train.txt',
                                  'initialised_from': {'description': 'He initialisation'}}


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def fetch(url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={
        'Content-Type': 'application/json'} if data else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def test_a_tensorboard_server_answers_for_the_images_and_the_hparams(logdir, tmp_path):
    port = free_port()
    base = 'http://127.0.0.1:%d' % port
    log = open(str(tmp_path / 'tensorboard.log'), 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'tensorboard.main', '--logdir', logdir,
                             '--host', '127.0.0.1', '--port', str(port), '--load_fast', 'false',
                             '--samples_per_plugin', 'images=100'],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        tags, deadline = {}, time.time() + 90
        while time.time() < deadline and len(tags) < len(RUNS):
            assert proc.poll() is None, open(str(tmp_path / 'tensorboard.log')).read()
            try:
                tags = json.loads(fetch(base + '/data/plugin/images/tags'))
            except OSError:
                pass
            time.sleep(0.5)
        assert set(tags) == set(RUNS), tags
        assert {'validation/confusion_matrix', 'validation/images/0'} <= set(tags['run_b'])
        query = urllib.parse.urlencode({'run': 'run_b', 'tag': 'validation/images/0'})
        entries = json.loads(fetch(base + '/data/plugin/images/images?' + query))
        assert [e['step'] for e in entries] == list(STEPS)
        png = fetch(base + '/data/plugin/images/individualImage?' + entries[-1]['query'])
        row = np.asarray(Image.open(io.BytesIO(png)).convert('RGB'))
        np.testing.assert_array_equal(row, by_hand(*arrays(STEPS[-1])))

        experiment = json.loads(fetch(base + '/data/plugin/hparams/experiment',
                                      {'experimentName': ''}))
        names = {h['name'] for h in experiment['hparamInfos']}
        assert {'learning_rate', 'optimizer', 'batch', 'crop', 'scales', 'weight_decay',
                'precision', 'init', 'data_list'} <= names
        assert 'validation/best_mean_iou' in [m['name']['tag']
                                              for m in experiment['metricInfos']]
        groups = json.loads(fetch(base + '/data/plugin/hparams/session_groups', {
            'experimentName': '', 'startIndex': 0, 'sliceSize': 10,
            'allowedStatuses': ['STATUS_UNKNOWN', 'STATUS_SUCCESS', 'STATUS_FAILURE',
                                'STATUS_RUNNING'], 'colParams': []}))
        found = {}
        for group in groups['sessionGroups']:
            metric = {m['name']['tag']: m['value'] for m in group['metricValues']}
            found[group['hparams']['learning_rate']] = metric['validation/best_mean_iou']
        # Both runs, each with its last best mIoU (0.25 * the last step).
        assert sorted(found) == [pytest.approx(1e-4), pytest.approx(1e-3)]
        assert list(found.values()) == [0.25 * STEPS[-1]] * 2
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()
