"""Exporting a checkpoint as a SavedModel that segments a uint8 RGB image of any size.

The graph is Predictor's (uint8 RGB [H, W, 3] -> BGR minus the mean -> msc.predict_probs with
the given scales and flip, batch norm folded into the kernels), restored from the checkpoint
in a tf.compat.v1 Session and saved with tf.compat.v1.saved_model.Builder under one signature.
Its variables are therefore not a training checkpoint: the kernels hold the batch-norm scales.
It loads in plain eager TensorFlow 2, with no tf.compat.v1 call::

    import tensorflow as tf
    model = tf.saved_model.load(DIR)               # keep `model` referenced while in use
    segment = model.signatures['serving_default']
    out = segment(image=tf.constant(rgb))          # rgb: [H, W, 3] uint8 RGB, any H, W
    labels = out['labels'].numpy()                 # [H, W] int32 class indices
    probs = out['probabilities'].numpy()           # [H, W, C] float32 softmax

The settings the graph was built with (class count, scales, flip, image mean, class names,
checkpoint) are also written to DIR/assets.extra/deeplab.json, for people and tools.

Exported with a window (`tile`, inference.py --export-savedmodel DIR --tile H,W), the graph
segments any image at full resolution in one call, in windows inside the graph
(tiling.segment_labels: a tf.while_loop over the windows; an image one window covers runs
whole), and returns the labels only: out['labels'], [H, W] int32 (full-size probabilities
would be what the windows avoid: 6.8 GB at 9000x9000 and 21 classes).
"""
import collections
import json
import os
import shutil

import tensorflow as tf

from deeplab_resnet.checkpoint import checkpoints
from deeplab_resnet.common.constants import CHANNEL_ORDER, IMG_MEAN_BGR
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data.image_reader import preprocess_image
from deeplab_resnet.network import msc
from deeplab_resnet.predict.predictor import restore_folded

tf1 = tf.compat.v1

SIGNATURE_KEY = 'serving_default'
INPUT_KEY = 'image'
LABELS_KEY = 'labels'
PROBS_KEY = 'probabilities'
SETTINGS_FILE = os.path.join('assets.extra', 'deeplab.json')


def check_export_dir(export_dir):
    """Raises InputError unless export_dir is absent or an empty directory."""
    if os.path.exists(export_dir):
        if not os.path.isdir(export_dir):
            raise InputError('%s: --export-savedmodel is a file, not a directory' % export_dir)
        if os.listdir(export_dir):
            raise InputError('%s: --export-savedmodel directory exists and is not empty '
                             '(remove it or choose another)' % export_dir)


def export_savedmodel(checkpoint, export_dir, num_classes, scales=(1.0,), flip=False,
                      img_mean=IMG_MEAN_BGR, class_names=None, tile=None, tile_stride=None):
    """Writes the SavedModel (see the module docstring). Returns export_dir.

    Args:
      checkpoint: checkpoint prefix or directory (its latest checkpoint).
      export_dir: absent or empty directory.
      tile, tile_stride: (h, w) window and stride (tiling.py), or None: whole images, with
        the probabilities.
    Raises: InputError for a bad checkpoint (missing, another class count) or export_dir.
    """
    check_export_dir(export_dir)
    prefix = checkpoints.resolve_checkpoint(checkpoint)
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, '.%s.tmp-%d' % (os.path.basename(os.path.abspath(export_dir)),
                                                os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    graph = tf.Graph()
    try:
        with graph.as_default():
            rgb = tf1.placeholder(tf.uint8, [None, None, 3], name=INPUT_KEY)
            if tile:
                outputs = tiled_outputs(rgb, num_classes, scales, flip, img_mean, tile,
                                        tile_stride)
            else:
                probs, labels = msc.predict_probs(preprocess_image(rgb[None], img_mean),
                                                  num_classes, tuple(scales), flip,
                                                  fold_batch_norm=True)
                outputs = {LABELS_KEY: tf.identity(labels[0], name=LABELS_KEY),
                           PROBS_KEY: tf.identity(probs[0], name=PROBS_KEY)}
            with tf1.Session(graph=graph) as sess:
                restore_folded(sess, prefix)
                signature = tf1.saved_model.signature_def_utils.predict_signature_def(
                    inputs={INPUT_KEY: rgb}, outputs=outputs)
                builder = tf1.saved_model.Builder(tmp)
                builder.add_meta_graph_and_variables(
                    sess, [tf1.saved_model.tag_constants.SERVING],
                    signature_def_map={SIGNATURE_KEY: signature}, strip_default_attrs=True)
                builder.save()
        settings = collections.OrderedDict([
            ('checkpoint', os.path.abspath(prefix)),
            ('num_classes', int(num_classes)),
            ('class_names', list(class_names) if class_names else None),
            ('scales', [float(s) for s in scales]),
            ('flip', bool(flip)),
            ('channel_order_of_network', CHANNEL_ORDER),
            ('input', 'uint8 RGB [H, W, 3], any size'),
            ('image_mean', [float(v) for v in img_mean]),
            ('signature', SIGNATURE_KEY),
            ('outputs', {LABELS_KEY: 'int32 [H, W]', PROBS_KEY: 'float32 [H, W, C]'}),
            ('tensorflow_version', tf.__version__),
        ])
        if tile:
            settings.update(tiled_settings(tile, tile_stride))
        os.makedirs(os.path.join(tmp, 'assets.extra'), exist_ok=True)
        with open(os.path.join(tmp, SETTINGS_FILE), 'w') as f:
            json.dump(settings, f, indent=2)
            f.write('\n')
        if os.path.isdir(export_dir):
            os.rmdir(export_dir)   # empty (checked above)
        os.rename(tmp, export_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir


def tiled_outputs(rgb, num_classes, scales, flip, img_mean, tile, tile_stride):
    """The tiled signature's outputs: {LABELS_KEY: [H, W] int32} (tiling.segment_labels on
    the uint8 placeholder `rgb`, batch norm folded)."""
    from deeplab_resnet.predict import tiling
    labels = tiling.segment_labels(rgb, num_classes, tuple(tile), tile_stride, tuple(scales),
                                   flip, fold_batch_norm=True, img_mean=img_mean)
    return {LABELS_KEY: tf.identity(labels, name=LABELS_KEY)}


def tiled_settings(tile, tile_stride):
    """The deeplab.json entries of a tiled SavedModel: its window, stride and outputs."""
    from deeplab_resnet.common.windows import strides_of
    return collections.OrderedDict([
        ('tile', [int(v) for v in tile]),
        ('tile_stride', [int(v) for v in strides_of(tile, tile_stride)]),
        ('outputs', {LABELS_KEY: 'int32 [H, W]'}),
    ])
