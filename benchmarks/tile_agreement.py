#!/usr/bin/env python
"""How often --tile gives the whole image's labels: the share of pixels on which a tiled and a
whole-image Predictor agree over a list's images, and each one's mean IoU.

    python benchmarks/tile_agreement.py --data-list DATA/val.txt --data-dir DATA \\
        --restore-from SNAPSHOTS --num-classes 5 --tile 65,65 [--tile-stride 40,40 ...]
        [--scales 1.0,0.75,0.5] [--flip]

Every --tile-stride given is one more tiled run (default: the default stride). On the demo's
trained model (`make demo`; its images are 60-110 pixels, so windows of 65) this is the
figure in docs/evaluation.md ("Large images").
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


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
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    examples = datalist.load_examples(args.data_list, args.data_dir, need_labels=True)
    images = [imageio.read_image(ex.image) for ex in examples]
    truths = [imageio.read_label(ex.label) for ex in examples]

    def run(**tiling):
        cm = metrics.ConfusionMatrix(args.num_classes, 255)
        out = []
        with Predictor(args.restore_from, args.num_classes, tuple(args.scales), args.flip,
                       threads=args.threads, **tiling) as predictor:
            for rgb, truth in zip(images, truths):
                labels = predictor.predict(rgb)[0]
                cm.update(truth, labels)
                out.append(labels)
        return out, cm.metrics(None)['mean_iou']

    whole, whole_iou = run()
    pixels = sum(label.size for label in whole)
    print('%d images, %d pixels, scales %s%s; whole: mIoU %.4f'
          % (len(images), pixels, ','.join('%g' % s for s in args.scales),
             ', flip' if args.flip else '', whole_iou))
    for stride in args.tile_stride or [None]:
        tiled, tiled_iou = run(tile=args.tile, tile_stride=stride)
        same = sum(int(np.sum(a == b)) for a, b in zip(whole, tiled))
        windows = sum(num_windows(rgb.shape[0], rgb.shape[1], args.tile, stride)
                      for rgb in images)
        print('--tile %d,%d --tile-stride %d,%d: %d windows; labels equal to whole on %.2f%% '
              'of the pixels; mIoU %.4f' % (args.tile + strides_of(args.tile, stride)
                                             + (windows, 100.0 * same / pixels, tiled_iou)))


if __name__ == '__main__':
    main()
