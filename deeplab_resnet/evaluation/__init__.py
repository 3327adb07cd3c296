"""evaluation: scores of a restored network on a labelled list, and pictures of them.

- `metrics.py`: confusion matrices and both mean-IoU conventions (NumPy only).
- `plots.py`: confusion.png, iou.png, per_class.csv (`python -m
  deeplab_resnet.evaluation.plots`).
- `run.py`: the evaluation behind `evaluate_msc.py` and `evaluate_msc_with_CRF.py` (prepare,
  loop, report).
"""
