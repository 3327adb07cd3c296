"""DeepLab-v2 ResNet-101 for TensorFlow (graph mode, tf.compat.v1).

The original project's public face, imported lazily so that the NumPy-only modules (metrics,
colour maps, dataset tools) load without TensorFlow:
  from deeplab_resnet import (DeepLabResNetModel, ImageReader, decode_labels, inv_preprocess,
                              prepare_label)

The package is in parts, each a subpackage whose docstring says what it holds (docs/layout.md
is made from them). Each part imports only from itself and the parts before it in LAYERS, below
(tests/test_package_layers.py reads every module's imports and fails on an import upward or a
circle).
"""
from deeplab_resnet.runtime import tf_startup

LAYERS = ('common', 'runtime', 'data', 'network', 'checkpoint', 'weights', 'predict',
          'evaluation', 'training')
"""The parts, lowest first. common: facts and pieces everything shares; runtime: how
TensorFlow runs here; data: lists, datasets, images, labels, the input pipeline; network:
DeepLab-v2 itself; checkpoint: records and snapshot folders; weights: weights from elsewhere;
predict: a restored network that segments; evaluation: scores and their pictures; training:
the training run."""

tf_startup.install()

_LAZY = {
    'DeepLabResNetModel': 'deeplab_resnet.network.model',
    'ImageReader': 'deeplab_resnet.data.image_reader',
    'decode_labels': 'deeplab_resnet.data.colormap',
    'inv_preprocess': 'deeplab_resnet.data.colormap',
    'prepare_label': 'deeplab_resnet.network.resize',
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
