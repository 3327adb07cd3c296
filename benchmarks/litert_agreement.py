#!/usr/bin/env python
"""The LiteRT model (inference.py --export-tflite) against the SavedModel (--export-savedmodel)
of the same checkpoint: the share of pixels whose labels agree, the probabilities' largest
difference, the .tflite file's size and the time per image of each.

    python benchmarks/litert_agreement.py IMG_PATH [IMG_PATH ...] MODEL_WEIGHTS
        [--data-dir DIR] [--num-classes N] [--scales 1.0] [--flip] [--threads 2]
    python benchmarks/litert_agreement.py IMG_PATH ... --random [--num-classes 21]

IMG_PATH as inference.py's (images, directories, .txt list files relative to --data-dir).
--random: a randomly initialised network (the real ResNet-101 + ASPP, or DEEPLAB_BLOCKS's)
instead of MODEL_WEIGHTS, for the file's size. Both models are written to a temporary
directory and run in this process: the SavedModel by eager TensorFlow 2, the .tflite file by
the LiteRT interpreter (ai-edge-litert). Prints one line per image and a summary (CPU model
and load average included); nothing is downloaded.
"""
import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import speed  # noqa: E402 (benchmarks/speed.py: cpu_model, load_average; no TensorFlow)
from deeplab_resnet.common import cli  # noqa: E402 (after the path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('paths', nargs='+', metavar='IMG_PATH... [MODEL_WEIGHTS]')
    p.add_argument('--random', action='store_true',
                   help='random weights instead of MODEL_WEIGHTS (every path is an image)')
    p.add_argument('--data-dir', default='')
    p.add_argument('--num-classes', type=cli.positive_int, default=21)
    p.add_argument('--scales', type=cli.scales, default=(1.0,))
    p.add_argument('--flip', action='store_true')
    p.add_argument('--threads', type=cli.non_negative_int, default=2)
    args = p.parse_args(argv)
    images = args.paths if args.random else args.paths[:-1]
    if not images:
        p.error('give IMG_PATH(s)')

    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from deeplab_resnet.predict.export import export_savedmodel
    from deeplab_resnet.predict.segment import collect_images, read_image
    from deeplab_resnet.predict.litert import export_tflite

    paths = collect_images(images, args.data_dir)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.random:
            sys.path.insert(0, os.path.join(ROOT, 'tests'))
            from helpers import make_checkpoint
            checkpoint = make_checkpoint(os.path.join(tmp, 'random'), args.num_classes)
        else:
            checkpoint = args.paths[-1]
        t = time.time()
        export_savedmodel(checkpoint, os.path.join(tmp, 'savedmodel'), args.num_classes,
                          args.scales, args.flip)
        t_saved = time.time() - t
        model_path = os.path.join(tmp, 'model.tflite')
        t = time.time()
        export_tflite(checkpoint, model_path, args.num_classes, args.scales, args.flip)
        t_lite = time.time() - t
        size = os.path.getsize(model_path)
        print('exported: SavedModel in %.1f s, LiteRT model in %.1f s (%.1f MB, %d bytes)'
              % (t_saved, t_lite, size / 1e6, size))
        saved = tf.saved_model.load(os.path.join(tmp, 'savedmodel'))
        tf_segment = saved.signatures['serving_default']
        lite_segment = Interpreter(model_path=model_path,
                                   num_threads=args.threads).get_signature_runner()
        equal = total = 0
        worst = 0.0
        seconds = {'savedmodel': [], 'litert': []}
        for path in paths:
            rgb = read_image(path)
            t = time.time()
            want = tf_segment(image=tf.constant(rgb))
            want = {k: v.numpy() for k, v in want.items()}
            seconds['savedmodel'].append(time.time() - t)
            t = time.time()
            got = lite_segment(image=rgb)
            seconds['litert'].append(time.time() - t)
            same = int((got['labels'] == want['labels']).sum())
            diff = float(np.abs(got['probabilities'] - want['probabilities']).max())
            worst = max(worst, diff)
            equal += same
            total += want['labels'].size
            print('%s %dx%d: labels equal on %d of %d pixels; probabilities within %.1e'
                  % (path, rgb.shape[0], rgb.shape[1], same, want['labels'].size, diff))
    load = speed.load_average() or [float('nan')] * 3
    print('%d image(s): LiteRT labels equal to the SavedModel\'s on %d of %d pixels (%.4f%%); '
          'probabilities within %.1e' % (len(paths), equal, total, 100.0 * equal / total, worst))
    print('time per image (median, %d threads): SavedModel %.3f s, LiteRT %.3f s'
          % (args.threads, np.median(seconds['savedmodel']), np.median(seconds['litert'])))
    print('.tflite size %.1f MB; scales %s%s; %s; load average %.2f %.2f %.2f'
          % (size / 1e6, ','.join('%g' % s for s in args.scales), ', flip' if args.flip else '',
             speed.cpu_model(), load[0], load[1], load[2]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
