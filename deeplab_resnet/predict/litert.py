"""Exporting a checkpoint as a LiteRT (TensorFlow Lite) model: float32, any image size, run
with the LiteRT interpreter alone (`pip install ai-edge-litert`, no TensorFlow).

The model is the SavedModel of predict/export.py (the same graph: uint8 RGB [H, W, 3] -> labels
int32 [H, W] and probabilities float32 [H, W, C], with its scales and flip), written to a
temporary directory beside FILE and converted by tf.lite.TFLiteConverter.from_saved_model
with LiteRT's built-in ops only (no TensorFlow op in the file). Its one signature,
'serving_default', has the SavedModel's input and output names::

    from ai_edge_litert.interpreter import Interpreter
    segment = Interpreter(model_path=FILE).get_signature_runner('serving_default')
    out = segment(image=rgb)            # rgb: [H, W, 3] uint8 RGB, any H, W
    out['labels'], out['probabilities'] # [H, W] int32, [H, W, C] float32

FILE.json holds the SavedModel's settings (export.SETTINGS_FILE), key for key. What the
converter cannot do is refused before any work (flag_conflict): other arithmetic than float32
(--precision) and windows (--tile; a tiled model loops over a grid, which is not asked of it).

This module imports TensorFlow only inside export_tflite: the scripts check their flags with it
before TensorFlow loads.
"""
import json
import os
import shutil
import tempfile

from deeplab_resnet.common.constants import IMG_MEAN_BGR
from deeplab_resnet.common.errors import InputError

SETTINGS_SUFFIX = '.json'


def flag_conflict(args):
    """The parser's one-line message when --export-tflite meets a flag the LiteRT model cannot
    follow, else None. args: inference.py's parsed arguments."""
    if not getattr(args, 'export_tflite', None):
        return None
    if getattr(args, 'tile', None):
        return ('--export-tflite writes a whole-image model: it cannot be combined with --tile '
                '(export without --tile; windows are for --export-savedmodel and segmenting)')
    if getattr(args, 'precision', 'float32') != 'float32':
        return ('--export-tflite writes a float32 model: it cannot be combined with --precision '
                '%s (export without it)' % args.precision)
    return None


def settings_path(path):
    """FILE -> FILE.json, the settings written beside the model."""
    return path + SETTINGS_SUFFIX


def check_tflite_path(path):
    """Raises InputError when `path` is a directory, or when it or its settings file exists
    (an export overwrites nothing)."""
    if os.path.isdir(path):
        raise InputError('%s: --export-tflite is a directory, not a file' % path)
    for target in (path, settings_path(path)):
        if os.path.lexists(target):
            raise InputError('%s: --export-tflite would overwrite it (remove it or choose '
                             'another FILE)' % target)


def export_tflite(checkpoint, path, num_classes, scales=(1.0,), flip=False,
                  img_mean=IMG_MEAN_BGR, class_names=None):
    """Writes the LiteRT model to `path` and its settings to `path`.json (module docstring).

    Args: those of export.export_savedmodel; path: the model file to write.
    Returns: the settings written (a dict, the SavedModel's deeplab.json).
    Raises: InputError for a bad checkpoint or an existing `path` / `path`.json, before any
      file is written; both files appear together at the end (renamed from a temporary
      directory in `path`'s directory, removed whatever happens).
    """
    check_tflite_path(path)
    import tensorflow as tf
    from deeplab_resnet.predict import export
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.%s.tmp-' % os.path.basename(path), dir=parent)
    try:
        saved = os.path.join(tmp, 'savedmodel')
        export.export_savedmodel(checkpoint, saved, num_classes, scales, flip, img_mean,
                                 class_names)
        with open(os.path.join(saved, export.SETTINGS_FILE)) as f:
            settings = json.load(f)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved, signature_keys=[export.SIGNATURE_KEY])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        model = converter.convert()
        staged = os.path.join(tmp, 'model.tflite')
        with open(staged, 'wb') as f:
            f.write(model)
        with open(settings_path(staged), 'w') as f:
            json.dump(settings, f, indent=2)
            f.write('\n')
        check_tflite_path(path)   # nothing appeared there while converting
        os.rename(settings_path(staged), settings_path(path))
        os.rename(staged, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return settings
