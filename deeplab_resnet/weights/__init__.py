"""weights: weights from elsewhere turned into this project's checkpoints.

- `caffemodel.py`: Caffe's binary NetParameter read and written without Caffe.
- `to_checkpoint.py`: the authors' DeepLab-v2 caffemodel -> checkpoint with the original's
  names, and its provenance record (`convert.py`); the checkpoint writing and record that
  `pth_to_checkpoint.py` shares.
- `pth.py`: PyTorch's torch.save files (zip and legacy layouts) read without PyTorch (NumPy,
  pickle): a restricted unpickler, nothing in a file is run.
- `pth_to_checkpoint.py`: kazuto1011/deeplab-pytorch's DeepLab-v2 state dicts (its COCO-Stuff
  and VOC releases) -> checkpoint with the original's names (`convert.py MODEL.pth`).
"""
