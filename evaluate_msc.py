#!/usr/bin/env python
"""Evaluate DeepLab-v2 ResNet-101 on a labelled list: full-resolution images of any size,
multi-scale inputs fused by max (--scales), optional flip; mean IoU, per-class IoU, pixel
accuracy, mean class accuracy and frequency-weighted IoU from one confusion matrix over the
whole set. The table ends with a line `mIoU: 0.xxxx`.

--restore-from takes a checkpoint prefix or a directory (its latest checkpoint). When the
checkpoint has a provenance record (<prefix>.json) its class count, image mean and class
names are used unless --num-classes / --img-mean / --class-names are given (a flag that
contradicts the record is used, with a warning). Images the record says the checkpoint was
trained on are counted in a warning and the JSON's "overlap"; --strict makes that an error.

--dataset FILE (a dataset.json) gives --data-dir, --num-classes, --ignore-label, the class
names, colours and test-server ids, and the list of its split "val" (else "test"; --split NAME
for another); a flag given explicitly wins. Besides the mean IoU over the classes in the
ground truth or the predictions, the table gives the mean over the ground truth's classes
only (kazuto1011/deeplab-pytorch's convention), each with the classes it covers.
"""
import sys

from deeplab_resnet.common.errors import exit_on_input_error
from deeplab_resnet.evaluation import run as evaluation


def get_arguments(argv=None):
    return evaluation.parse_arguments(argv, __doc__, crf=False)


@exit_on_input_error
def main(argv=None):
    args = get_arguments(argv)
    evaluation.evaluate(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
