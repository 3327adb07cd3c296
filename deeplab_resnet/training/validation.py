"""Validation while training (train_msc.py --val-list): every --val-every steps and at the
end, the current weights are evaluated on a labelled list with evaluate_msc.py's loop (full
images, --val-scales fused by max, one exact confusion matrix over the list). The figures go to
the log and to TensorBoard (validation/mean_iou, validation/pixel_accuracy,
validation/iou/<class>); the trainer keeps the best snapshot by mean IoU and writes
validation/best_mean_iou. Each pass also writes two images: validation/confusion_matrix (the
picture of plots.py, rows normalised to the ground truth) and validation/images/<i>, image |
ground truth | prediction of the first --val-images images of the list (the same images every
pass, so that TensorBoard's step slider shows them improve), in the dataset's colours.

The network is a second, inference-mode copy of the towers in the training graph, sharing the
training variables, so no weights are copied and the training steps are untouched. Every
worker of a multi-worker run validates the whole list (none waits for another).
"""
import collections
import time

import numpy as np
import tensorflow as tf

from deeplab_resnet.checkpoint import provenance
from deeplab_resnet.data import colormap, datalist, imageio
from deeplab_resnet.data.image_reader import preprocess_image
from deeplab_resnet.evaluation import metrics, run as evaluation
from deeplab_resnet.network import msc
from deeplab_resnet.training import run_summaries

tf1 = tf.compat.v1

CONFUSION_TAG = 'validation/confusion_matrix'
IMAGES_TAG = 'validation/images/%d'


class Interrupted(Exception):
    """A stop was asked for during validation: the pass is abandoned."""


class SessionPredictor(object):
    """The predictor interface of evaluation's loop (predict(rgb, want_probs) -> (labels
    [H, W] int32, probs [H, W, C] float32 or None)) on a graph inside the training session;
    raises Interrupted once a stop is asked for."""

    def __init__(self, run, stop, rgb, labels, probs):
        self.run, self.stop, self.rgb, self.labels, self.probs = run, stop, rgb, labels, probs

    def predict(self, rgb, want_probs=False):
        if self.stop.signal is not None:
            raise Interrupted()
        fetch = [self.labels, self.probs] if want_probs else [self.labels]
        out = self.run(fetch, {self.rgb: rgb})
        return out[0], (out[1] if want_probs else None)


class Validation(object):
    """The validation of one run: its examples (checked before training starts), its graph
    (build) and its passes (run).

    Args: examples (datalist.Example list), list_path, scales, class_names, ignore_label,
      img_mean, num_images (how many of the first examples are shown as images), palette
      (None: the VOC colours; else [>= C, 3] RGB, colormap.label_colours)."""

    def __init__(self, examples, list_path, scales, class_names, ignore_label, img_mean,
                 num_images=0, palette=None):
        self.examples, self.list_path, self.scales = examples, list_path, tuple(scales)
        self.class_names, self.ignore_label = class_names, ignore_label
        self.img_mean, self.num_images, self.palette = img_mean, num_images, palette
        self.tensors = None

    @classmethod
    def from_args(cls, args, class_names, train_list, warn, palette=None):
        """--val-list checked as evaluate_msc.py checks its list (files, sizes, label
        values); a warning names the images it shares with the training list."""
        examples = datalist.load_examples(args.val_list, args.data_dir, need_labels=True)
        evaluation.scan_labels(examples, args.num_classes, args.ignore_label)
        if train_list:
            ids = [provenance.image_id(ex.image) for ex in examples]
            shared = sorted(set(ids) & set(train_list['images']))
            if shared:
                warn('%d of the %d validation images are in the training list %s (e.g. %s): '
                     'the validation mIoU is not a held-out score'
                     % (len(shared), len(set(ids)), train_list['path'],
                        ', '.join(shared[:3])))
        return cls(examples, args.val_list, args.val_scales, class_names, args.ignore_label,
                   args.img_mean, args.val_images, palette)

    def build(self, num_classes):
        """The inference towers on a [H, W, 3] uint8 RGB placeholder, sharing the training
        variables (call after the training graph is built, in the same graph)."""
        with tf1.name_scope('validation'):
            rgb = tf1.placeholder(tf.uint8, [None, None, 3], name='image_rgb')
            with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
                probs, labels = msc.predict_probs(preprocess_image(rgb[None], self.img_mean),
                                                  num_classes, self.scales)
        self.tensors = (rgb, labels[0], probs[0])

    def run(self, run, stop, step, writer, log):
        """One pass. Returns {'mean_iou', 'pixel_accuracy', 'iou', 'step', 'list', 'scales',
        'seconds'} (also logged and written as summaries to `writer` unless it is None), or
        None when a stop came."""
        predictor = SessionPredictor(run, stop, *self.tensors)
        shown = []

        def keep(result):   # the first num_images predictions, for the image rows
            if len(shown) < self.num_images:
                shown.append(self.image_row(result.image, imageio.read_label(result.item.label),
                                            result.labels))
        t0 = time.time()
        try:
            cm = evaluation.confusion_matrices(predictor, self.examples, len(self.class_names),
                                               self.ignore_label, on_prediction=keep)[0]
        except Interrupted:
            log('validation at step %d abandoned (stop requested)' % step)
            return None
        seconds = time.time() - t0
        figures = cm.metrics(self.class_names)
        result = collections.OrderedDict([
            ('step', step), ('mean_iou', figures['mean_iou']),
            ('pixel_accuracy', figures['pixel_accuracy']),
            ('iou', collections.OrderedDict((c['name'], c['iou'])
                                            for c in figures['per_class'])),
            ('list', self.list_path), ('images', len(self.examples)),
            ('scales', list(self.scales)), ('seconds', round(seconds, 2))])
        if writer is not None:   # None: a worker that is not the chief draws nothing
            writer.add_summary(self.summary(result), step)
            writer.add_summary(self.image_summary(cm.matrix, shown, step), step)
        ratio = metrics.format_ratio
        log('validation at step %d: mIoU %s, pixel accuracy %s (%d images of %s, scales %s, '
            '%.1f s)' % (step, ratio(result['mean_iou']), ratio(result['pixel_accuracy']),
                         len(self.examples), self.list_path,
                         ','.join('%g' % s for s in self.scales), seconds))
        log('  IoU per class: %s' % ', '.join('%s %s' % (name, ratio(v))
                                             for name, v in result['iou'].items()))
        return result

    def image_row(self, rgb, truth, prediction):
        """image | ground truth | prediction: [H, 3 W, 3] uint8 RGB in the run's colours."""
        n = len(self.class_names)
        return np.concatenate([np.asarray(rgb, np.uint8)[..., :3],
                               colormap.colourise(truth, n, self.palette),
                               colormap.colourise(prediction, n, self.palette)], axis=1)

    def image_summary(self, matrix, rows, step):
        """validation/confusion_matrix and validation/images/<i> (image_row) as a Summary."""
        from deeplab_resnet.evaluation import plots   # matplotlib
        png, layout = plots.confusion_png(matrix, self.class_names,
                                          'validation at step %d' % step)
        width, height = layout['image_size']
        values = [run_summaries.png_value(CONFUSION_TAG, png, height, width)]
        values += [run_summaries.rgb_value(IMAGES_TAG % i, row) for i, row in enumerate(rows)]
        return tf1.Summary(value=values)

    def summary(self, result):
        values = [('validation/mean_iou', result['mean_iou']),
                  ('validation/pixel_accuracy', result['pixel_accuracy'])]
        values += [('validation/iou/%s' % name, v) for name, v in result['iou'].items()]
        return tf1.Summary(value=[tf1.Summary.Value(tag=tag, simple_value=v)
                                  for tag, v in values if v is not None])
