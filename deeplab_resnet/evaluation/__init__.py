"""evaluation: scores of a restored network on a labelled list, and pictures of them.

- `metrics.py`: confusion matrices and both mean-IoU conventions (NumPy only).
- `per_image.py`: `--per-image` figures and the worst images' thumbnails (NumPy and PIL).
- `plots.py`: confusion.png, iou.png, per_class.csv, worst.png (`python -m
  deeplab_resnet.evaluation.plots`).
- `run.py`: the evaluation behind `evaluate_msc.py` and `evaluate_msc_with_CRF.py` (prepare,
  loop, report).
- `crf_search.py`: DeepLab-v2's CRF parameter search (`evaluate_msc_with_CRF.py --crf-search`).
"""
