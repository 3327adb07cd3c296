#!/usr/bin/env python
"""How often --tile gives the whole image's labels: the share of pixels on which a tiled and a
whole-image Predictor agree over a list's images, each run's mean IoU, and the model's own
yardstick for that share.

    python benchmarks/tile_agreement.py --data-list DATA/val.txt --data-dir DATA \\
        --restore-from SNAPSHOTS --num-classes 5 --tile 65,65 [--tile-stride 40,40 ...]
        [--scales 1.0,0.75,0.5] [--flip] [--mosaic 2]

Every --tile-stride given is one more tiled run (default: the default stride only).

The yardstick: the whole image moved by 8 pixels (one step of the network's output grid,
a band of the mean colour added at the top and left, then cut off the labels) is predicted
again, and the share of pixels whose label stays is printed first. A window changes what
the network sees at least as much as that shift does (its borders cut the context, and the
0.75 and 0.5 scales resample it on another grid), so a tiled run cannot be expected to agree
with the whole image more than the whole image agrees with itself moved by one step.

--mosaic N puts N x N consecutive images of the list side by side (mean colour around the
smaller ones) and measures on those canvases: images several windows wide, as aerial tiles
and Cityscapes frames are for windows of 513. On the demo's trained model (`make demo`; its
images are 60-110 pixels, so windows of 65) this gives the figures in docs/evaluation.md
("Large images").
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SHIFT = 8   # pixels: one step of the stride-8 output grid


def mean_rgb():
    """The mean colour as uint8 RGB (zero after preprocessing, to within rounding)."""
    from deeplab_resnet.common.constants import IMG_MEAN_BGR
    return np.round(IMG_MEAN_BGR[::-1]).astype(np.uint8)


def mosaics(images, n):
    """[H, W, 3] uint8 images -> canvases of n x n consecutive images (the last canvas may
    hold fewer), each image in the top-left of its cell, the rest the mean colour."""
    out = []
    for start in range(0, len(images), n * n):
        group = images[start:start + n * n]
        h = max(image.shape[0] for image in group)
        w = max(image.shape[1] for image in group)
        canvas = np.empty((n * h, n * w, 3), np.uint8)
        canvas[:] = mean_rgb()
        for i, image in enumerate(group):
            y, x = (i // n) * h, (i % n) * w
            canvas[y:y + image.shape[0], x:x + image.shape[1]] = image
        out.append(canvas)
    return out


def shifted(rgb):
    """rgb with SHIFT rows and columns of the mean colour added at the top and left."""
    out = np.empty((rgb.shape[0] + SHIFT, rgb.shape[1] + SHIFT, 3), np.uint8)
    out[:] = mean_rgb()
    out[SHIFT:, SHIFT:] = rgb
    return out


def main():
    from deeplab_resnet.common import cli
    from deeplab_resnet.data import datalist, imageio
    from deeplab_resnet.evaluation import metrics
    from deeplab_resnet.predict.predictor import Predictor
    from deeplab_resnet.common.windows import num_windows, strides_of
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-list', required=True)
    p.add_argument('--data-dir', default='')
    p.add_argument('--restore-from', required=True)
    p.add_argument('--num-classes', type=int, required=True)
    p.add_argument('--scales', type=cli.scales, default=(1.0, 0.75, 0.5))
    p.add_argument('--flip', action='store_true')
    p.add_argument('--tile', type=cli.tile, default=(65, 65))
    p.add_argument('--tile-stride', type=cli.tile_stride, action='append', default=None)
    p.add_argument('--mosaic', type=int, default=1, metavar='N',
                   help='measure on canvases of N x N images (mIoU then not reported)')
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    examples = datalist.load_examples(args.data_list, args.data_dir, need_labels=True)
    images = [imageio.read_image(ex.image) for ex in examples]
    truths = None
    if args.mosaic > 1:
        images = mosaics(images, args.mosaic)
    else:
        truths = [imageio.read_label(ex.label) for ex in examples]

    def run(inputs=None, **tiling):
        """Labels of every image (of `inputs`, default the images) and their mean IoU."""
        out = []
        with Predictor(args.restore_from, args.num_classes, tuple(args.scales), args.flip,
                       threads=args.threads, **tiling) as predictor:
            for rgb in inputs or images:
                out.append(predictor.predict(rgb)[0])
        if truths is None or inputs is not None:
            return out, None
        cm = metrics.ConfusionMatrix(args.num_classes, 255)
        for truth, labels in zip(truths, out):
            cm.update(truth, labels)
        return out, cm.metrics(None)['mean_iou']

    def agreement(labels):
        same = sum(int(np.sum(a == b)) for a, b in zip(whole, labels))
        return 100.0 * same / pixels

    def iou_text(iou):
        return '' if iou is None else '; mIoU %.4f' % iou

    whole, whole_iou = run()
    pixels = sum(label.size for label in whole)
    print('%d images%s, %d pixels, scales %s%s; whole%s'
          % (len(images), ' (mosaics of %dx%d)' % (args.mosaic, args.mosaic)
             if args.mosaic > 1 else '', pixels, ','.join('%g' % s for s in args.scales),
             ', flip' if args.flip else '', iou_text(whole_iou) or ' run'))
    moved, _ = run([shifted(rgb) for rgb in images])
    print('whole, moved by %d pixels (one grid step): labels equal to whole on %.2f%% of the '
          'pixels' % (SHIFT, agreement([labels[SHIFT:, SHIFT:] for labels in moved])))
    for stride in args.tile_stride or [None]:
        tiled, tiled_iou = run(tile=args.tile, tile_stride=stride)
        windows = sum(num_windows(rgb.shape[0], rgb.shape[1], args.tile, stride)
                      for rgb in images)
        print('--tile %d,%d --tile-stride %d,%d%s: %d windows; labels equal to whole on '
              '%.2f%% of the pixels%s'
              % (args.tile + strides_of(args.tile, stride)
                 + ('' if stride else ' (default)', windows, agreement(tiled),
                    iou_text(tiled_iou))))


if __name__ == '__main__':
    main()
