#!/usr/bin/env python
"""What DeepLab-v2's CRF search (evaluate_msc_with_CRF.py --crf-search) costs on this
machine: one dense CRF of a 500x375 image with 21 classes and 10 iterations (the synthetic
input of benchmarks/speed.py's crf case) timed for settings of the default grid, then
multiplied out to a VOC search of 100 images x 154 CRF runs (128 + 27 settings, the fine
round's centre not run again).

The CRF's cost follows the permutohedral lattice's size, so sigma_alpha and sigma_beta
matter and w1 does not; the settings timed are the grid's sigma corners and middle, and
their mean stands for the grid's. Prints one line per setting (CPU and wall seconds, median
of --repeats) and the estimate in CPU-hours and in hours on --workers cores.

    python benchmarks/crf_search_cost.py [--repeats 3] [--workers 2]
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from deeplab_resnet.common import constants  # noqa: E402
from deeplab_resnet.predict.crf import CRFParams, dense_crf  # noqa: E402

SIZE_HW = (375, 500)
VOC_IMAGES = constants.CRF_SEARCH_IMAGES
VOC_RUNS = (len(constants.CRF_SEARCH_BI_W) * len(constants.CRF_SEARCH_BI_XY_STD)
            * len(constants.CRF_SEARCH_BI_RGB_STD) + 27 - 1)
SIGMAS = [(a, b) for a in (30.0, 60.0, 100.0) for b in (3.0, 4.5, 6.0)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--workers', type=int, default=2, help='cores of the estimate')
    args = p.parse_args(argv)
    from speed import _crf_inputs
    image, probs = _crf_inputs(SIZE_HW, 0)
    cpus = []
    for sigma_alpha, sigma_beta in SIGMAS:
        params = CRFParams(bi_w=4.0, bi_xy_std=sigma_alpha, bi_rgb_std=sigma_beta)
        cpu, wall = [], []
        for _ in range(args.repeats):
            c, w = time.process_time(), time.time()
            dense_crf(image, probs, params)
            cpu.append(time.process_time() - c)
            wall.append(time.time() - w)
        cpus.append(statistics.median(cpu))
        print('sigma_alpha %5g  sigma_beta %4g: %.2f CPU-s, %.2f s wall (median of %d)'
              % (sigma_alpha, sigma_beta, cpus[-1], statistics.median(wall), args.repeats),
              flush=True)
    mean = statistics.mean(cpus)
    total = mean * VOC_IMAGES * VOC_RUNS
    print('a VOC search: %d images x %d CRF runs x %.2f CPU-s (the mean above) = %.1f '
          'CPU-hours: %.1f h on %d cores' % (VOC_IMAGES, VOC_RUNS, mean, total / 3600,
                                              total / 3600 / args.workers, args.workers))
    return 0


if __name__ == '__main__':
    sys.exit(main())
