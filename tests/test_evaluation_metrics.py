"""Metrics against hand-computed numbers and an explicit-loop reference implementation."""
import numpy as np
import pytest

from deeplab_resnet.data.labels import out_of_range_values
from deeplab_resnet.evaluation.metrics import (ConfusionMatrix, compute_metrics, confusion_matrix,
                                               format_table)

# 5 classes. Class 3 is predicted only on ignore pixels (so absent from both after masking);
# class 4 is only predicted (never in the ground truth).
LABELS = np.array([[0, 0, 1, 255],
                   [0, 1, 1, 255],
                   [2, 2, 0, 1]], dtype=np.uint8)
PREDS = np.array([[0, 1, 1, 3],
                  [0, 1, 4, 0],
                  [2, 0, 0, 1]], dtype=np.int64)
# Worked out by hand from the 10 non-ignore pixels.
EXPECTED_CM = [[3, 1, 0, 0, 0],
               [0, 3, 0, 0, 1],
               [1, 0, 1, 0, 0],
               [0, 0, 0, 0, 0],
               [0, 0, 0, 0, 0]]
EXPECTED_IOU = [3 / 5, 3 / 5, 1 / 2, None, 0.0]
EXPECTED_ACC = [3 / 4, 3 / 4, 1 / 2, None, None]
EXPECTED_MIOU = (0.6 + 0.6 + 0.5 + 0.0) / 4          # 0.425, class 3 left out
EXPECTED_PIXEL_ACC = 7 / 10
EXPECTED_MEAN_ACC = (0.75 + 0.75 + 0.5) / 3
EXPECTED_FWIOU = 0.4 * 0.6 + 0.4 * 0.6 + 0.2 * 0.5   # 0.58


def loop_confusion(labels, preds, num_classes, ignore_label=255):
    """Reference: one pixel at a time."""
    cm = [[0] * num_classes for _ in range(num_classes)]
    for g, p in zip(np.asarray(labels).ravel().tolist(), np.asarray(preds).ravel().tolist()):
        if g != ignore_label:
            cm[g][p] += 1
    return cm


def loop_metrics(cm):
    """Reference metrics with plain Python loops."""
    n = len(cm)
    total = sum(sum(row) for row in cm)
    ious, accs, fw = [], [], 0.0
    for c in range(n):
        tp = cm[c][c]
        gt = sum(cm[c])
        pr = sum(cm[r][c] for r in range(n))
        if gt + pr - tp > 0:
            ious.append(tp / (gt + pr - tp))
            if gt > 0:
                fw += gt / total * tp / (gt + pr - tp)
        if gt > 0:
            accs.append(tp / gt)
    return {'mean_iou': sum(ious) / len(ious),
            'pixel_accuracy': sum(cm[c][c] for c in range(n)) / total,
            'mean_class_accuracy': sum(accs) / len(accs),
            'frequency_weighted_iou': fw}


def test_hand_example_confusion_matrix():
    cm = confusion_matrix(LABELS, PREDS, 5)
    assert cm.dtype == np.int64 and cm.shape == (5, 5)
    assert cm.tolist() == EXPECTED_CM
    assert loop_confusion(LABELS, PREDS, 5) == EXPECTED_CM


def test_hand_example_metrics():
    m = compute_metrics(confusion_matrix(LABELS, PREDS, 5), class_names=list('abcde'))
    assert m['mean_iou'] == pytest.approx(EXPECTED_MIOU)
    assert m['pixel_accuracy'] == pytest.approx(EXPECTED_PIXEL_ACC)
    assert m['mean_class_accuracy'] == pytest.approx(EXPECTED_MEAN_ACC)
    assert m['frequency_weighted_iou'] == pytest.approx(EXPECTED_FWIOU)
    assert m['num_pixels'] == 10
    assert m['num_classes_in_mean_iou'] == 4
    assert m['confusion_matrix'] == EXPECTED_CM
    assert [pc['name'] for pc in m['per_class']] == list('abcde')
    for pc, iou, acc in zip(m['per_class'], EXPECTED_IOU, EXPECTED_ACC):
        assert pc['iou'] == (None if iou is None else pytest.approx(iou))
        assert pc['accuracy'] == (None if acc is None else pytest.approx(acc))
    assert [pc['gt_pixels'] for pc in m['per_class']] == [4, 4, 2, 0, 0]
    assert [pc['pred_pixels'] for pc in m['per_class']] == [4, 4, 1, 0, 1]


def test_random_against_loops_and_accumulation():
    rng = np.random.RandomState(0)
    num_classes = 6
    acc = ConfusionMatrix(num_classes)
    all_labels, all_preds = [], []
    for shape in [(7, 9), (5, 4), (11, 3)]:
        labels = rng.randint(0, num_classes, size=shape)
        labels[rng.rand(*shape) < 0.2] = 255
        labels[labels == 5] = 0            # class 5 never in ground truth
        preds = rng.randint(0, num_classes, size=shape)
        acc.update(labels.astype(np.uint8), preds)
        all_labels.append(labels.ravel())
        all_preds.append(preds.ravel())
    big = confusion_matrix(np.concatenate(all_labels), np.concatenate(all_preds), num_classes)
    assert acc.matrix.dtype == np.int64
    np.testing.assert_array_equal(acc.matrix, big)
    ref_cm = loop_confusion(np.concatenate(all_labels), np.concatenate(all_preds), num_classes)
    assert acc.matrix.tolist() == ref_cm
    m, ref = acc.metrics(), loop_metrics(ref_cm)
    for key in ref:
        assert m[key] == pytest.approx(ref[key]), key


def test_counted_in_chunks_as_at_once(monkeypatch):
    """A label map larger than a chunk (7 pixels here, 4 M in use) is counted chunk by chunk:
    the explicit loop's matrix, a non-contiguous view included; a bad value in the last
    chunk is still found."""
    from deeplab_resnet.evaluation import metrics
    monkeypatch.setattr(metrics, 'CHUNK_PIXELS', 7)
    rng = np.random.RandomState(1)
    labels = rng.randint(0, 4, size=(9, 10)).astype(np.uint8)
    labels[rng.rand(9, 10) < 0.3] = 255
    preds = rng.randint(0, 4, size=(9, 10))
    for lab, pred in ((labels, preds), (labels[:, ::3], preds[:, ::3])):
        assert confusion_matrix(lab, pred, 4).tolist() == loop_confusion(
            lab.ravel(), pred.ravel(), 4)
    bad = labels.copy()
    bad[-1, -1] = 9
    with pytest.raises(ValueError, match=r'\[9\]'):
        confusion_matrix(bad, preds, 4)


def test_degenerate_inputs():
    all_ignore = np.full((3, 3), 255, np.uint8)
    cm = confusion_matrix(all_ignore, np.zeros((3, 3), np.int64), 3)
    assert cm.sum() == 0
    m = compute_metrics(cm)
    assert m['mean_iou'] is None and m['pixel_accuracy'] is None and m['num_pixels'] == 0
    assert 'n/a' in format_table(m)
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 7]), np.array([0, 0]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)


def test_out_of_range_values():
    labels = np.array([[0, 1, 255], [21, 30, 21], [20, 2, 254]], dtype=np.uint8)
    assert out_of_range_values(labels, 21, 255) == [21, 30, 254]
    assert out_of_range_values(labels, 255, 255) == []
    assert out_of_range_values(np.array([-1, 0, 3]), 3, 255) == [-1, 3]
    assert out_of_range_values(LABELS, 5, 255) == []


def test_format_table():
    m = compute_metrics(confusion_matrix(LABELS, PREDS, 5))
    text = format_table(m)
    lines = text.splitlines()
    assert lines[4].split() == ['class_3', 'n/a', 'n/a']
    assert lines[5].split() == ['class_4', '0.00', 'n/a']
    assert lines[1].split() == ['class_0', '60.00', '75.00']
    assert '42.50' in text and '70.00' in text and '58.00' in text


def test_both_mean_iou_conventions_by_hand():
    """Class 2 is only predicted (IoU 0), class 3 appears nowhere. By hand:
    IoU_0 = 5 / (8 + 6 - 5) = 5/9, IoU_1 = 3 / (4 + 4 - 3) = 3/5, IoU_2 = 0;
    present in the ground truth or the predictions: (5/9 + 3/5 + 0) / 3 = 52/135;
    present in the ground truth (kazuto's convention): (5/9 + 3/5) / 2 = 26/45."""
    cm = np.array([[5, 1, 2, 0],
                   [1, 3, 0, 0],
                   [0, 0, 0, 0],
                   [0, 0, 0, 0]])
    m = compute_metrics(cm, ['sky', 'road', 'boat', 'tree'])
    assert m['mean_iou'] == pytest.approx(52 / 135, abs=1e-15)
    assert m['mean_iou_gt_classes'] == pytest.approx(26 / 45, abs=1e-15)
    assert m['classes_in_mean_iou'] == [0, 1, 2] and m['num_classes_in_mean_iou'] == 3
    assert m['classes_in_mean_iou_gt_classes'] == [0, 1]
    text = format_table(m)
    assert 'mean IoU:               38.52 %  (over 3 of 4 classes: in the ground truth or the ' \
           'predictions)' in text
    assert "mean IoU, GT classes:   57.78 %  (over 2 of 4 classes: in the ground truth; " \
           "kazuto's convention)" in text
    assert '  classes only predicted (IoU 0, in the first mean only): boat' in text
    assert '  classes in neither (n/a, in no mean): tree' in text
    # Every class predicted where it is true: the two conventions agree.
    same = compute_metrics(np.diag([2, 3, 4]))
    assert same['mean_iou'] == same['mean_iou_gt_classes'] == 1.0
    assert 'only predicted' not in format_table(same)
