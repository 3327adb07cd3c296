"""predict: a restored network that segments images, and what it writes.

- `memory.py`: what one image needs, known from its header; images that cannot fit are
  refused before work (`--tile`, `--max-side`); the one place that raises PIL's pixel limit.
- `tiling.py`: `--tile`, the sliding windows' graph (a `tf.while_loop` over windows on the
  stride-8 grid, fused logits averaged, upsampled in strips) for the Predictor and the tiled
  SavedModel.
- `crf.py`: the dense CRF of DeepLab-v2 and its process pool.
- `predictor.py`: `Predictor` (the graph built once, batch norm folded into the kernels) and
  `predictions`, the in-order loop with the CRF pool behind it.
- `export.py`: a SavedModel that segments a uint8 RGB image of any size.
- `litert.py`: that SavedModel converted to a float32 LiteRT model (`--export-tflite`), which
  the LiteRT interpreter runs without TensorFlow.
- `segment.py`: segmenting image files, the logic of `inference.py` (inputs, settings,
  outputs).
"""
