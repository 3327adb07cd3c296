#!/usr/bin/env python
"""Peak memory of segmenting one image, measured against deeplab_resnet.predict.memory's estimate.

    python benchmarks/inference_memory.py [--sizes 512,1024,1448] [--scales 1.0,0.75,0.5]
        [--flip] [--num-classes 21] [--threads 2]

One child process per run: a Predictor (random weights, the real ResNet-101 + ASPP, batch
norm folded) segments a tiny image (the baseline: import, graph, weights, oneDNN's first
primitives), then one image of each size, largest last. The process's peak resident memory
(VmHWM) is read after each; `measured` is the peak's growth over the baseline, `estimate` is
memory.image_bytes for that size (the estimate's fixed part is the baseline, not shown). CPU
only; nothing is downloaded.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def peak_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmHWM')


def child(spec):
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, 'tests'))
    from helpers import make_checkpoint
    from deeplab_resnet.predict.predictor import Predictor
    with tempfile.TemporaryDirectory() as tmp:
        prefix = make_checkpoint(tmp, num_classes=spec['num_classes'])
        rows = []
        with Predictor(prefix, spec['num_classes'], tuple(spec['scales']), spec['flip'],
                       threads=spec['threads']) as predictor:
            predictor.predict(np.zeros((33, 33, 3), np.uint8))
            base = peak_bytes()
            rng = np.random.RandomState(0)
            for side in spec['sizes']:
                predictor.predict(rng.randint(0, 256, (side, side, 3)).astype(np.uint8))
                rows.append((side, peak_bytes() - base))
    print(json.dumps({'base': base, 'rows': rows}))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', default='512,1024,1448')
    p.add_argument('--scales', default='1.0,0.75,0.5')
    p.add_argument('--flip', action='store_true')
    p.add_argument('--num-classes', type=int, default=21)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    from deeplab_resnet.predict import memory
    spec = {'sizes': [int(s) for s in args.sizes.split(',')],
            'scales': [float(s) for s in args.scales.split(',')], 'flip': args.flip,
            'num_classes': args.num_classes, 'threads': args.threads}
    out = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)],
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    print('scales %s, flip %s, %d classes; baseline (import, graph, weights) %.2f GB'
          % (args.scales, 'on' if args.flip else 'off', args.num_classes,
             result['base'] / 2 ** 30))
    print('| size | measured | estimate | estimate / measured |')
    print('|---|---|---|---|')
    for side, grown in result['rows']:
        estimate = memory.image_bytes(side, side, spec['scales'], args.flip, args.num_classes)
        print('| %dx%d | %.2f GB | %.2f GB | %.2f |' % (side, side, grown / 2 ** 30,
                                                      estimate / 2 ** 30, estimate / grown))


if __name__ == '__main__':
    main()
