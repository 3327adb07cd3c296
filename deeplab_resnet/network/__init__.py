"""network: DeepLab-v2 ResNet-101 itself, Caffe-exact, in tf.compat.v1 graph mode.

- `layers.py`: Caffe-exact layers from variables and tf.nn (symmetric padding, ceil-mode
  pooling, batch norm with epsilon 1e-5).
- `model.py`: the network as a stage table (`DeepLabResNetModel`, the original's class), the
  original's variable names.
- `msc.py`: the multi-scale towers with shared variables, fused by max: one function for
  training, evaluation, inference and export.
- `resize.py`: the resizing conventions (bilinear for images and logits, centre-aligned
  nearest for labels) and the original's `prepare_label`.
"""
