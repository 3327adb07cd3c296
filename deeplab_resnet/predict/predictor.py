"""A restored network that segments images of any size: the graph is built once and the
weights loaded once, whatever the number of images (evaluation, inference, export); and
`predictions`, the one loop that feeds a list of items through any such predictor (and a
CRF pool) in order.
"""
import collections

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab_resnet.checkpoint import checkpoints, snapshot_folder
from deeplab_resnet.common.constants import IMG_MEAN_BGR
from deeplab_resnet.common.errors import InputError, warn as warn_line
from deeplab_resnet.data.image_reader import preprocess_image
from deeplab_resnet.network import model, msc
from deeplab_resnet.predict import memory, tiling
from deeplab_resnet.runtime.session import session_config

tf1 = tf.compat.v1


def restore_folded(sess, prefix, found_in=None, warn=warn_line):
    """Loads a checkpoint into a network built with fold_batch_norm=True (msc.predict_probs)
    and folds its batch norms (model.fold_batch_norm_op), once. Every network variable comes
    from the checkpoint (restore_variables refuses one that lacks any), so none is
    initialised first.

    found_in: the directory `prefix` was found in as its newest whole checkpoint, or None.
      When a running training has rotated `prefix` away since (it is gone or no longer
      whole), the directory's newest whole checkpoint is restored instead, with a warning.
    Returns: the prefix restored.
    """
    variables = checkpoints.model_variables()
    try:
        checkpoints.restore_variables(sess, prefix, variables)
    except InputError:
        newer = checkpoints.latest_in_dir(found_in) if found_in else None
        if newer is None or newer == prefix or snapshot_folder.problem(prefix) is None:
            raise
        warn('%s is gone since it was found (a running training rotated it away?): '
             'restoring %s, the newest whole checkpoint of %s, instead' % (prefix, newer,
                                                                             found_in))
        checkpoints.restore_variables(sess, newer, variables)
        prefix = newer
    sess.run(model.fold_batch_norm_op(variables))
    return prefix


class _OwnsSession(object):
    """A context manager that closes its `sess` (a tf1.Session) on exit."""

    def close(self):
        self.sess.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Predictor(_OwnsSession):
    """Multi-scale (and optionally flipped) prediction at full resolution.

    Args:
      checkpoint: checkpoint prefix or directory (its latest checkpoint).
      num_classes: the model's class count (checked against the checkpoint).
      scales: input scales fused by max, e.g. (1.0,) or (1.0, 0.75, 0.5).
      flip: average the logits with the mirrored image's.
      img_mean: BGR mean subtracted from the images.
      threads: intra-op CPU threads (0: TensorFlow's default).
      precision: 'float32', 'bfloat16' or 'float16' (msc.multi_scale_logits; the caller checks
        that the hardware suits it, precision.choose).
      max_side: an image whose longer side exceeds it is segmented brought down to it
        (bilinear) and its labels brought back to its size (nearest); no probabilities then.
      tile: (h, w) window (each side 8k + 1), or None: an image that one window does not
        cover is segmented in windows (tiling.py), at full resolution;
        tile_stride: (h, w) multiples of 8, or None (windows.default_stride);
        on_window: None, or on_window(done, total) called as a tiled image's windows run
        (tiling.grid_logits; e.g. progress.WindowProgress).
    Call predict(rgb) with [H, W, 3] uint8 RGB: returns (labels [H, W] int32,
    probs [H, W, C] float32 or None unless want_probs).
    """

    def __init__(self, checkpoint, num_classes, scales=(1.0,), flip=False,
                 img_mean=IMG_MEAN_BGR, threads=0, precision='float32', found_in=None,
                 max_side=None, tile=None, tile_stride=None, on_window=None):
        self.prefix = checkpoints.resolve_checkpoint(checkpoint)
        self.max_side = max_side
        self.tile = tuple(tile) if tile else None
        self.num_classes = num_classes
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.rgb = tf1.placeholder(tf.uint8, [None, None, 3], name='image_rgb')
            images = preprocess_image(self.rgb[None], img_mean)
            fused = []
            probs, labels = msc.predict_probs(images, num_classes, scales, flip, precision,
                                              fold_batch_norm=True, fused_out=fused)
            self.probs, self.labels = probs[0], labels[0]
            self.fused = tf.concat(fused, axis=0)   # [1 or 2 (flip), h, w, C]
            if self.tile:
                self.tiled = _tiled_outputs(self.rgb, num_classes, self.tile, tile_stride,
                                            scales, flip, precision, img_mean, on_window)
            self.sess = tf1.Session(config=session_config(threads, inference=True))
            self.prefix = restore_folded(self.sess, self.prefix, found_in)
        self.graph.finalize()

    def predict(self, rgb, want_probs=False):
        rgb = np.asarray(rgb, np.uint8)
        h, w = rgb.shape[:2]
        small = memory.reduced_size(h, w, self.max_side)
        if small != (h, w):
            if want_probs:
                raise ValueError(memory.max_side_conflict(self.max_side, True, True))
            reduced = np.asarray(Image.fromarray(rgb).resize(small[::-1], Image.BILINEAR))
            labels = self.sess.run(self.labels, {self.rgb: reduced})
            return memory.nearest_upsample(labels, h, w), None
        if self.tile and not tiling.covers(h, w, self.tile):
            labels, probs = self.tiled[bool(want_probs)]
            fetch = [labels, probs] if want_probs else [labels]
        else:
            fetch = [self.labels, self.probs] if want_probs else [self.labels]
        out = self.sess.run(fetch, {self.rgb: rgb})
        return out[0].astype(np.int32, copy=False), (out[1] if want_probs else None)

    def predict_fused(self, rgb):
        """The fused logits behind predict's probabilities (msc.fused_logits), at their own
        resolution, and predict's labels, from one run: (fused [1, h, w, C] float32, [2, h,
        w, C] with flip (the mirrored image's second); labels [H, W] int32).
        ProbsFromFused turns the logits into predict's probabilities, equal to the last bit.
        No max_side here: the image is segmented at its own size."""
        return tuple(self.sess.run([self.fused, self.labels],
                                   {self.rgb: np.asarray(rgb, np.uint8)}))


class ProbsFromFused(_OwnsSession):
    """Rebuilds the probabilities Predictor.predict returns from Predictor.predict_fused's
    logits with the same operations (msc.probs_from_fused), in a graph of its own.

    Call with fused [K, h, w, C] float32 (K = 1, or 2 with flip) and the image's (H, W):
    returns [H, W, C] float32 probabilities.
    """

    def __init__(self, threads=0):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.fused = tf1.placeholder(tf.float32, [None, None, None, None], name='fused')
            self.size = tf1.placeholder(tf.int32, [2], name='size')
            plain = msc.probs_from_fused([self.fused[:1]], self.size)[0][0]
            flipped = msc.probs_from_fused([self.fused[:1], self.fused[1:2]], self.size)[0][0]
            self.plain, self.flipped = plain, flipped
            self.sess = tf1.Session(config=session_config(threads, inference=True))
        self.graph.finalize()

    def __call__(self, fused, image_hw):
        fused = np.asarray(fused, np.float32)
        fetch = self.flipped if len(fused) > 1 else self.plain
        return self.sess.run(fetch, {self.fused: fused, self.size: list(image_hw)})


def _tiled_outputs(rgb, num_classes, tile, tile_stride, scales, flip, precision, img_mean,
                   on_window=None):
    """The tiled graph (tiling.tiled_predict) on the Predictor's placeholder, built twice
    around one set of windows: {False: (labels, None), True: (labels, full-size probs)}
    (the probabilities only for the dense CRF); labels uint8 for fewer than 257 classes (made
    int32 by predict). The variables exist already (the whole-image graph made them)."""
    grid = tiling.grid_logits(rgb, num_classes, tile, tile_stride, scales, flip, precision,
                              fold_batch_norm=True, img_mean=img_mean, on_window=on_window)
    h, w = tf.shape(rgb)[0], tf.shape(rgb)[1]
    dtype = tf.uint8 if num_classes <= 256 else tf.int32
    return {False: tiling.grid_to_full(grid, h, w, False, dtype),
            True: tiling.grid_to_full(grid, h, w, True, dtype)}


Prediction = collections.namedtuple('Prediction', ['item', 'image', 'labels', 'probs', 'crf'])
Prediction.__doc__ = """One item's results from `predictions`.

  item: the item as given; image: [H, W, 3] uint8 RGB, as read;
  labels: [H, W] int32, the network's prediction;
  probs: [H, W, C] float32 softmax probabilities with want_probs, else None;
  crf: with a CRF pool, its result: [H, W] int32 labels, or [H, W, C] float32 probabilities
    when the pool has return_probs; else None.
"""


def predictions(predictor, items, read, crf_pool=None, want_probs=False, on_error=None,
                errors=()):
    """Segments `items` one by one; yields a Prediction per item, in the order of `items`.

    Args:
      predictor: any object with predict(rgb, want_probs) -> (labels [H, W] int32, probs
        [H, W, C] float32 or None), e.g. a Predictor.
      items: iterable of anything `read` accepts (paths, datalist.Example, ...).
      read: item -> [H, W, 3] uint8 RGB image.
      crf_pool: a crf.CRFPool (entered), or None. Each image's probabilities go to it and the
        network goes on with the next images while the CRF of the earlier ones runs; an item
        is yielded once its CRF result is there.
      want_probs: keep the network's probabilities in Prediction.probs.
      on_error, errors: an exception of a type in `errors` raised by read or predict is passed
        to on_error(item, exception) and the item is skipped (reported at once, not in
        order); without on_error nothing is caught.
    """
    catch = tuple(errors) if on_error is not None else ()
    for item in items:
        try:
            image = read(item)
            labels, probs = predictor.predict(image, want_probs or crf_pool is not None)
        except catch as e:
            on_error(item, e)
            continue
        if crf_pool is None:
            yield Prediction(item, image, labels, probs, None)
            continue
        crf_pool.submit(Prediction(item, image, labels, probs if want_probs else None, None),
                        image, probs)
        for done, refined in crf_pool.ready():
            yield done._replace(crf=refined)
    if crf_pool is not None:
        for done, refined in crf_pool.results():
            yield done._replace(crf=refined)
