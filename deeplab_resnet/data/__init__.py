"""data: list files, datasets' facts, images and labels, and the input pipeline.

- `datalist.py`: list files in the original format, parsed and checked before work starts.
- `descriptor.py`: `dataset.json`, what a dataset is (classes, names, colours, splits, ids).
- `dataset_cli.py`: `--dataset FILE` (its values the flags' defaults), `--split`, and the
  class-name, palette and server-id flags of the scripts that restore a checkpoint.
- `imageio.py`: images and index masks read and written with PIL (NumPy in and out).
- `labels.py`: the one label validator (sizes, values outside the classes).
- `colormap.py`: palettes, colourised masks, palette files; the original's `decode_labels`
  and `inv_preprocess`.
- `server_ids.py`: predictions in a test server's ids, one look-up table per dataset.
- `class_weights.py`: class weights from pixel counts (median frequency, ENet's inverse log)
  and the weights file `check --class-weights` writes and `train_msc.py --class-weights` reads.
- `image_reader.py`: the tf.data input pipeline (`ImageReader`, the original's class);
  `preprocess_image` for a full image.
"""
