"""deeplab_resnet.predict.memory: the estimate of what one image needs (checked against pixel
counts derived by hand), the --max-side arithmetic, and the Predictor's downscaled path (a stub
session: no network)."""
import struct
import zlib

import numpy as np
import pytest

from deeplab_resnet.common.errors import InputError
from deeplab_resnet.predict import memory

GB = 2 ** 30
NET, CLS = memory.BYTES_PER_NETWORK_PIXEL, memory.BYTES_PER_CLASS_PIXEL


def one_colour_png(path, w, h, rgb=(90, 120, 150)):
    """A w x h PNG of one colour (RGB, or grey for a 1-tuple), written row by row (a 9000x9000
    one is ~1 MB on disk and never whole in memory)."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    row = b'\x00' + bytes(rgb) * w
    z = zlib.compressobj(1)
    parts = [z.compress(row) for _ in range(h)] + [z.flush()]
    header = struct.pack('>IIBBBBB', w, h, 8, 2 if len(rgb) == 3 else 0, 0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', b''.join(parts))
                + chunk(b'IEND', b''))
    return path


def test_estimate_of_a_9000_square_image_by_hand():
    """Scales 1, 0.75, 0.5 of 9000x9000: 9000^2 + 6750^2 + 4500^2 = 81,000,000 + 45,562,500
    + 20,250,000 = 146,812,500 network pixels; 21 classes at full size: 21 * 81,000,000."""
    assert memory.scaled_pixels(9000, 9000, (1.0, 0.75, 0.5)) == 146812500
    need = memory.image_bytes(9000, 9000, (1.0, 0.75, 0.5), False, 21)
    assert need == NET * 146812500 + CLS * 21 * 81000000
    assert memory.image_bytes(9000, 9000, (1.0, 0.75, 0.5), True, 21) == need + NET * 146812500
    assert memory.needed_bytes(9000, 9000, (1.0,), False, 21) == (
        memory.FIXED_BYTES + NET * 81000000 + CLS * 21 * 81000000)
    # Odd sizes: int(333 * 0.75) = 249, int(500 * 0.75) = 375; int(333 * 0.5) = 166.
    assert memory.scaled_pixels(333, 500, (1.0, 0.75, 0.5)) == 333 * 500 + 249 * 375 + 166 * 250


def test_max_side_reduces_what_the_network_sees():
    """--max-side 3000 on 9000x6000: the network sees 3000x2000 (6,000,000 pixels at scale
    1); the full-size labels and image (4 + 3 bytes a pixel of 54,000,000) stay."""
    assert memory.reduced_size(9000, 6000, 3000) == (3000, 2000)
    assert memory.reduced_size(6000, 9001, 3000) == (2000, 3000)
    assert memory.reduced_size(500, 400, 3000) == (500, 400)
    assert memory.image_bytes(9000, 6000, (1.0,), False, 21, 3000) == (
        NET * 6000000 + CLS * 21 * 6000000 + 7 * 54000000)


def test_fitting_side_is_the_largest_that_fits():
    available = 8 * GB
    side = memory.fitting_side(9000, 9000, (1.0, 0.75, 0.5), False, 21, available)
    assert side % 8 == 0
    assert memory.needed_bytes(9000, 9000, (1.0, 0.75, 0.5), False, 21, side) <= available
    assert memory.needed_bytes(9000, 9000, (1.0, 0.75, 0.5), False, 21, side + 8) > available
    assert memory.fitting_side(9000, 9000, (1.0,), False, 21, memory.FIXED_BYTES) is None


def test_check_fits_names_the_largest_image(tmp_path):
    sized = [('small.png', 400, 500), ('big.png', 9000, 9000), ('mid.png', 2000, 3000)]
    memory.check_fits(sized, (1.0,), False, 21, available=100 * GB)
    with pytest.raises(InputError) as info:
        memory.check_fits(sized, (1.0, 0.75, 0.5), False, 21, available=8 * GB)
    need = memory.needed_bytes(9000, 9000, (1.0, 0.75, 0.5), False, 21)
    side = memory.fitting_side(9000, 9000, (1.0, 0.75, 0.5), False, 21, 8 * GB)
    assert str(info.value) == (
        'big.png: a 9000x9000 image needs about %.1f GB to segment (scales 1,0.75,0.5), 8.0 GB '
        'is available: pass --tile 513,513 (full resolution, in windows) or '
        '--max-side %d (segmented at most %dx%d pixels, labels brought back to the image\'s '
        'size) or fewer --scales' % (need / GB, side, side, side))
    memory.check_fits(sized, (1.0, 0.75, 0.5), False, 21, max_side=side, available=8 * GB)


def test_big_png_header_gives_its_size_cheaply(tmp_path):
    from deeplab_resnet.data.labels import image_size
    path = one_colour_png(str(tmp_path / 'big.png'), 9000, 7000)
    assert image_size(path) == (7000, 9000)
    import os
    assert os.path.getsize(path) < 2 * 2 ** 20


def test_nearest_upsample_by_hand():
    labels = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(memory.nearest_upsample(labels, 4, 4), np.array(
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))
    # 2 -> 3 columns: output centres 0.5, 1.5, 2.5 fall at 0.33, 1.0, 1.67 of the input.
    np.testing.assert_array_equal(memory.nearest_upsample(labels, 2, 3),
                                  np.array([[0, 1, 1], [2, 3, 3]]))


class _StubSession(object):
    """Labels = 1 where the red channel is bright; records the fed sizes."""

    def __init__(self, placeholder):
        self.placeholder, self.fed = placeholder, []

    def run(self, fetch, feed):
        image = feed[self.placeholder]
        self.fed.append(image.shape[:2])
        return (image[..., 0] > 128).astype(np.int32)


def test_predictor_segments_large_images_downscaled():
    """A 90x120 image, left half black, right half white, --max-side 40: the network is fed
    30x40; the labels come back 90x120 with the halves where they were."""
    from deeplab_resnet.predict.predictor import Predictor
    predictor = Predictor.__new__(Predictor)
    predictor.max_side, predictor.rgb, predictor.labels = 40, 'rgb', 'labels'
    predictor.sess = _StubSession('rgb')
    image = np.zeros((90, 120, 3), np.uint8)
    image[:, 60:] = 255
    labels, probs = predictor.predict(image)
    assert predictor.sess.fed == [(30, 40)] and probs is None
    assert labels.shape == (90, 120)
    assert (labels[:, :58] == 0).all() and (labels[:, 62:] == 1).all()
    with pytest.raises(ValueError):
        predictor.predict(image, want_probs=True)


def test_max_side_refused_with_probabilities(capsys):
    import inference
    import evaluate_msc_with_CRF
    for main, argv in ((inference.get_arguments, ['a.jpg', 'ckpt', '--max-side', '500',
                                                  '--save-probs']),
                       (inference.get_arguments, ['a.jpg', 'ckpt', '--max-side', '500',
                                                  '--crf']),
                       (evaluate_msc_with_CRF.get_arguments, ['--max-side', '500'])):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert '--max-side gives labels, not full-size probabilities' in (
            capsys.readouterr().err.strip().splitlines()[-1])
    assert inference.get_arguments(['a.jpg', 'ckpt', '--max-side', '500']).max_side == 500
