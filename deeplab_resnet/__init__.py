"""DeepLab-v2 ResNet-101 for TensorFlow (graph mode, tf.compat.v1).

`deeplab_resnet.DeepLabResNetModel` and `deeplab_resnet.ImageReader` are the original project's
entry points; they are imported lazily so that the NumPy-only modules (metrics, colour maps,
dataset tools) load without TensorFlow. TensorFlow's start-up log lines are held to
TF_CPP_MIN_LOG_LEVEL (default 2) by `tf_startup`, whichever module imports it first.
"""
from deeplab_resnet import tf_startup

tf_startup.install()

_LAZY = {
    'DeepLabResNetModel': 'deeplab_resnet.model',
    'ImageReader': 'deeplab_resnet.image_reader',
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
