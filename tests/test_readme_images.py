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
