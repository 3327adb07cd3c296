"""dataset.readme_images: the README's demo mask figure, read back."""
import os

import numpy as np
from PIL import Image

from dataset import readme_images


def _write_demo_outputs(root, sizes):
    """Fake `make demo` outputs: a PNG 'JPEG' (lossless, so pixels can be compared) and a
    colour mask per stem; returns the (image, mask) arrays."""
    os.makedirs(os.path.join(root, 'data', 'JPEGImages'))
    os.makedirs(os.path.join(root, 'inference'))
    rng = np.random.default_rng(0)
    arrays = []
    for i, (h, w) in enumerate(sizes):
        image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        mask = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(os.path.join(root, 'data', 'JPEGImages', 'val_%d.jpg' % i),
                                    format='PNG')
        Image.fromarray(mask).save(os.path.join(root, 'inference', 'val_%d_mask.png' % i))
        arrays.append((image, mask))
    return arrays


def test_mask_figure_grid(tmp_path):
    sizes = [(30, 40), (25, 50), (36, 20)]
    arrays = _write_demo_outputs(str(tmp_path), sizes)
    out = str(tmp_path / 'mask.png')
    assert readme_images.mask_figure(str(tmp_path), out, count=3, columns=2, gap=4, zoom=2)
    grid = np.asarray(Image.open(out).convert('RGB'))
    # Cells: tallest pair 36 + gap 4 = 40 high, widest pair 2 * 50 + 4 = 104 wide; 2 x 2 cells.
    assert grid.shape == (2 * 40 * 2, 2 * 104 * 2, 3)
    small = grid[::2, ::2]
    for k, (image, mask) in enumerate(arrays):
        top, left = 40 * (k // 2), 104 * (k % 2)
        h, w = image.shape[:2]
        np.testing.assert_array_equal(small[top:top + h, left:left + w], image)
        np.testing.assert_array_equal(small[top:top + h, left + w:left + 2 * w], mask)
    assert (small[40:, 104:] == 255).all()          # the empty fourth cell is white


def test_mask_figure_without_inference_outputs(tmp_path):
    assert not readme_images.mask_figure(str(tmp_path), str(tmp_path / 'mask.png'))
    assert not os.path.exists(str(tmp_path / 'mask.png'))


def test_validation_figure_stacks_the_last_pass(tmp_path):
    """images/validation.png: the fixed-image rows of the last validation pass in the events,
    one under the other with a 4-px white gap, enlarged twice."""
    import tensorflow as tf
    from deeplab_resnet.training import run_summaries
    tf1 = tf.compat.v1
    rng = np.random.default_rng(1)
    rows = {step: [rng.integers(0, 256, size=(h, 15, 3), dtype=np.uint8) for h in (6, 9)]
            for step in (10, 20)}
    with tf.Graph().as_default():
        writer = tf1.summary.FileWriter(str(tmp_path / 'snapshots'))
    for step, arrays in rows.items():
        writer.add_summary(tf1.Summary(value=[
            run_summaries.rgb_value('validation/images/%d' % i, a)
            for i, a in enumerate(arrays)]), step)
    writer.close()
    out = str(tmp_path / 'validation.png')
    assert readme_images.validation_figure(str(tmp_path), out, gap=4, zoom=2)
    small = np.asarray(Image.open(out).convert('RGB'))[::2, ::2]
    assert small.shape == (6 + 4 + 9 + 4, 15, 3)
    np.testing.assert_array_equal(small[:6], rows[20][0])
    np.testing.assert_array_equal(small[10:19], rows[20][1])
    assert (small[6:10] == 255).all()
    assert not readme_images.validation_figure(str(tmp_path / 'none'), out)
