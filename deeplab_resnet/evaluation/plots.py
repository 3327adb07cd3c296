"""Evaluation pictures: the confusion matrix, per-class IoU bars and the per-class table.

Drawn with matplotlib's non-interactive backend (no display) from evaluation's results dict
(the `--output-json` file), so the same pictures come from evaluate_msc.py /
evaluate_msc_with_CRF.py ``--plot-dir DIR`` or, afterwards, without evaluating again::

    python -m deeplab_resnet.evaluation.plots RESULT.json --plot-dir DIR

DIR receives:
- ``confusion.png``: rows = ground truth, columns = prediction, each row normalised to its
  ground-truth pixels (so the diagonal is the class accuracy and a row reads "where this
  class's pixels went"); darker = larger, the rate in per cent written in each cell of 1% or
  more. Up to MAX_SHOWN classes every class is shown. With more (ADE20K's 150, COCO-Stuff's
  182) the MAX_SHOWN classes with the largest off-diagonal rate (1 - accuracy; ties: more
  ground-truth pixels first) are shown in class order, rows and columns, plus a last column
  "other" holding the rest of each row (the rate into classes not shown), so rows still sum
  to 100%. Rows of classes without ground-truth pixels are grey and their name says
  "(no GT)". With the CRF, the matrix is the CRF's. Cells are CELL_PX square (LARGE_CELL_PX
  when at most LARGE_CELL_MAX classes are shown).
- ``iou.png``: one horizontal bar per class (IoU 0..1), network and CRF side by side in the
  CRF script; "n/a" where a class is absent from ground truth and prediction. Every class.
- ``per_class.csv``: index, name, ground-truth pixels, then IoU, accuracy and predicted pixels
  (per stage, ``_before_crf`` / ``_after_crf`` with the CRF); empty where undefined.
- ``worst.png`` (with ``--per-image``): the ``--worst N`` images of lowest mIoU, image |
  ground truth | prediction (draw_worst, per_image); redrawn here when the JSON records the
  saved predictions (``--save-dir``), else a line says why not.
- ``confusion.json`` / ``iou.json``: where the cells and bars are in the PNG (pixels from the
  top-left corner), so that a program can read the pictures back.

Long class names are shortened (short_name: the first ';'-separated alternative, as in
ADE20K's "building;edifice" -> "building", then at most MAX_NAME_CHARS characters) and
prefixed with the class index. The layout is fixed in pixels: a matrix cell is cell_px(n)
square and an IoU row row_px(n) high, after fixed margins, so a picture's size follows its class
count.
"""
import argparse
import csv
import io
import json
import os
import sys

import numpy as np

from deeplab_resnet.common.errors import InputError, exit_on_input_error

MAX_SHOWN = 30          # classes drawn in the confusion matrix; more: the most confused
MAX_NAME_CHARS = 16     # tick labels: a longer name is cut, ending in '...'
DPI = 100
# confusion.png layout, pixels.
CELL_PX = 20            # a matrix cell; LARGE_CELL_PX up to LARGE_CELL_MAX classes shown
LARGE_CELL_PX, LARGE_CELL_MAX = 40, 10
MATRIX_LEFT_PX, MATRIX_TOP_PX, MATRIX_RIGHT_PX, MATRIX_BOTTOM_PX = 150, 60, 90, 130
CONFUSION_CMAP = 'Blues'
NO_TRUTH_RGB = (190, 190, 190)   # rows of classes without ground-truth pixels
MIN_RATE_WRITTEN = 0.01          # rates below 1% are not written in their cell
# iou.png layout, pixels.
ROW_PX = 16             # a class's row of bars; LARGE_ROW_PX up to LARGE_CELL_MAX classes
LARGE_ROW_PX = 28
BAR_PX = 300            # the length of an IoU of 1.0
IOU_LEFT_PX, IOU_TOP_PX, IOU_RIGHT_PX, IOU_BOTTOM_PX = 150, 60, 110, 40
SERIES_RGB = ((31, 119, 180), (255, 127, 14))   # network, CRF (matplotlib's tab:blue/orange)

FILES = ('confusion.png', 'iou.png', 'per_class.csv')


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def short_name(name, width=MAX_NAME_CHARS):
    """'building;edifice' -> 'building'; names over `width` characters are cut to end in
    '...' (one character)."""
    name = str(name).split(';')[0].strip() or str(name)
    return name if len(name) <= width else name[:width - 1] + '\u2026'


def _label(index, name):
    return '%d %s' % (index, short_name(name))


# ----------------------------------------------------------------------------- confusion

def cell_px(num_shown):
    """The side of a matrix cell in pixels when `num_shown` classes are shown."""
    return LARGE_CELL_PX if num_shown <= LARGE_CELL_MAX else CELL_PX


def row_px(num_classes):
    """The height of a class's row in iou.png, in pixels."""
    return LARGE_ROW_PX if num_classes <= LARGE_CELL_MAX else ROW_PX


def row_rates(matrix):
    """Rows normalised to their ground truth: [C, C] float64; rows without pixels stay 0.
    Returns (rates, has_truth [C] bool)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    truth = matrix.sum(axis=1)
    rates = np.divide(matrix, truth[:, None], out=np.zeros_like(matrix),
                      where=truth[:, None] > 0)
    return rates, truth > 0


def shown_classes(matrix, max_shown=MAX_SHOWN):
    """The classes the confusion picture shows, in class order: all of them up to
    `max_shown`, else the `max_shown` with the largest off-diagonal rate (ties: more
    ground-truth pixels first; classes without ground truth last)."""
    matrix = np.asarray(matrix)
    num_classes = len(matrix)
    if num_classes <= max_shown:
        return list(range(num_classes))
    rates, has_truth = row_rates(matrix)
    off = np.where(has_truth, 1.0 - np.diag(rates), -1.0)
    truth = matrix.sum(axis=1)
    order = sorted(range(num_classes), key=lambda c: (-off[c], -truth[c], c))
    return sorted(order[:max_shown])


def confusion_layout(matrix, class_names, max_shown=MAX_SHOWN):
    """What confusion.png shows and where (see the module docstring): a dict with
    'rows' (class indices), 'columns' (class indices, then 'other' when classes are left
    out), 'rates' [rows, columns] (row-normalised), 'no_ground_truth' (class indices),
    'row_labels', 'column_labels', 'cell_px', 'origin_px' ([x, y] of the first cell's
    top-left corner), 'image_size' ([width, height]), 'num_classes', 'colormap'."""
    matrix = np.asarray(matrix, dtype=np.int64)
    num_classes = len(matrix)
    shown = shown_classes(matrix, max_shown)
    rates, has_truth = row_rates(matrix)
    sub = rates[np.ix_(shown, shown)]
    columns = list(shown)
    if len(shown) < num_classes:
        other = rates[shown].sum(axis=1) - sub.sum(axis=1)
        sub = np.concatenate([sub, np.clip(other, 0, 1)[:, None]], axis=1)
        columns.append('other')
    labels = [_label(c, class_names[c]) for c in shown]
    row_labels = [l + ('' if has_truth[c] else ' (no GT)') for l, c in zip(labels, shown)]
    size = cell_px(len(shown))
    width = MATRIX_LEFT_PX + size * len(columns) + MATRIX_RIGHT_PX
    height = MATRIX_TOP_PX + size * len(shown) + MATRIX_BOTTOM_PX
    return {'rows': shown, 'columns': columns, 'rates': sub.tolist(),
            'no_ground_truth': [c for c in shown if not has_truth[c]],
            'row_labels': row_labels, 'column_labels': labels + (['other'] if
                                                                 len(columns) > len(shown)
                                                                 else []),
            'cell_px': size, 'origin_px': [MATRIX_LEFT_PX, MATRIX_TOP_PX],
            'image_size': [width, height], 'num_classes': num_classes,
            'colormap': CONFUSION_CMAP}


def _axes_at(fig, width, height, left, top, w, h):
    """Axes covering exactly the pixel box (left, top, w, h) of a width x height figure."""
    return fig.add_axes([left / width, 1 - (top + h) / height, w / width, h / height])


def draw_confusion(layout, title='confusion matrix'):
    """confusion.png's figure from confusion_layout. Returns PNG bytes."""
    plt = _pyplot()
    from matplotlib import colormaps
    width, height = layout['image_size']
    rates = np.asarray(layout['rates'], dtype=np.float64)
    n_rows, n_cols = rates.shape
    size = layout['cell_px']
    cmap = colormaps[CONFUSION_CMAP]
    rgb = cmap(rates)[..., :3]
    for r, c in enumerate(layout['rows']):
        if c in layout['no_ground_truth']:
            rgb[r] = np.array(NO_TRUTH_RGB) / 255.0
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = _axes_at(fig, width, height, MATRIX_LEFT_PX, MATRIX_TOP_PX, n_cols * size,
                  n_rows * size)
    ax.imshow(rgb, interpolation='nearest', aspect='auto', extent=(-0.5, n_cols - 0.5,
                                                                   n_rows - 0.5, -0.5))
    for r in range(n_rows):
        for c in range(n_cols):
            value = rates[r, c]
            if value >= MIN_RATE_WRITTEN and layout['rows'][r] not in layout['no_ground_truth']:
                ax.text(c, r, '%d' % round(100 * value), ha='center', va='center',
                        fontsize=6 if size == CELL_PX else 8,
                        color='white' if value > 0.5 else 'black')
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels(layout['column_labels'], rotation=90, fontsize=7)
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(layout['row_labels'], fontsize=7)
    ax.tick_params(length=2, pad=1)
    ax.set_xlabel('prediction', fontsize=8)
    ax.set_ylabel('ground truth', fontsize=8)
    shown = ('%d of %d classes: the most confused, + other' % (n_rows, layout['num_classes'])
             if n_rows < layout['num_classes'] else '%d classes' % n_rows)
    fig.text(0.5, 1 - 12 / height, title, ha='center', va='top', fontsize=9)
    fig.text(0.5, 1 - 30 / height, 'rows normalised to the ground truth (%%), %s' % shown,
             ha='center', va='top', fontsize=7)
    bar = _axes_at(fig, width, height, MATRIX_LEFT_PX + n_cols * size + 15, MATRIX_TOP_PX,
                   10, n_rows * size)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=bar)
    bar.tick_params(labelsize=7)
    return _png(fig, plt)


def _png(fig, plt):
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def confusion_png(matrix, class_names, title='confusion matrix', max_shown=MAX_SHOWN):
    """(PNG bytes, layout) of a confusion matrix [C, C] (rows = ground truth)."""
    layout = confusion_layout(matrix, class_names, max_shown)
    return draw_confusion(layout, title), layout


# ----------------------------------------------------------------------------- IoU bars

def iou_layout(series, class_names):
    """Where iou.png draws its bars: 'origin_px' ([x of IoU 0, y of the first row's top]),
    'row_px', 'bar_px' (length of IoU 1), 'series' ([{'name', 'rgb', 'offset_px' (bar top
    within its row), 'height_px', 'iou' (per class, None = n/a)}]), 'labels', 'image_size'.

    series: [(name, [C] IoU or None)], one or two (network, CRF)."""
    num_classes = len(class_names)
    row = row_px(num_classes)
    bar_h = (row - 4) // len(series)
    drawn = [{'name': name, 'rgb': list(SERIES_RGB[i]), 'offset_px': 2 + i * bar_h,
              'height_px': bar_h, 'iou': [None if v is None else float(v) for v in ious]}
             for i, (name, ious) in enumerate(series)]
    return {'origin_px': [IOU_LEFT_PX, IOU_TOP_PX], 'row_px': row, 'bar_px': BAR_PX,
            'series': drawn, 'labels': [_label(c, n) for c, n in enumerate(class_names)],
            'image_size': [IOU_LEFT_PX + BAR_PX + IOU_RIGHT_PX,
                           IOU_TOP_PX + row * num_classes + IOU_BOTTOM_PX]}


def draw_iou(layout, title):
    """iou.png's figure from iou_layout. Returns PNG bytes."""
    plt = _pyplot()
    width, height = layout['image_size']
    n, row = len(layout['labels']), layout['row_px']
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = _axes_at(fig, width, height, IOU_LEFT_PX, IOU_TOP_PX, BAR_PX, n * row)
    ax.set_xlim(0, 1)
    ax.set_ylim(n * row, 0)   # data y = pixels below the axes' top
    for i, s in enumerate(layout['series']):
        colour = np.array(s['rgb']) / 255.0
        for c, v in enumerate(s['iou']):
            top = c * row + s['offset_px']
            if v is None:
                ax.text(0.01, top + s['height_px'] / 2, 'n/a', fontsize=6, va='center',
                        color='grey')
                continue
            ax.add_patch(plt.Rectangle((0, top), v, s['height_px'], color=colour, lw=0,
                                       antialiased=False))
            ax.text(1.01 + 0.12 * i, top + s['height_px'] / 2, '%.2f' % v, fontsize=6, va='center',
                    color=colour, clip_on=False)
    ax.set_yticks([c * row + row / 2 for c in range(n)])
    ax.set_yticklabels(layout['labels'], fontsize=7)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.tick_params(labelsize=7, length=2, pad=1)
    ax.xaxis.grid(True, color='#dddddd', lw=0.5)
    ax.set_axisbelow(True)
    fig.text(0.5, 1 - 12 / height, title, ha='center', va='top', fontsize=9)
    if len(layout['series']) > 1:
        handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(s['rgb']) / 255.0)
                   for s in layout['series']]
        fig.legend(handles, [s['name'] for s in layout['series']], loc='upper center',
                   bbox_to_anchor=(0.5, 1 - 26 / height), ncol=2, fontsize=7, frameon=False)
    return _png(fig, plt)


# ----------------------------------------------------------------------------- files

def _stages(results):
    """[(name, metrics)] of a results dict: the network's, then the CRF's when present."""
    stages = [('network', results['metrics'])]
    if results.get('crf'):
        stages.append(('CRF', results['crf']['metrics']))
    return stages


def per_class_rows(results):
    """The per-class table: (header, rows) as written to per_class.csv."""
    stages = _stages(results)
    suffixes = [''] if len(stages) == 1 else ['_before_crf', '_after_crf']
    header = ['index', 'name', 'gt_pixels']
    for key in ('iou', 'accuracy', 'pred_pixels'):
        header += [key + s for s in suffixes]
    rows = []
    first = stages[0][1]['per_class']
    for c, pc in enumerate(first):
        row = [c, pc['name'], pc['gt_pixels']]
        for key in ('iou', 'accuracy', 'pred_pixels'):
            row += ['' if m['per_class'][c][key] is None else m['per_class'][c][key]
                    for _, m in stages]
        rows.append(row)
    return header, rows


def _mean_text(value):
    return 'n/a' if value is None else '%.4f' % value


def write_plots(plot_dir, results, source=None):
    """confusion.png, iou.png, per_class.csv and their geometry (confusion.json, iou.json)
    in plot_dir from an evaluation results dict (evaluation.evaluate / --output-json).
    Returns the paths of the three files."""
    try:
        stages = _stages(results)
        names = [pc['name'] for pc in stages[0][1]['per_class']]
        final_name, final = stages[-1]
        matrix = final['confusion_matrix']
    except (KeyError, TypeError, IndexError):
        raise InputError('%s: not an evaluation result (no metrics with per_class and '
                         'confusion_matrix)' % (source or 'results'))
    if os.path.exists(plot_dir) and not os.path.isdir(plot_dir):
        raise InputError('%s: --plot-dir is a file, not a directory' % plot_dir)
    os.makedirs(plot_dir, exist_ok=True)
    title = 'confusion matrix%s, mIoU %s' % (' after the CRF' if len(stages) > 1 else '',
                                            _mean_text(final['mean_iou']))
    png, layout = confusion_png(matrix, names, title)
    _write(os.path.join(plot_dir, 'confusion.png'), png)
    _write_json(os.path.join(plot_dir, 'confusion.json'), layout)
    labels = ['network', 'after CRF'] if len(stages) > 1 else ['IoU']
    ilayout = iou_layout([(label, [pc['iou'] for pc in m['per_class']])
                          for label, (_, m) in zip(labels, stages)], names)
    ititle = 'IoU per class: ' + ', '.join('%s mIoU %s' % (label if len(stages) > 1 else '',
                                                          _mean_text(m['mean_iou']))
                                           for label, (_, m) in zip(labels, stages)).strip()
    _write(os.path.join(plot_dir, 'iou.png'), draw_iou(ilayout, ititle))
    _write_json(os.path.join(plot_dir, 'iou.json'), ilayout)
    header, rows = per_class_rows(results)
    csv_path = os.path.join(plot_dir, 'per_class.csv')
    with open(csv_path + '.tmp', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(csv_path + '.tmp', csv_path)
    return [os.path.join(plot_dir, name) for name in FILES]


# ----------------------------------------------------------------------------- worst images

WORST_FILE = 'worst.png'
WORST_THUMB_PX = 200     # each picture scaled to fit this box (per_image.THUMB_SIDE)
WORST_LABEL_PX = 24      # the caption above each row
WORST_LEFT_PX, WORST_TOP_PX, WORST_GAP_PX, WORST_LEGEND_PX = 10, 50, 6, 20


def draw_worst(rows, class_names, palette=None, ignore_label=255, title='worst images'):
    """worst.png: one row per image, image | ground truth | prediction, masks in the run's
    colours (`palette`, None: VOC's; the ignore label in VOC's void colour), each row captioned
    with its rank, name, mIoU and pixel accuracy, and a legend naming the classes the rows
    show.

    rows: [{'name', 'mean_iou', 'pixel_accuracy', 'image' [h, w, 3] uint8, 'truth' [h, w]
      int, 'pred' [h, w] int}], worst first (per_image.WorstImages.rows).
    Returns: PNG bytes.
    """
    from deeplab_resnet.data.colormap import colourise
    plt = _pyplot()
    n_classes = len(class_names)
    box = WORST_THUMB_PX
    # Each picture scaled to fit box x box (aspect kept): a row is as high as its pictures.
    fitted = []
    for r in rows:
        h, w = r['image'].shape[:2]
        fitted.append((max(1, round(box * h / max(h, w))), max(1, round(box * w / max(h, w)))))
    shown = sorted({int(v) for r in rows for m in (r['truth'], r['pred'])
                    for v in np.unique(m) if 0 <= v < n_classes and v != ignore_label})
    legend_lines = max(1, -(-len(shown) // 4))
    width = WORST_LEFT_PX * 2 + 3 * box + 2 * WORST_GAP_PX
    body = sum(h + WORST_LABEL_PX for h, _ in fitted)
    height = (WORST_TOP_PX + body + WORST_GAP_PX + legend_lines * WORST_LEGEND_PX + 10)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.text(0.5, 1 - 12 / height, title, ha='center', va='top', fontsize=9)
    for col, name in enumerate(('image', 'ground truth', 'prediction')):
        fig.text((WORST_LEFT_PX + col * (box + WORST_GAP_PX) + box / 2) / width,
                 1 - 32 / height, name, ha='center', va='top', fontsize=8)
    top = WORST_TOP_PX
    for i, (row, (h, w)) in enumerate(zip(rows, fitted)):
        fig.text(WORST_LEFT_PX / width, 1 - (top + 6) / height,
                 '%d. %s  mIoU %s  pixel accuracy %s'
                 % (i + 1, row['name'], _mean_text(row['mean_iou']),
                    _mean_text(row['pixel_accuracy'])), ha='left', va='top', fontsize=7)
        truth = np.where(np.asarray(row['truth']) == ignore_label, 255, row['truth'])
        pictures = (row['image'], colourise(truth, n_classes, palette),
                    colourise(row['pred'], n_classes, palette))
        for col, picture in enumerate(pictures):
            ax = _axes_at(fig, width, height, WORST_LEFT_PX + col * (box + WORST_GAP_PX),
                          top + WORST_LABEL_PX - 8, w, h)
            ax.imshow(picture, interpolation='nearest', aspect='auto')
            ax.set_axis_off()
        top += h + WORST_LABEL_PX
    from deeplab_resnet.data.colormap import label_colours
    colours = label_colours(n_classes, palette) / 255.0
    legend_top = WORST_TOP_PX + body + WORST_GAP_PX
    for k, c in enumerate(shown):
        x = WORST_LEFT_PX + (k % 4) * (width - 2 * WORST_LEFT_PX) / 4
        y = legend_top + (k // 4) * WORST_LEGEND_PX
        ax = _axes_at(fig, width, height, x, y, 12, 12)
        ax.imshow(colours[c][None, None], interpolation='nearest')
        ax.set_axis_off()
        fig.text((x + 16) / width, 1 - (y + 6) / height, _label(c, class_names[c]),
                 ha='left', va='center', fontsize=7)
    return _png(fig, plt)


def write_worst(plot_dir, rows, results):
    """worst.png in plot_dir from WorstImages rows and the results' settings (class names,
    palette, ignore label). Returns its path."""
    settings = results['settings']
    stage = ' after the CRF' if results.get('crf') else ''
    png = draw_worst(rows, settings['class_names'], settings.get('palette'),
                     settings.get('ignore_label', 255),
                     'the %d worst images by their mIoU%s' % (len(rows), stage))
    os.makedirs(plot_dir, exist_ok=True)
    path = os.path.join(plot_dir, WORST_FILE)
    _write(path, png)
    return path


def redraw_worst(plot_dir, results):
    """worst.png again from an --output-json file with --per-image figures: the worst entries'
    image, label and saved prediction (--save-dir) read back and brought to thumbnails.
    Returns (path, None) or (None, the reason it cannot be drawn)."""
    from deeplab_resnet.data import imageio
    from deeplab_resnet.evaluation import per_image
    worst = results.get('worst')
    if not results.get('per_image'):
        return None, 'the results have no per-image figures (evaluate with --per-image)'
    if not worst or not worst.get('predictions_saved'):
        return None, ('the evaluation did not save its predictions (--save-dir), so the worst '
                      'images\' predictions cannot be read back')
    rows = []
    for e in per_image.worst_entries(results['per_image'], worst['n']):
        paths = (e['image'], e['label'], e.get('prediction'))
        missing = [p for p in paths if not p or not os.path.isfile(p)]
        if missing:
            return None, '%s is gone since the evaluation' % missing[0]
        image, truth, pred = (imageio.read_image(paths[0]), imageio.read_label(paths[1]),
                              imageio.read_label(paths[2]))
        if truth.shape != image.shape[:2] or pred.shape != truth.shape:
            return None, '%s: the image, its label and prediction differ in size' % paths[0]
        small, small_truth, small_pred = per_image.thumbnails(image, truth, pred)
        rows.append({'index': e['index'], 'name': os.path.basename(e['image']),
                     'mean_iou': e['mean_iou'], 'pixel_accuracy': e['pixel_accuracy'],
                     'image': small, 'truth': small_truth, 'pred': small_pred})
    return write_worst(plot_dir, rows, results), None


def _write(path, data):
    with open(path + '.tmp', 'wb') as f:
        f.write(data)
    os.replace(path + '.tmp', path)


def _write_json(path, value):
    _write(path, (json.dumps(value, indent=1) + '\n').encode())


def read_results(path):
    """An --output-json file. Raises InputError naming it when missing or not JSON."""
    if not os.path.isfile(path):
        raise InputError('%s: results file not found' % path)
    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError('%s: not a JSON file (%s)' % (path, e))


@exit_on_input_error
def main(argv=None):
    p = argparse.ArgumentParser(
        description='Draw confusion.png, iou.png and per_class.csv from an evaluation\'s '
                    '--output-json without evaluating again (see docs/evaluation.md).')
    p.add_argument('results', help='the JSON written by evaluate_msc.py / '
                                   'evaluate_msc_with_CRF.py --output-json')
    p.add_argument('--plot-dir', required=True, metavar='DIR', help='where to write them')
    args = p.parse_args(argv)
    results = read_results(args.results)
    paths = write_plots(args.plot_dir, results, args.results)
    if results.get('per_image') is not None:
        path, why_not = redraw_worst(args.plot_dir, results)
        if path:
            paths.append(path)
        else:
            print('%s not drawn: %s' % (WORST_FILE, why_not))
    print('wrote %s' % ', '.join(paths))
    return 0


if __name__ == '__main__':
    sys.exit(main())
