#!/usr/bin/env python
"""Per-file cost of the dataset tools' conversion path (dataset/builder.py), on generated
labels at each dataset's typical size: what a full conversion or scan costs, before running it.

    python benchmarks/dataset_convert.py [--files 40] [--repeats 3]

Cases (NumPy / PIL only, one process, one core):
  cocostuff164k scan   640x480 PNG as stored: decode, count values against the definition,
                       read the image's header for its size (nothing written)
  ade20k convert       683x512: decode, look-up table, write the mode-L PNG
  cityscapes convert   2048x1024: the same
Labels are piecewise constant (16x16-pixel blocks of random classes, upsampled), so they
compress and decode roughly like real annotation maps. The figures are medians over --repeats
of the CPU time (process_time) and wall time per file; the projection multiplies the CPU time
by the dataset's file count.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, 'benchmarks')):
    if path not in sys.path:
        sys.path.insert(0, path)

from dataset import ade20k, builder, cityscapes, cocostuff  # noqa: E402
from speed import cpu_model  # noqa: E402

# name, spec, (H, W), stored values, files in the full dataset
CASES = (
    ('cocostuff164k scan', cocostuff.SPEC_164K, (480, 640), list(range(182)) + [255], 123287),
    ('ade20k convert', ade20k.SPEC, (512, 683), list(range(151)), 22210),
    ('cityscapes convert', cityscapes.SPEC, (1024, 2048), list(range(34)), 3475),
)
BLOCK = 16


def _label_map(shape, values, seed):
    rng = np.random.default_rng(seed)
    small = rng.choice(np.asarray(values, dtype=np.uint8),
                       size=(-(-shape[0] // BLOCK), -(-shape[1] // BLOCK)))
    return np.kron(small, np.ones((BLOCK, BLOCK), np.uint8))[:shape[0], :shape[1]]


def _make(folder, case, files):
    """files (image, stored label) under folder; returns the Pairs."""
    _, spec, shape, values, _ = case
    pairs = []
    for k in range(files):
        image = 'img/%d.jpg' % k
        source = 'src/%d.png' % k
        os.makedirs(os.path.join(folder, 'img'), exist_ok=True)
        os.makedirs(os.path.join(folder, 'src'), exist_ok=True)
        Image.new('RGB', shape[::-1], (k % 255, 90, 30)).save(os.path.join(folder, image))
        Image.fromarray(_label_map(shape, values, k), mode='L').save(
            os.path.join(folder, source))
        pairs.append(builder.Pair(image, source, source if not spec.rewrite
                                  else 'out/%d.png' % k))
    return pairs


def time_case(case, files, repeats):
    """(CPU seconds, wall seconds) per file, medians over `repeats` passes (written labels
    removed between passes)."""
    spec = case[1]
    folder = tempfile.mkdtemp(prefix='dataset_convert_')
    try:
        pairs = _make(folder, case, files)
        cpu, wall = [], []
        for _ in range(repeats):
            shutil.rmtree(os.path.join(folder, 'out'), ignore_errors=True)
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            for pair in pairs:
                builder.convert_pair(spec, folder, folder, pair)
            cpu.append((time.process_time() - start_cpu) / files)
            wall.append((time.perf_counter() - start_wall) / files)
        return statistics.median(cpu), statistics.median(wall)
    finally:
        shutil.rmtree(folder)


def _hms(seconds):
    return '%d:%02d:%02d' % (seconds // 3600, seconds % 3600 // 60, seconds % 60)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--files', type=int, default=40, help='files per case')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args(argv)
    print('CPU: %s; one process, %d files per case, median of %d'
          % (cpu_model(), args.files, args.repeats))
    print('%-20s %10s %12s %13s %11s %12s' % ('case', 'size', 'CPU ms/file', 'wall ms/file',
                                                'full files', 'full at CPU'))
    for case in CASES:
        cpu, wall = time_case(case, args.files, args.repeats)
        print('%-20s %10s %12.2f %13.2f %11d %12s'
              % (case[0], '%dx%d' % case[2][::-1], 1000 * cpu, 1000 * wall, case[4],
                 _hms(cpu * case[4])))
    print('(wall above CPU: other processes on the machine or disk; "full at CPU" is one '
          'core\'s time for the whole dataset)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
