"""Segmentation metrics from a confusion matrix (NumPy only; no TensorFlow).

The confusion matrix is int64 [C, C]: rows are the ground-truth class, columns the predicted
class, so ``cm[g, p]`` counts pixels of true class ``g`` predicted as ``p``. Pixels whose
ground-truth label is the ignore label are not counted anywhere.

Definitions (the standard PASCAL VOC ones), per class c:
  TP_c = cm[c, c], GT_c = row sum, PRED_c = column sum,
  IoU_c = TP_c / (GT_c + PRED_c - TP_c), accuracy_c = TP_c / GT_c.
A class absent from both the ground truth and the predictions has no IoU (n/a) and is left
out of the mean IoU; a class that is only predicted has IoU 0 and counts. The second mean,
over the classes present in the ground truth only (kazuto1011/deeplab-pytorch's convention,
`hist.sum(axis=1) > 0`, in which its COCO-Stuff figures are published), leaves those
predicted-only classes out too; both say which classes they cover. Mean class accuracy
averages over the classes present in the ground truth. Frequency-weighted IoU is
sum_c (GT_c / total) * IoU_c over the classes present in the ground truth.
"""
import numpy as np

from deeplab_resnet.common.constants import IGNORE_LABEL
from deeplab_resnet.common.names import class_names as default_class_names
from deeplab_resnet.data.labels import out_of_range_values


CHUNK_PIXELS = 1 << 22   # pixels counted at a time: about 100 MB of temporaries, whatever
                         # the image's size (a 9000 x 9000 label map at once took ~20 B a pixel)


def confusion_matrix(labels, preds, num_classes, ignore_label=IGNORE_LABEL):
    """Confusion matrix of one image (or any batch of pixels), counted CHUNK_PIXELS at a time.

    Args:
      labels: integer array, ground truth (e.g. [H, W] uint8); pixels equal to
        ``ignore_label`` are skipped. Other values must lie in [0, num_classes).
      preds: integer array of the same shape, predicted class indices in [0, num_classes).
      num_classes: C.
      ignore_label: the void label value.
    Returns: int64 [C, C], rows = ground truth, columns = prediction.
    Raises: ValueError on a shape mismatch or an out-of-range label or prediction
      (use ``out_of_range_values`` first to report bad masks by file).
    """
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    if labels.shape != preds.shape:
        raise ValueError('labels shape %s != predictions shape %s'
                         % (labels.shape, preds.shape))
    flat_labels, flat_preds = labels.reshape(-1), preds.reshape(-1)
    counts = np.zeros(num_classes * num_classes, np.int64)
    for start in range(0, flat_labels.size, CHUNK_PIXELS):
        stop = start + CHUNK_PIXELS
        keep = flat_labels[start:stop] != ignore_label
        gt = flat_labels[start:stop][keep].astype(np.int64)
        pr = flat_preds[start:stop][keep].astype(np.int64)
        if gt.size and (gt.min() < 0 or gt.max() >= num_classes):
            raise ValueError('label values %s outside [0, %d) and not the ignore label %d'
                             % (out_of_range_values(labels, num_classes, ignore_label),
                                num_classes, ignore_label))
        if pr.size and (pr.min() < 0 or pr.max() >= num_classes):
            raise ValueError('prediction values outside [0, %d)' % num_classes)
        counts += np.bincount(gt * num_classes + pr, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


class ConfusionMatrix(object):
    """Accumulates an int64 [C, C] confusion matrix over a whole dataset.

    Attributes:
      matrix: int64 [C, C], rows = ground truth, columns = prediction.
    """

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, labels, preds):
        """Adds one image: labels and preds integer arrays of equal shape (e.g. [H, W])."""
        self.matrix += confusion_matrix(labels, preds, self.num_classes, self.ignore_label)
        return self

    def metrics(self, class_names=None):
        """``compute_metrics`` of the accumulated matrix."""
        return compute_metrics(self.matrix, class_names)


def _ratio(num, den):
    """float64 num / den where den > 0, NaN elsewhere (both 1-D arrays)."""
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _float_or_none(x):
    return None if x is None or np.isnan(x) else float(x)


def _mean_or_none(values, mask):
    return float(values[mask].mean()) if mask.any() else None


def compute_metrics(cm, class_names=None):
    """Summary metrics of a confusion matrix.

    Args:
      cm: integer [C, C] confusion matrix, rows = ground truth, columns = prediction.
      class_names: optional list of C names (default: VOC names for 21 classes, else
        'class_<i>').
    Returns: dict of Python scalars (JSON-serialisable), fractions in [0, 1]:
      'mean_iou', 'pixel_accuracy', 'mean_class_accuracy', 'frequency_weighted_iou'
        (None when undefined, e.g. no pixels at all);
      'per_class': list of C dicts {'name', 'iou', 'accuracy', 'gt_pixels', 'pred_pixels'};
        'iou' is None for a class absent from both ground truth and predictions,
        'accuracy' is None for a class absent from the ground truth;
      'num_classes_in_mean_iou': how many classes the mean IoU averages;
      'classes_in_mean_iou': their indices (present in the ground truth or the predictions);
      'mean_iou_gt_classes', 'classes_in_mean_iou_gt_classes': the mean IoU over the classes
        present in the ground truth only, and their indices;
      'num_pixels': total counted pixels; 'confusion_matrix': the matrix as nested lists.
    """
    cm = np.asarray(cm, dtype=np.int64)
    num_classes = cm.shape[0]
    names = default_class_names(num_classes, class_names)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    total = int(cm.sum())
    union = gt + pred - tp
    iou = _ratio(tp, union)        # NaN where the class is absent from both
    acc = _ratio(tp, gt)           # NaN where the class is absent from the ground truth
    present = union > 0
    in_gt = gt > 0
    fw_iou = float((gt[in_gt] / total * iou[in_gt]).sum()) if total else None
    per_class = [{'name': names[c], 'iou': _float_or_none(iou[c]),
                  'accuracy': _float_or_none(acc[c]), 'gt_pixels': int(gt[c]),
                  'pred_pixels': int(pred[c])} for c in range(num_classes)]
    return {
        'mean_iou': _mean_or_none(iou, present),
        'pixel_accuracy': float(tp.sum()) / total if total else None,
        'mean_class_accuracy': _mean_or_none(acc, in_gt),
        'frequency_weighted_iou': fw_iou,
        'per_class': per_class,
        'num_classes_in_mean_iou': int(present.sum()),
        'classes_in_mean_iou': [int(c) for c in np.flatnonzero(present)],
        'mean_iou_gt_classes': _mean_or_none(iou, in_gt),
        'classes_in_mean_iou_gt_classes': [int(c) for c in np.flatnonzero(in_gt)],
        'num_pixels': total,
        'confusion_matrix': cm.tolist(),
    }


def format_ratio(value):
    """A metric in [0, 1] as '0.7349', or 'n/a' for None (no pixel to compute it on)."""
    return 'n/a' if value is None else '%.4f' % value


def _pct(x):
    return '%7s' % 'n/a' if x is None else '%7.2f' % (100.0 * x)


MAX_NAMES_LISTED = 10


def _names(metrics, classes):
    names = [metrics['per_class'][c]['name'] for c in classes[:MAX_NAMES_LISTED]]
    more = len(classes) - len(names)
    return ', '.join(names) + (', ... (%d more)' % more if more else '')


def format_table(metrics):
    """A printable table of ``compute_metrics`` output.

    One row per class (name, IoU %, accuracy %, 'n/a' where undefined), then the summary lines
    (mean IoU, pixel accuracy, mean class accuracy, frequency-weighted IoU, pixel count).
    Returns: str (no trailing newline).
    """
    width = max([len('class')] + [len(pc['name']) for pc in metrics['per_class']])
    lines = ['%-*s  %7s  %7s' % (width, 'class', 'IoU %', 'acc %')]
    lines += ['%-*s  %s  %s' % (width, pc['name'], _pct(pc['iou']), _pct(pc['accuracy']))
              for pc in metrics['per_class']]
    lines.append('-' * len(lines[0]))
    n_in = metrics.get('num_classes_in_mean_iou', len(metrics['per_class']))
    lines.append('mean IoU:               %s %%  (over %d of %d classes: in the ground truth '
                 'or the predictions)'
                 % (_pct(metrics['mean_iou']).strip(), n_in, len(metrics['per_class'])))
    if 'mean_iou_gt_classes' in metrics:
        in_gt = metrics['classes_in_mean_iou_gt_classes']
        lines.append('mean IoU, GT classes:   %s %%  (over %d of %d classes: in the ground '
                     'truth; kazuto\'s convention)'
                     % (_pct(metrics['mean_iou_gt_classes']).strip(), len(in_gt),
                        len(metrics['per_class'])))
        only_predicted = sorted(set(metrics['classes_in_mean_iou']) - set(in_gt))
        absent = [c for c in range(len(metrics['per_class']))
                  if c not in set(metrics['classes_in_mean_iou'])]
        for what, classes in (('only predicted (IoU 0, in the first mean only)',
                               only_predicted), ('in neither (n/a, in no mean)', absent)):
            if classes:
                lines.append('  classes %s: %s' % (what, _names(metrics, classes)))
    lines.append('pixel accuracy:         %s %%' % _pct(metrics['pixel_accuracy']).strip())
    lines.append('mean class accuracy:    %s %%'
                 % _pct(metrics['mean_class_accuracy']).strip())
    lines.append('frequency-weighted IoU: %s %%'
                 % _pct(metrics['frequency_weighted_iou']).strip())
    lines.append('pixels:                 %d' % metrics['num_pixels'])
    return '\n'.join(lines)
