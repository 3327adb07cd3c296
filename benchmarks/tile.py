#!/usr/bin/env python
"""inference.py with --tile against the whole image: peak resident memory and time, each run
a fresh process under /usr/bin/time -v.

    python benchmarks/tile.py CHECKPOINT [--num-classes 21] [--size 2048x1024]
        [--scales 1.0,0.75,0.5] [--tile 513,513] [--tile-stride 336,336] [--no-whole]
        [--threads 2] [--outputs labels,overlay]

One synthetic image (blocks of colour plus noise, seeded, JPEG) of --size is segmented by
inference.py, once whole (unless --no-whole: a size that cannot run whole, e.g. 9000x9000)
and once with --tile; the colour mask is always written, and the --outputs asked for (labels:
the index PNG, overlay). Printed per run: wall time, user + system CPU time and the peak
resident memory (Maximum resident set size) that /usr/bin/time -v reports, then the ratios.
CHECKPOINT: any checkpoint of the real network (e.g. tests/helpers.make_checkpoint's random
weights, or the demo's); weights do not change the memory or the time. Nothing is
downloaded. The figures are in docs/evaluation.md ("Large images").
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = {'rss_kb': r'Maximum resident set size \(kbytes\): (\d+)',
          'user': r'User time \(seconds\): ([\d.]+)',
          'system': r'System time \(seconds\): ([\d.]+)',
          'wall': r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)'}


def synthetic_image(path, w, h, seed=0, block=256):
    """Blocks of colour with noise, written as a JPEG, made in bands of rows (a 9000x9000
    image is never whole in float memory here)."""
    rng = np.random.RandomState(seed)
    colours = rng.randint(0, 256, (h // block + 1, w // block + 1, 3)).astype(np.int16)
    img = np.empty((h, w, 3), np.uint8)
    for top in range(0, h, 512):
        rows = np.arange(top, min(top + 512, h))
        band = colours[rows // block][:, np.arange(w) // block]
        noise = rng.randint(-20, 21, band.shape).astype(np.int16)
        img[top:top + len(rows)] = np.clip(band + noise, 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=92)


def seconds(text):
    value = 0.0
    for part in text.split(':'):
        value = value * 60 + float(part)
    return value


def run(command):
    result = subprocess.run(['/usr/bin/time', '-v'] + command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit('failed (%d): %s\n%s' % (result.returncode, ' '.join(command),
                                         result.stderr[-3000:]))
    found = {key: re.search(pattern, result.stderr) for key, pattern in FIELDS.items()}
    return {'rss_gb': int(found['rss_kb'].group(1)) * 1024 / 2 ** 30,
            'cpu_s': float(found['user'].group(1)) + float(found['system'].group(1)),
            'wall_s': seconds(found['wall'].group(1)),
            'log': [line for line in result.stdout.splitlines() if 'mask' in line]}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('checkpoint')
    p.add_argument('--num-classes', type=int, default=21)
    p.add_argument('--size', default='2048x1024', help='WxH')
    p.add_argument('--scales', default='1.0,0.75,0.5')
    p.add_argument('--tile', default='513,513')
    p.add_argument('--tile-stride', default=None)
    p.add_argument('--no-whole', action='store_true', help='tiled only')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--outputs', default='labels', help='labels, overlay (comma-separated)')
    p.add_argument('--work-dir', default=None, help='keep the image and outputs here')
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split('x'))
    work = args.work_dir or tempfile.mkdtemp(prefix='tile_bench_')
    os.makedirs(work, exist_ok=True)
    image = os.path.join(work, 'image_%dx%d.jpg' % (w, h))
    if not os.path.exists(image):
        synthetic_image(image, w, h)
    outputs = [o for o in args.outputs.split(',') if o]
    base = [sys.executable, os.path.join(ROOT, 'inference.py'), image, args.checkpoint,
            '--num-classes', str(args.num_classes), '--scales', args.scales,
            '--threads', str(args.threads)]
    base += ['--save-labels'] if 'labels' in outputs else []
    base += ['--overlay'] if 'overlay' in outputs else []
    runs = []
    if not args.no_whole:
        runs.append(('whole', base + ['--save-dir', os.path.join(work, 'whole')]))
    tiled = base + ['--tile', args.tile, '--save-dir', os.path.join(work, 'tiled')]
    if args.tile_stride:
        tiled += ['--tile-stride', args.tile_stride]
    runs.append(('tiled %s%s' % (args.tile, ' stride ' + args.tile_stride
                                 if args.tile_stride else ''), tiled))
    print('%dx%d, scales %s, %d classes, %d threads; outputs: mask%s'
          % (w, h, args.scales, args.num_classes, args.threads,
             ''.join(', ' + o for o in outputs)))
    print('| run | wall | CPU (user+sys) | peak RSS |')
    print('|---|---|---|---|')
    results = {}
    for name, command in runs:
        results[name] = run(command)
        r = results[name]
        print('| %s | %.0f s | %.0f s | %.2f GB |' % (name, r['wall_s'], r['cpu_s'],
                                                    r['rss_gb']), flush=True)
    if len(results) == 2:
        whole, tile = results['whole'], results[runs[1][0]]
        print('tiled / whole: peak RSS %.2f (%.0f%% lower), CPU time %.2f, wall %.2f'
              % (tile['rss_gb'] / whole['rss_gb'], 100 * (1 - tile['rss_gb'] / whole['rss_gb']),
                 tile['cpu_s'] / whole['cpu_s'], tile['wall_s'] / whole['wall_s']))
        labels = [np.asarray(Image.open(os.path.join(work, d, 'image_%dx%d.png' % (w, h))))
                  for d in ('whole', 'tiled')] if 'labels' in outputs else None
        if labels:
            print('labels equal on %.2f%% of the pixels' % (100 * np.mean(labels[0] == labels[1])))


if __name__ == '__main__':
    main()
