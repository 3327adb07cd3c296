"""weights: weights from elsewhere turned into this project's checkpoints.

- `caffemodel.py`: Caffe's binary NetParameter read and written without Caffe.
- `to_checkpoint.py`: the authors' DeepLab-v2 caffemodel -> checkpoint with the original's
  names, and its provenance record (`convert.py`).
"""
