"""The original project's public face: a script written against
`from deeplab_resnet import DeepLabResNetModel, ImageReader, decode_labels, inv_preprocess,
prepare_label` and the original's call shapes (tests/original_api_script.py, in the style of
DrSleep/tensorflow-deeplab-resnet's train_msc.py, evaluate.py and inference.py) trains two
steps, saves a snapshot and segments an image from it, unchanged, on tf.compat.v1. It runs in
its own process (disable_v2_behavior is process-wide), on the small test network."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from helpers import ROOT, make_dataset, original_names

pytestmark = pytest.mark.usefixtures('small_network')

VOC_FIRST_COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0)}   # the VOC palette's
MEAN_BGR = np.array((104.00698793, 116.66876762, 122.67891434), np.float32)


@pytest.fixture(scope='module')
def run(module_dir, small_network):
    data = str(module_dir('original_data'))
    data_list = make_dataset(data, num_images=3, sizes=((40, 50), (41, 37)))
    out = str(module_dir('original_out'))
    image = os.path.join(data, 'images', 'img000.jpg')
    env = dict(os.environ, PYTHONPATH=ROOT)   # as a user's script beside the package
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'original_api_script.py'),
                           data, data_list, image, out], capture_output=True, text=True,
                          timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(os.path.join(out, 'facts.npz')) as f:
        facts = dict(f)
    return dict(facts=facts, out=out, data=data, image=image, blocks=small_network)


def test_training_through_the_five_names_updates_the_moving_statistics(run):
    facts = run['facts']
    assert np.isfinite(facts['loss'])
    # is_training=True: slim's in-place updates, run by the train op alone (no UPDATE_OPS).
    assert not np.allclose(facts['before'], facts['after'])
    assert facts['before'].shape == facts['after'].shape == (64,)
    # Only the convolutions train (batch norm's variables are not trainable, as before):
    # conv1, 3 per block, 4 projections, and ASPP's 4 weights + 4 biases.
    blocks = run['blocks']
    assert int(facts['trainable']) == 1 + 3 * sum(blocks) + 4 + 8


def test_py_func_summaries_decode_labels_and_undo_preprocessing(run):
    facts = run['facts']
    images, labels = facts['images'], facts['labels']
    assert images.shape == (2, 33, 33, 3) and labels.shape == (2, 33, 33, 1)
    expected = np.clip(np.round((images + MEAN_BGR)[..., ::-1]), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(facts['image_rows'], expected)
    rows = facts['label_rows']
    assert rows.shape == (2, 33, 33, 3) and rows.dtype == np.uint8
    for value, colour in VOC_FIRST_COLOURS.items():
        at = labels[..., 0] == value
        assert at.any()
        assert (rows[at] == colour).all()
    assert facts['pred_rows'].shape == (2, 33, 33, 3)


def test_the_snapshot_has_the_original_names_and_restores(run):
    names = {name for name, _ in tf.train.list_variables(os.path.join(run['out'],
                                                                      'model.ckpt-2'))}
    network = {n for n in names if not n.endswith('/Momentum')}
    assert network == original_names(run['blocks'])
    np.testing.assert_array_equal(run['facts']['restored_mean'], run['facts']['after'])


def test_the_segmented_mask_has_the_image_size_and_class_colours(run):
    mask = np.asarray(Image.open(os.path.join(run['out'], 'mask.png')).convert('RGB'))
    with Image.open(run['image']) as im:
        w, h = im.size
    assert mask.shape == (h, w, 3)
    preds = run['facts']['preds'][0, ..., 0]
    assert preds.shape == (h, w)
    for value in np.unique(preds):
        assert (mask[preds == value] == VOC_FIRST_COLOURS[int(value)]).all()


def test_the_full_image_reader_gives_one_image_and_its_label(run):
    facts = run['facts']
    rgb = np.asarray(Image.open(run['image']).convert('RGB'), np.float32)
    label = np.asarray(Image.open(os.path.join(run['data'], 'labels', 'img000.png')))
    assert facts['eval_image'].shape == rgb.shape == (40, 50, 3)
    assert facts['eval_label'].shape == (40, 50, 1)
    np.testing.assert_array_equal(facts['eval_label'][..., 0], label)
    assert np.abs(facts['eval_image'] - (rgb[..., ::-1] - MEAN_BGR)).max() <= 1.0
    assert facts['eval_second_image'].shape == (41, 37, 3)   # the list's next image
