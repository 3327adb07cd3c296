"""Regenerates the README's pictures: `python -m dataset.readme_images --demo-dir demo_run`.

- images/colour_scheme.png: the VOC colour legend (drawn with matplotlib from colormap.py);
- images/mask.png: image | colour mask of the first four demo inference outputs;
- images/summary.png: the last TensorBoard image summary of the demo run;
- images/confusion.png, images/iou.png: the evaluation pictures of the demo's CRF evaluation
  (deeplab_resnet.evaluation.plots, drawn again from demo_run/eval_crf.json);
- images/validation.png: the last validation pass of the demo in TensorBoard, its fixed images
  as image | ground truth | prediction rows (validation/images/<i>).
"""
import argparse
import glob
import io
import os
import sys

import numpy as np
from PIL import Image

from deeplab_resnet.common.constants import VOC_CLASS_NAMES
from deeplab_resnet.data.colormap import label_colours


def colour_scheme(path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colours = label_colours(len(VOC_CLASS_NAMES)) / 255.0
    fig, ax = plt.subplots(figsize=(4.2, 6.3), dpi=100)
    for i, (name, colour) in enumerate(zip(VOC_CLASS_NAMES, colours)):
        ax.add_patch(plt.Rectangle((0, -i - 0.9), 1, 0.8, color=colour, ec='grey', lw=0.5))
        ax.text(1.3, -i - 0.5, '%2d  %s' % (i, name), va='center', family='monospace')
    ax.set_xlim(0, 5)
    ax.set_ylim(-len(VOC_CLASS_NAMES), 0)
    ax.axis('off')
    ax.set_title('PASCAL VOC colour scheme')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pad(rgb, height, width):
    """[h, w, 3] uint8 -> [height, width, 3], the extra pixels white."""
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    out[:rgb.shape[0], :rgb.shape[1]] = rgb
    return out


def mask_figure(demo_dir, path, count=4, columns=2, gap=4, zoom=2):
    """Image | colour mask of the first `count` demo inference outputs, `columns` pairs a row."""
    masks = sorted(glob.glob(os.path.join(demo_dir, 'inference', '*_mask.png')))[:count]
    if not masks:
        return False
    pairs = []
    for mask_path in masks:
        stem = os.path.basename(mask_path)[:-len('_mask.png')]
        image = Image.open(os.path.join(demo_dir, 'data', 'JPEGImages', stem + '.jpg'))
        mask = Image.open(mask_path).convert('RGB')         # the image's size
        pairs.append(np.concatenate([np.asarray(image.convert('RGB')), np.asarray(mask)], axis=1))
    height = max(x.shape[0] for x in pairs) + gap
    width = max(x.shape[1] for x in pairs) + gap
    cells = [_pad(x, height, width) for x in pairs]
    cells += [_pad(np.zeros((0, 0, 3), np.uint8), height, width)] * (-len(cells) % columns)
    grid = np.concatenate([np.concatenate(cells[i:i + columns], axis=1)
                           for i in range(0, len(cells), columns)], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * zoom, grid.shape[0] * zoom),
                                 Image.NEAREST).save(path)
    return True


def _events(demo_dir):
    """The Event protos of the demo run's event files, in file and record order (read with
    tf.data: summary_iterator prints a deprecation warning)."""
    import tensorflow as tf
    for name in sorted(glob.glob(os.path.join(demo_dir, 'snapshots', 'events.*'))):
        for record in tf.data.TFRecordDataset(name):
            yield tf.compat.v1.Event.FromString(record.numpy())


def summary_figure(demo_dir, path):
    last = None
    for event in _events(demo_dir):
        for value in event.summary.value:
            if value.HasField('image') and value.tag.endswith('/0'):
                last = value.image.encoded_image_string
    if last is None:
        return False
    image = Image.open(io.BytesIO(last))
    image.resize((image.width * 3, image.height * 3), Image.NEAREST).save(path)
    return True


def evaluation_figures(demo_dir, out_dir):
    """confusion.png and iou.png (after / before and after the CRF) from eval_crf.json."""
    import shutil
    import tempfile
    from deeplab_resnet.evaluation import plots
    results = os.path.join(demo_dir, 'eval_crf.json')
    if not os.path.isfile(results):
        return []
    with tempfile.TemporaryDirectory() as tmp:
        plots.write_plots(tmp, plots.read_results(results), results)
        for name in ('confusion.png', 'iou.png'):
            shutil.copy(os.path.join(tmp, name), os.path.join(out_dir, name))
    return ['confusion.png', 'iou.png']


def validation_figure(demo_dir, path, gap=4, zoom=2):
    """The last validation pass's fixed-image rows (validation/images/<i>), one under the
    other (white gaps), enlarged `zoom` times."""
    rows, last_step = {}, None
    for event in _events(demo_dir):
        for value in event.summary.value:
            if value.HasField('image') and value.tag.startswith('validation/images/'):
                if event.step != last_step:
                    rows, last_step = {}, event.step
                rows[int(value.tag.rsplit('/', 1)[1])] = np.asarray(
                    Image.open(io.BytesIO(value.image.encoded_image_string)).convert('RGB'))
    if not rows:
        return False
    width = max(r.shape[1] for r in rows.values())
    stacked = np.concatenate([_pad(rows[i], rows[i].shape[0] + gap, width)
                              for i in sorted(rows)], axis=0)
    Image.fromarray(stacked).resize((stacked.shape[1] * zoom, stacked.shape[0] * zoom),
                                    Image.NEAREST).save(path)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--demo-dir', default='demo_run', help='output folder of `make demo`')
    p.add_argument('--out', default='images', help='where to write the pictures')
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    colour_scheme(os.path.join(args.out, 'colour_scheme.png'))
    wrote = ['colour_scheme.png']
    if mask_figure(args.demo_dir, os.path.join(args.out, 'mask.png')):
        wrote.append('mask.png')
    if summary_figure(args.demo_dir, os.path.join(args.out, 'summary.png')):
        wrote.append('summary.png')
    wrote += evaluation_figures(args.demo_dir, args.out)
    if validation_figure(args.demo_dir, os.path.join(args.out, 'validation.png')):
        wrote.append('validation.png')
    print('wrote %s in %s' % (', '.join(wrote), args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
