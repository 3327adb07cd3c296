"""inference.py --export-tflite on the small test network: the LiteRT model, run by the lines
of docs/evaluation.md with the LiteRT interpreter in a subprocess that never imports
TensorFlow, against the network inference.py runs (predictor.Predictor) on odd and even image
sizes, with two scales and the flip; its settings file; the ceil-mode pooling's channel count
in a saved graph; bad flag combinations, one line each."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import make_calibrated_checkpoint, make_dataset
from deeplab_resnet.common.constants import IMG_MEAN_BGR
from test_predict_inference import ENV, ROOT, expect_exit_2, run_main, save_image

pytestmark = pytest.mark.usefixtures('small_network')

NC = 4
SCALES = (1.0, 0.75)
# The keys of the SavedModel's assets.extra/deeplab.json (export.py), which FILE.json repeats.
SAVEDMODEL_KEYS = {'checkpoint', 'num_classes', 'class_names', 'scales', 'flip',
                   'channel_order_of_network', 'input', 'image_mean', 'signature', 'outputs',
                   'tensorflow_version'}
DOC = os.path.join(ROOT, 'docs', 'evaluation.md')
MARKER = '<!-- litert-example: tests/test_predict_litert.py runs this block -->'


@pytest.fixture(scope='module')
def ckpt(module_dir):
    """A random small network whose batch-norm statistics are those of real images, so that
    its logits span a few tens (a plain random network's saturate the softmax) and its labels
    vary."""
    root = str(module_dir('litert_ckpt'))
    lst = make_dataset(root, num_images=2, sizes=((49, 49),), num_classes=3)
    return make_calibrated_checkpoint(os.path.join(root, 'init'), root, lst, (49, 49),
                                      num_classes=NC)


def doc_example():
    """The python block after MARKER in docs/evaluation.md."""
    with open(DOC) as f:
        text = f.read()
    assert MARKER in text
    block = re.search(r'```python\n(.*?)```', text[text.index(MARKER):], re.S)
    return block.group(1)


# Appended to the documentation's lines: the labels and probabilities of photo.jpg (which the
# block segments) and of the other images named on the command line, into results.npz.
DRIVER = r'''
import sys
results = {'photo.jpg/labels': labels, 'photo.jpg/probabilities': probs}
for name in sys.argv[1:]:
    more = segment(image=np.asarray(Image.open(name).convert('RGB')))
    results[name + '/labels'], results[name + '/probabilities'] = (
        more['labels'], more['probabilities'])
assert 'tensorflow' not in sys.modules, 'the LiteRT example imported TensorFlow'
np.savez('results.npz', **results)
'''


def centred_logits(probs):
    """Logits up to the per-pixel constant that the softmax drops: log p - mean_c log p
    equals logits - mean_c logits exactly. [H, W, C] float32 -> float64."""
    logp = np.log(probs.astype(np.float64))
    return logp - logp.mean(axis=-1, keepdims=True)


def test_litert_model_matches_the_network_without_tensorflow(tmp_path, ckpt):
    model = tmp_path / 'deeplab.tflite'
    code, stdout, stderr = run_main(['--export-tflite', model, ckpt, '--num-classes', NC,
                                     '--scales', ','.join(map(str, SCALES)), '--flip'])
    assert code == 0, stderr
    assert 'LiteRT model written to %s' % model in stdout
    with open(str(model) + '.json') as f:
        settings = json.load(f)
    assert set(settings) == SAVEDMODEL_KEYS
    assert settings['num_classes'] == NC and settings['scales'] == list(SCALES)
    assert settings['flip'] is True and settings['signature'] == 'serving_default'
    assert settings['image_mean'] == list(IMG_MEAN_BGR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['deeplab.tflite',
                                                          'deeplab.tflite.json']

    sizes = {'photo.jpg': (41, 57), 'even.png': (48, 64), 'tall.png': (67, 30)}
    for i, (name, shape) in enumerate(sorted(sizes.items())):
        save_image(tmp_path / name, shape, 10 + i)
    script = tmp_path / 'run_litert.py'
    script.write_text(doc_example() + DRIVER)
    others = [n for n in sorted(sizes) if n != 'photo.jpg']
    env = {k: v for k, v in ENV.items() if k != 'DEEPLAB_BLOCKS'}
    result = subprocess.run([sys.executable, str(script)] + others, cwd=str(tmp_path),
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.load(str(tmp_path / 'results.npz'))

    from deeplab_resnet.predict.predictor import Predictor
    equal = total = 0
    worst = 0.0
    with Predictor(ckpt, NC, scales=SCALES, flip=True, threads=2) as predictor:
        for name, shape in sorted(sizes.items()):
            rgb = np.asarray(Image.open(str(tmp_path / name)).convert('RGB'))
            labels, probs = predictor.predict(rgb, want_probs=True)
            lite_labels = got[name + '/labels']
            lite_probs = got[name + '/probabilities']
            assert lite_labels.shape == shape and lite_labels.dtype == np.int32
            assert lite_probs.shape == shape + (NC,) and lite_probs.dtype == np.float32
            want, have = centred_logits(probs), centred_logits(lite_probs)
            spread = want.max() - want.min()
            assert spread > 5, 'the logits should span several units, not saturate'
            worst = max(worst, np.abs(have - want).max() / spread)
            assert np.abs(have - want).max() <= 1e-4 * spread, name
            assert len(np.unique(labels)) >= 2   # the comparison of labels is not trivial
            equal += int((lite_labels == labels).sum())
            total += labels.size
    print('LiteRT labels equal to the network\'s on %d of %d pixels (%.4f%%); logits within '
          '%.1e of their range' % (equal, total, 100.0 * equal / total, worst))
    assert equal >= 0.999 * total


def expect_usage_error(argv, fragment):
    """argparse's refusal: exit 2, the message on the last line of stderr."""
    code, _, stderr = run_main(argv)
    assert code == 2, stderr
    last = stderr.strip().splitlines()[-1]
    assert 'error:' in last and fragment in last, stderr


def test_bad_export_tflite_flags_refused_in_one_line(tmp_path):
    ckpt = str(tmp_path / 'absent.ckpt')   # every refusal comes before the checkpoint is read
    model = tmp_path / 'm.tflite'
    expect_usage_error(['--export-tflite', model, ckpt, '--precision', 'bfloat16'],
                       '--export-tflite writes a float32 model')
    model.write_bytes(b'an earlier model')
    expect_exit_2(['--export-tflite', model, ckpt], str(model), 'would overwrite')
    other = tmp_path / 'n.tflite'
    (tmp_path / 'n.tflite.json').write_text('{}')
    expect_exit_2(['--export-tflite', other, ckpt], 'n.tflite.json', 'would overwrite')
    expect_exit_2(['--export-tflite', tmp_path, ckpt], 'is a directory')
    assert model.read_bytes() == b'an earlier model' and not other.exists()


def test_tile_refused_with_export_tflite(tmp_path):
    expect_usage_error(['--export-tflite', tmp_path / 'm.tflite', str(tmp_path / 'ckpt'),
                        '--tile', '65,65'], 'cannot be combined with --tile')


def test_ceil_pooling_keeps_its_channels_in_a_saved_graph():
    """The graph read back from its GraphDef (as a SavedModel stores it): shapes are inferred
    again from the ops alone, as the LiteRT converter does, not taken from Python's objects.
    Without the reshape the channels were unknown there and the converter refused the 1x1
    convolutions after pool1."""
    import tensorflow as tf
    from deeplab_resnet.network import layers
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, None, None, 64], name='x')
        tf.identity(layers.max_pool_ceil(x, 3, 2, 1), name='y')
    with tf.Graph().as_default() as read_back:
        tf1.import_graph_def(graph.as_graph_def(), name='')
        assert read_back.get_tensor_by_name('y:0').shape.as_list() == [None, None, None, 64]
