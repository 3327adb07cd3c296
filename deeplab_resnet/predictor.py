"""A restored network that segments images of any size: the graph is built once and the
weights loaded once, whatever the number of images (evaluation, inference, export).
"""
import numpy as np
import tensorflow as tf

from deeplab_resnet import checkpoints, msc
from deeplab_resnet.constants import IMG_MEAN_BGR
from deeplab_resnet.image_reader import preprocess_image
from deeplab_resnet.utils import session_config

tf1 = tf.compat.v1


class Predictor(object):
    """Multi-scale (and optionally flipped) prediction at full resolution.

    Args:
      checkpoint: checkpoint prefix or directory (its latest checkpoint).
      num_classes: the model's class count (checked against the checkpoint).
      scales: input scales fused by max, e.g. (1.0,) or (1.0, 0.75, 0.5).
      flip: average the logits with the mirrored image's.
      img_mean: BGR mean subtracted from the images.
      threads: intra-op CPU threads (0: TensorFlow's default).
    Call predict(rgb) with [H, W, 3] uint8 RGB: returns (labels [H, W] int32,
    probs [H, W, C] float32 or None unless want_probs).
    """

    def __init__(self, checkpoint, num_classes, scales=(1.0,), flip=False,
                 img_mean=IMG_MEAN_BGR, threads=0):
        self.prefix = checkpoints.resolve_checkpoint(checkpoint)
        self.num_classes = num_classes
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.rgb = tf1.placeholder(tf.uint8, [None, None, 3], name='image_rgb')
            images = preprocess_image(self.rgb[None], img_mean)
            probs, labels = msc.predict_probs(images, num_classes, scales, flip)
            self.probs, self.labels = probs[0], labels[0]
            self.sess = tf1.Session(config=session_config(threads))
            self.sess.run(tf1.global_variables_initializer())
            checkpoints.restore_variables(self.sess, self.prefix,
                                          checkpoints.model_variables())
        self.graph.finalize()

    def predict(self, rgb, want_probs=False):
        fetch = [self.labels, self.probs] if want_probs else [self.labels]
        out = self.sess.run(fetch, {self.rgb: np.asarray(rgb, np.uint8)})
        return out[0], (out[1] if want_probs else None)

    def close(self):
        self.sess.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
