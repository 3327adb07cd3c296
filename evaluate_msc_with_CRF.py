#!/usr/bin/env python
"""Evaluate DeepLab-v2 ResNet-101 as evaluate_msc.py does, then refine the softmax
probabilities with a fully connected CRF at full resolution (every parameter a --crf-* flag;
defaults: DeepLab-v2's VOC values) and evaluate again. The CRF runs in --crf-workers processes
(alias --num-workers) while the network segments the next images; the result does not depend
on their number.

Prints the table before and after the CRF, a line `mIoU before CRF: x  after CRF: y`, and
last `mIoU: y` (after the CRF). --save-dir holds the CRF's predictions: <stem>.png (index
PNG) and <stem>_mask.png (colour mask). --crf-params FILE takes the parameters from a search's
best.json.

--crf-search DIR runs DeepLab-v2's search of the bilateral kernel's parameters instead (w1,
sigma_alpha, sigma_beta on a grid, then a finer round; w2 and sigma_gamma held at --crf-pos-*):
one table, then DIR/best.json, whose path is the last line (docs/evaluation.md).
"""
import sys

from deeplab_resnet.common.errors import exit_on_input_error
from deeplab_resnet.evaluation import crf_search, run as evaluation


def get_arguments(argv=None):
    return evaluation.parse_arguments(argv, __doc__, crf=True,
                                      more=[crf_search.add_arguments])


@exit_on_input_error
def main(argv=None):
    args = get_arguments(argv)
    if args.crf_search:
        crf_search.search(args)
    else:
        evaluation.evaluate(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
