"""Per-image results of an evaluation and its worst images (NumPy and PIL; no TensorFlow).

`--per-image` (with `--output-json`) adds to the results a `per_image` list: for every
evaluated image, in list order, its pixel accuracy and the IoU of each class present in its
ground truth or its prediction, over its valid (not ignore-label) pixels only, and their
mean (the image's mIoU; None for an image without a valid pixel). In the CRF script the
figures are the CRF's, and the network's are under "network".

With `--plot-dir`, the `--worst N` images of lowest mIoU (ties: the earlier in the list;
images without a valid pixel left out) are drawn in worst.png (plots.write_worst) from
thumbnails kept while evaluating: WorstImages holds at most N of them at any time, each
brought down to THUMB_SIDE pixels on its longer side, never a full image.

The dataset-level metrics do not change: they come from one confusion matrix over the whole
list, not from these per-image figures.
"""
import heapq
import os

import numpy as np
from PIL import Image

from deeplab_resnet.common import cli
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.evaluation import metrics

DEFAULT_WORST = 8
THUMB_SIDE = 200   # the longer side of a kept thumbnail, pixels


def image_scores(truth, pred, num_classes, ignore_label):
    """One image's figures over its valid pixels.

    Args:
      truth: [H, W] integer ground truth (ignore_label: not counted).
      pred: [H, W] integer prediction, classes 0..num_classes-1.
    Returns: dict (JSON-ready) 'valid_pixels' (int), 'pixel_accuracy' (float, None without a
      valid pixel), 'mean_iou' (the mean of the IoUs listed; None without a valid pixel),
      'iou': [{'class': index, 'iou': float}] for each class present in the valid pixels'
      ground truth or prediction, in class order.
    """
    cm = metrics.confusion_matrix(truth, pred, num_classes, ignore_label)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    total = int(cm.sum())
    present = np.flatnonzero(union > 0)
    ious = [{'class': int(c), 'iou': float(tp[c] / union[c])} for c in present]
    return {'valid_pixels': total,
            'pixel_accuracy': float(tp.sum()) / total if total else None,
            'mean_iou': float(np.mean([v['iou'] for v in ious])) if ious else None,
            'iou': ious}


def entry(index, example, scores, network_scores=None):
    """A `per_image` entry: list index (0-based) and line, image and label paths, then
    image_scores' figures (with the network's under 'network' when a CRF came after)."""
    out = {'index': index, 'line': example.line, 'image': example.image,
           'label': example.label}
    out.update(scores)
    if network_scores is not None:
        out['network'] = network_scores
    return out


def thumbnail_size(h, w, side=THUMB_SIDE):
    """(h, w) brought down so that the longer side is at most `side` (never up)."""
    scale = min(1.0, float(side) / max(h, w))
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def nearest(labels, size):
    """[H, W] integer labels -> [size] by nearest (pixel centres), dtype kept."""
    labels = np.asarray(labels)
    h, w = labels.shape
    rows = np.minimum((np.arange(size[0]) + 0.5) * h / size[0], h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size[1]) + 0.5) * w / size[1], w - 1).astype(np.int64)
    return labels[rows][:, cols]


def thumbnails(image, truth, pred, side=THUMB_SIDE):
    """(image [h, w, 3] uint8 bilinear, truth [h, w], pred [h, w] nearest) at most `side`
    pixels on the longer side."""
    size = thumbnail_size(image.shape[0], image.shape[1], side)
    small = np.asarray(image, np.uint8)
    if size != small.shape[:2]:
        small = np.asarray(Image.fromarray(small).resize(size[::-1], Image.BILINEAR))
    return small, nearest(truth, size), nearest(pred, size)


def sort_key(index, mean_iou):
    """The worst come first: lowest mIoU, then the earlier in the list."""
    return (mean_iou, index)


class WorstImages(object):
    """Keeps the thumbnails of the `n` worst images seen so far (lowest mIoU first; ties: the
    earlier index); images without a valid pixel (mIoU None) are not kept.

    add(index, name, mean_iou, pixel_accuracy, image, truth, pred): one image, full size
    ([H, W, 3] uint8, [H, W], [H, W]); only its thumbnails are kept, and only while it is
    among the n worst. rows(): the kept images, worst first, as plots.draw_worst takes them.
    """

    def __init__(self, n=DEFAULT_WORST, side=THUMB_SIDE):
        self.n, self.side = n, side
        self._heap = []   # (-mean_iou, -index, row): the best of the kept on top

    def add(self, index, name, mean_iou, pixel_accuracy, image, truth, pred):
        if mean_iou is None or self.n <= 0:
            return
        key = (-mean_iou, -index)
        if len(self._heap) >= self.n and key <= self._heap[0][:2]:
            return   # better than every kept one
        small, small_truth, small_pred = thumbnails(image, truth, pred, self.side)
        row = {'index': index, 'name': name, 'mean_iou': mean_iou,
               'pixel_accuracy': pixel_accuracy, 'image': small, 'truth': small_truth,
               'pred': small_pred}
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, key + (row,))
        else:
            heapq.heapreplace(self._heap, key + (row,))

    def rows(self):
        return [item[2] for item in sorted(self._heap, key=lambda t: (-t[0], -t[1]))]


def worst_entries(per_image, n):
    """The `n` worst `per_image` entries (lowest mean_iou, ties: the earlier index), those
    without a valid pixel left out."""
    scored = [e for e in per_image if e.get('mean_iou') is not None]
    return sorted(scored, key=lambda e: sort_key(e['index'], e['mean_iou']))[:n]


def add_arguments(parser):
    """--per-image and --worst (both evaluation scripts)."""
    parser.add_argument('--per-image', action='store_true',
                        help='add to --output-json a "per_image" list: each image\'s pixel '
                             'accuracy and the IoU of each class in its ground truth or '
                             'prediction, valid pixels only (after the CRF in the CRF '
                             'script); with --plot-dir also worst.png (docs/evaluation.md)')
    parser.add_argument('--worst', type=cli.non_negative_int, default=None, metavar='N',
                        help='with --per-image and --plot-dir: how many of the images of '
                             'lowest mIoU worst.png shows (default %d)' % DEFAULT_WORST)
    return parser


def check_arguments(args):
    """--per-image needs --output-json, --worst needs --plot-dir (and --per-image).
    Raises InputError (one line)."""
    if args.per_image and not args.output_json:
        raise InputError('--per-image needs --output-json FILE (the per-image figures are '
                         'written there)')
    if args.worst is not None and not (args.plot_dir and args.per_image):
        raise InputError('--worst needs --per-image and --plot-dir DIR (worst.png is drawn '
                         'there)')


class Collector(object):
    """Gathers the per-image entries (and, with a plot directory, the worst images'
    thumbnails) while evaluation.confusion_matrices runs: call add(result, truth) with each
    predictor.Prediction (in list order) and its ground truth."""

    def __init__(self, num_classes, ignore_label, worst=None, save_dir=None, stem=None):
        self.num_classes, self.ignore_label = num_classes, ignore_label
        self.entries = []
        self.worst = WorstImages(worst) if worst is not None else None
        self.save_dir, self.stem = save_dir, stem

    def add(self, result, truth):
        final = result.labels if result.crf is None else result.crf
        scores = image_scores(truth, final, self.num_classes, self.ignore_label)
        network = (image_scores(truth, result.labels, self.num_classes, self.ignore_label)
                   if result.crf is not None else None)
        index = len(self.entries)
        e = entry(index, result.item, scores, network)
        if self.save_dir:
            e['prediction'] = os.path.abspath(os.path.join(self.save_dir,
                                                           self.stem(result.item.image)
                                                           + '.png'))
        self.entries.append(e)
        if self.worst is not None:
            self.worst.add(index, os.path.basename(result.item.image), scores['mean_iou'],
                           scores['pixel_accuracy'], result.image, truth, final)

    def results(self):
        """The results' additions: 'per_image' (the entries) and 'worst' ({'n', 'indices'
        (worst first), 'predictions_saved'})."""
        n = self.worst.n if self.worst is not None else DEFAULT_WORST
        return {'per_image': self.entries,
                'worst': {'n': n, 'indices': [e['index'] for e in
                                              worst_entries(self.entries, n)],
                          'predictions_saved': bool(self.save_dir)}}
