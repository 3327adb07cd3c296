"""deeplab_resnet.evaluation.plots: the evaluation pictures read back pixel by pixel.

The matrices are written by hand; the expected rates are worked out in the comments. Cells are
found from the fixed layout (squares of plots.cell_px(n) from the documented origin), colours
compared with matplotlib's 'Blues' map at the rate computed here.
"""
import csv
import json
import os

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from deeplab_resnet.evaluation import metrics, plots

BLUES = colormaps['Blues']


def results_of(matrix, names=None, crf_matrix=None):
    """An evaluation results dict as --output-json holds it."""
    results = {'metrics': metrics.compute_metrics(np.array(matrix), names)}
    results['mean_iou'] = results['metrics']['mean_iou']
    if crf_matrix is not None:
        results['crf'] = {'metrics': metrics.compute_metrics(np.array(crf_matrix), names)}
    return results


def read_rgb(path):
    return np.asarray(Image.open(path).convert('RGB')).astype(int)


def cell(rgb, geometry, row, column, inset=3):
    """The colour near the top-left corner of a matrix cell (away from its text)."""
    x0, y0 = geometry['origin_px']
    size = geometry['cell_px']
    return rgb[y0 + row * size + inset, x0 + column * size + inset]


def expected(rate):
    return np.round(np.array(BLUES(rate)[:3]) * 255).astype(int)


def luminance(colour):
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def test_confusion_cells_follow_a_known_matrix(tmp_path):
    # Rows = ground truth. Row 0: 8 of 10 right, 2 taken for class 1 -> 0.8, 0.2, 0.
    # Row 1: no ground-truth pixels (only predicted) -> grey, "(no GT)".
    # Row 2: 1, 1, 2 of 4 -> 0.25, 0.25, 0.5.
    matrix = [[8, 2, 0], [0, 0, 0], [1, 1, 2]]
    plots.write_plots(str(tmp_path), results_of(matrix, ['bg', 'rect', 'disc']))
    rgb = read_rgb(str(tmp_path / 'confusion.png'))
    geometry = json.load(open(str(tmp_path / 'confusion.json')))
    # The size the class count implies: three large cells (at most 10 classes) plus the
    # fixed margins.
    size = plots.LARGE_CELL_PX
    assert rgb.shape[:2] == (plots.MATRIX_TOP_PX + 3 * size + plots.MATRIX_BOTTOM_PX,
                             plots.MATRIX_LEFT_PX + 3 * size + plots.MATRIX_RIGHT_PX)
    assert geometry['cell_px'] == size
    assert geometry['origin_px'] == [plots.MATRIX_LEFT_PX, plots.MATRIX_TOP_PX]
    rates = {(0, 0): 0.8, (0, 1): 0.2, (0, 2): 0.0, (2, 0): 0.25, (2, 1): 0.25, (2, 2): 0.5}
    for (r, c), rate in rates.items():
        np.testing.assert_allclose(cell(rgb, geometry, r, c), expected(rate), atol=3)
    for c in range(3):
        np.testing.assert_allclose(cell(rgb, geometry, 1, c), plots.NO_TRUTH_RGB, atol=3)
    assert geometry['no_ground_truth'] == [1] and geometry['row_labels'][1] == '1 rect (no GT)'
    # Darker = larger.
    assert (luminance(cell(rgb, geometry, 0, 0)) < luminance(cell(rgb, geometry, 2, 2))
            < luminance(cell(rgb, geometry, 2, 0)) < luminance(cell(rgb, geometry, 0, 2)))


def test_perfect_prediction_has_the_darkest_diagonal(tmp_path):
    names = ['c%d' % i for i in range(21)]
    matrix = np.diag(np.arange(1, 22)) * 100
    plots.write_plots(str(tmp_path), results_of(matrix, names))
    rgb = read_rgb(str(tmp_path / 'confusion.png'))
    geometry = json.load(open(str(tmp_path / 'confusion.json')))
    assert rgb.shape[:2] == (plots.MATRIX_TOP_PX + 21 * plots.CELL_PX + plots.MATRIX_BOTTOM_PX,
                             plots.MATRIX_LEFT_PX + 21 * plots.CELL_PX + plots.MATRIX_RIGHT_PX)
    assert geometry['cell_px'] == plots.CELL_PX
    diagonal = [luminance(cell(rgb, geometry, i, i)) for i in range(21)]
    off = [luminance(cell(rgb, geometry, i, j)) for i in range(21) for j in range(21) if i != j]
    assert max(diagonal) < min(off)
    np.testing.assert_allclose(cell(rgb, geometry, 4, 4), expected(1.0), atol=3)
    np.testing.assert_allclose(cell(rgb, geometry, 4, 5), expected(0.0), atol=3)


def test_many_classes_show_the_most_confused_and_the_rest_as_other(tmp_path):
    # 40 classes, 100 right each; class c also has c pixels taken for class (c + 1) % 40, so
    # its off-diagonal rate c / (100 + c) grows with c: the 30 shown are classes 10..39.
    n = 40
    matrix = np.diag(np.full(n, 100))
    for c in range(n):
        matrix[c, (c + 1) % n] += c
    names = ['building;edifice'] + ['a very long class name %d' % c for c in range(1, n)]
    plots.write_plots(str(tmp_path), results_of(matrix, names))
    geometry = json.load(open(str(tmp_path / 'confusion.json')))
    assert geometry['rows'] == list(range(10, 40))
    assert geometry['columns'] == list(range(10, 40)) + ['other']
    rgb = read_rgb(str(tmp_path / 'confusion.png'))
    assert rgb.shape[:2] == (plots.MATRIX_TOP_PX + 30 * plots.CELL_PX + plots.MATRIX_BOTTOM_PX,
                             plots.MATRIX_LEFT_PX + 31 * plots.CELL_PX + plots.MATRIX_RIGHT_PX)
    # Class 39 goes to class 0, not shown: 39 / 139 in "other"; class 20 goes to 21 (shown).
    np.testing.assert_allclose(cell(rgb, geometry, 29, 30), expected(39 / 139), atol=3)
    np.testing.assert_allclose(cell(rgb, geometry, 10, 11), expected(20 / 120), atol=3)
    np.testing.assert_allclose(cell(rgb, geometry, 10, 30), expected(0.0), atol=3)


def test_short_names():
    assert plots.short_name('building;edifice') == 'building'
    assert plots.short_name('person;individual;someone') == 'person'
    assert plots.short_name('a very long class name 17') == 'a very long cla\u2026'
    assert len(plots.short_name('x' * 40)) == plots.MAX_NAME_CHARS


def bar_length(rgb, y, x0, colour):
    """Pixels of `colour` (within 3) from x0 to the right along row y."""
    row = rgb[y, x0:]
    near = (np.abs(row - np.array(colour)) <= 3).all(axis=1)
    return int(np.argmin(near)) if not near.all() else len(near)


def test_iou_bars_before_and_after_the_crf(tmp_path):
    # Network: class 0 IoU 8 / (10 + 8 - 8) = 0.8, class 1 IoU 1 / (1 + 3 - 1) = 1/3, class 2
    # absent (n/a).
    # CRF: class 0 IoU 1.0, class 1 1.0.
    net = [[8, 2, 0], [0, 1, 0], [0, 0, 0]]
    crf = [[10, 0, 0], [0, 1, 0], [0, 0, 0]]
    plots.write_plots(str(tmp_path), results_of(net, ['a', 'b', 'c'], crf))
    rgb = read_rgb(str(tmp_path / 'iou.png'))
    geometry = json.load(open(str(tmp_path / 'iou.json')))
    row = plots.LARGE_ROW_PX   # at most 10 classes
    assert rgb.shape[:2] == (plots.IOU_TOP_PX + 3 * row + plots.IOU_BOTTOM_PX,
                             plots.IOU_LEFT_PX + plots.BAR_PX + plots.IOU_RIGHT_PX)
    x0, y0 = geometry['origin_px']
    for series, ious in zip(geometry['series'], ([0.8, 1 / 3, None], [1.0, 1.0, None])):
        for c, iou in enumerate(ious):
            y = y0 + c * row + series['offset_px'] + series['height_px'] // 2
            # From 2 px right of the axis line (1 px wide, at x0) to the bar's end.
            length = bar_length(rgb, y, x0 + 2, series['rgb'])
            assert length == pytest.approx(max((iou or 0) * plots.BAR_PX - 2, 0), abs=2), (
                c, iou)
    # The table beside them.
    rows = list(csv.DictReader(open(str(tmp_path / 'per_class.csv'))))
    assert [r['name'] for r in rows] == ['a', 'b', 'c']
    assert float(rows[1]['iou_before_crf']) == pytest.approx(1 / 3)
    assert float(rows[1]['iou_after_crf']) == 1
    assert rows[2]['iou_before_crf'] == '' and rows[0]['gt_pixels'] == '10'
    assert rows[0]['pred_pixels_before_crf'] == '8' and rows[1]['accuracy_before_crf'] == '1.0'


def test_pictures_from_an_output_json(tmp_path, capsys):
    path = str(tmp_path / 'res.json')
    json.dump(results_of([[3, 1], [0, 4]], ['x', 'y']), open(path, 'w'))
    out_dir = str(tmp_path / 'plots')
    assert plots.main([path, '--plot-dir', out_dir]) == 0
    assert sorted(os.listdir(out_dir)) == ['confusion.json', 'confusion.png', 'iou.json',
                                           'iou.png', 'per_class.csv']
    assert Image.open(os.path.join(out_dir, 'iou.png')).size == (
        plots.IOU_LEFT_PX + plots.BAR_PX + plots.IOU_RIGHT_PX,
        plots.IOU_TOP_PX + 2 * plots.LARGE_ROW_PX + plots.IOU_BOTTOM_PX)
    capsys.readouterr()
    for bad, text in ((str(tmp_path / 'missing.json'), 'results file not found'),
                      (out_dir + '/per_class.csv', 'not a JSON file')):
        with pytest.raises(SystemExit) as info:
            plots.main([bad, '--plot-dir', out_dir])
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and len(err) == 1 and text in err[0], err
    json.dump({'mean_iou': 0.5}, open(path, 'w'))
    with pytest.raises(SystemExit):
        plots.main([path, '--plot-dir', out_dir])
    assert 'not an evaluation result' in capsys.readouterr().err
