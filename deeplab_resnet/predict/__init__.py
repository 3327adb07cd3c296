"""predict: a restored network that segments images, and what it writes.

- `memory.py`: what one image needs, known from its header; images that cannot fit are
  refused before work (`--max-side`).
- `crf.py`: the dense CRF of DeepLab-v2 and its process pool.
- `predictor.py`: `Predictor` (the graph built once, batch norm folded into the kernels) and
  `predictions`, the in-order loop with the CRF pool behind it.
- `export.py`: a SavedModel that segments a uint8 RGB image of any size.
- `litert.py`: that SavedModel converted to a float32 LiteRT model (`--export-tflite`), which
  the LiteRT interpreter runs without TensorFlow.
- `segment.py`: segmenting image files, the logic of `inference.py` (inputs, settings,
  outputs).
"""
