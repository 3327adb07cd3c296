#!/usr/bin/env python
"""bfloat16 against float32 inference on a labelled list: speed, mIoU and label agreement.

    python benchmarks/precision.py --restore-from SNAPSHOT --data-dir DIR --data-list LIST
        --num-classes C [--scales 1.0,0.75,0.5] [--threads N] [--json OUT]

For each precision the same Predictor (the scripts' graph, `--precision` of evaluate_msc.py
and inference.py) segments every image of the list; the table gives seconds per image (median
over the images after one warm-up image), the mIoU against the list's labels, and the
fraction of pixels whose bfloat16 label equals the float32 label.
"""
import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from deeplab_resnet import cli, datalist, imageio, metrics   # noqa: E402
from deeplab_resnet.constants import IMG_MEAN_BGR   # noqa: E402


def run_precision(precision, examples, images, args):
    from deeplab_resnet.predictor import Predictor
    cm = metrics.ConfusionMatrix(args.num_classes)
    predictions, times = [], []
    with Predictor(args.restore_from, args.num_classes, tuple(args.scales),
                   img_mean=IMG_MEAN_BGR, threads=args.threads,
                   precision=precision) as predictor:
        predictor.predict(images[0])   # warm-up: graph rewrite and oneDNN primitives
        for ex, image in zip(examples, images):
            start = time.time()
            labels, _ = predictor.predict(image)
            times.append(time.time() - start)
            predictions.append(labels)
            cm.update(imageio.read_label(ex.label), labels)
    return predictions, dict(precision=precision, median_s=statistics.median(times),
                             images_per_s=1.0 / statistics.median(times),
                             mean_iou=cm.metrics()['mean_iou'])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_data_arguments(p, 'val.txt')
    p.add_argument('--restore-from', required=True, help='checkpoint prefix or directory')
    p.add_argument('--num-classes', type=cli.positive_int, required=True)
    p.add_argument('--scales', type=cli.scales, default=(1.0,))
    p.add_argument('--threads', type=cli.non_negative_int, default=0)
    p.add_argument('--num-images', type=cli.positive_int, default=None)
    p.add_argument('--json', default=None, help='write the results here')
    args = p.parse_args(argv)
    examples = datalist.load_examples(args.data_list, args.data_dir, need_labels=True)
    examples = examples[:args.num_images] if args.num_images else examples
    images = [imageio.read_image(ex.image) for ex in examples]
    fp32, r32 = run_precision('float32', examples, images, args)
    bf16, r16 = run_precision('bfloat16', examples, images, args)
    same = sum(int((a == b).sum()) for a, b in zip(fp32, bf16))
    total = sum(a.size for a in fp32)
    result = dict(images=len(examples), scales=list(args.scales), threads=args.threads,
                  float32=r32, bfloat16=r16, speedup=r32['median_s'] / r16['median_s'],
                  label_agreement=same / float(total))
    print('%-10s %10s %8s %8s' % ('precision', 's/image', 'img/s', 'mIoU'))
    for r in (r32, r16):
        print('%-10s %10.3f %8.2f %8.4f' % (r['precision'], r['median_s'], r['images_per_s'],
                                            r['mean_iou']))
    print('bfloat16 speed-up %.2fx; same label as float32 on %.3f%% of %d pixels'
          % (result['speedup'], 100.0 * result['label_agreement'], total))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
