"""common: the facts and small pieces every other part shares; imports nothing above it.

- `constants.py`: the numbers fixed by the paper, the Caffe model and PASCAL VOC (image mean,
  ignore label, ASPP rates, batch-norm epsilon, learning-rate multipliers, CRF defaults, file
  names), in one place.
- `errors.py`: `InputError`, the one exception turned into one line and a non-zero exit.
- `progress.py`: the progress line (count, rate, ETA) on stderr.
- `names.py`: the default class names (VOC's for 21 classes, else `class_<i>`).
- `windows.py`: the arithmetic of `--tile`'s windows (which windows cover an image, the
  flags' checks), without TensorFlow.
- `cli.py`: argparse value types and the flags the scripts share (no `--dataset`: that reads a
  descriptor, in `data/dataset_cli.py`).
"""
