"""--tile (predict/tiling.py, common/windows.py): the windows' arithmetic by hand; the tiled Predictor against a
NumPy recomputation that feeds each window to the network on its own (offsets derived by
hand, mean-colour padding, coverage average, bilinear upsampling at 8 pixels a grid step);
the whole-image path, bit for bit, when a window covers the image; the tiled SavedModel
(plain TensorFlow 2, in a subprocess) against inference.py --tile; bad flags in one line; the
memory check's windows and PIL's pixel limit. On the small test network."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import make_checkpoint, run_captured
from deeplab_resnet.common.constants import IMG_MEAN_BGR
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.common.windows import (axis_windows, default_stride, logit_size,
                                           num_windows, tile_problem)
from deeplab_resnet.predict import memory

pytestmark = pytest.mark.usefixtures('small_network')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
NC = 4
TILE, STRIDE = (33, 41), (16, 24)     # not square, not the default stride
SCALES = (1.0, 0.75)
GB = 2 ** 30


def test_windows_by_hand():
    # 150 px: grid points 0, 8, ..., 152 (20); a 65 px window spans 9 of them; stride 40
    # (5 points): 0, 40, 80, then the last moved back to end at 152: 88.
    assert axis_windows(150, 65, 40) == (65, [0, 40, 80, 88])
    # A side shorter than the window: one window of the smallest 8k+1 >= it (41 >= 40).
    assert axis_windows(40, 65, 40) == (41, [0])
    assert axis_windows(41, 65, 40) == (41, [0])
    assert axis_windows(65, 65, 40) == (65, [0])
    assert axis_windows(66, 65, 40) == (65, [0, 8])
    # Touching windows (the default stride, 64 = 8 points): 0, 64, then 88 (ends at 152).
    assert axis_windows(150, 65, 64) == (65, [0, 64, 88])
    from deeplab_resnet.network.model import output_size
    assert all(logit_size(n) == output_size(n) for n in range(2, 3000))
    assert default_stride(513) == 512 and default_stride(65) == 64 and default_stride(17) == 16
    assert num_windows(60, 65, (65, 65)) == 1 and num_windows(150, 66, (65, 65)) == 3 * 2
    assert tile_problem((65, 513)) is None and tile_problem((65, 65), (64, 8)) is None
    for bad in ((64, 65), (9, 9), (513, 512)):
        assert '8k+1' in tile_problem(bad)
    for bad in ((12, 40), (0, 40), (72, 40)):
        assert 'multiple of 8' in tile_problem((65, 65), bad)


def _image(shape, seed):
    """Blocks of colour plus noise."""
    rng = np.random.RandomState(seed)
    h, w = shape
    blocks = rng.randint(0, 256, (5, 5, 3))
    img = blocks[np.arange(h) * 5 // h][:, np.arange(w) * 5 // w]
    return np.clip(img + rng.randint(-30, 31, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def ckpt(module_dir, small_network):
    return make_checkpoint(str(module_dir('ckpt')), num_classes=NC, seed=1, aspp_std=1.0)


@pytest.fixture(scope='module')
def tiled(ckpt):
    from deeplab_resnet.predict.predictor import Predictor
    with Predictor(ckpt, NC, SCALES, flip=True, tile=TILE, tile_stride=STRIDE) as predictor:
        yield predictor


class WindowNet(object):
    """The network on one preprocessed window at a time (fused scales; no tiling code)."""

    def __init__(self, prefix):
        import tensorflow as tf
        from deeplab_resnet.network import msc
        from deeplab_resnet.predict.predictor import restore_folded
        tf1 = tf.compat.v1
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.x = tf1.placeholder(tf.float32, [1, None, None, 3])
            self.logits = msc.multi_scale_logits(self.x, NC, False, SCALES,
                                                 fold_batch_norm=True).fused[0]
            self.sess = tf1.Session()
            restore_folded(self.sess, prefix)

    def __call__(self, window):
        """[h, w, 3] float32 -> fused logits, averaged with the mirrored window's."""
        plain = self.sess.run(self.logits, {self.x: window[None]})
        mirrored = self.sess.run(self.logits, {self.x: window[None, :, ::-1]})
        return 0.5 * (plain + mirrored[:, ::-1])


def reference(net, rgb, stride=STRIDE):
    """The tiled prediction recomputed: windows at offsets derived by hand in
    test_windows_by_hand's way, padded with the mean colour (0 after the mean), logits summed
    on the stride-8 grid and divided by the coverage; bilinear where the whole image reads."""
    h, w = rgb.shape[:2]
    bgr = rgb[..., ::-1].astype(np.float32) - np.asarray(IMG_MEAN_BGR, np.float32)
    gh, gw = -(-(h - 1) // 8) + 1, -(-(w - 1) // 8) + 1
    total, cover = np.zeros((gh, gw, NC)), np.zeros((gh, gw))
    side_h, ys = axis_windows(h, TILE[0], stride[0])
    side_w, xs = axis_windows(w, TILE[1], stride[1])
    for y in ys:
        for x in xs:
            window = np.zeros((side_h, side_w, 3), np.float32)
            crop = bgr[y:y + side_h, x:x + side_w]
            window[:crop.shape[0], :crop.shape[1]] = crop
            logits = net(window)
            assert logits.shape == ((side_h - 1) // 8 + 1, (side_w - 1) // 8 + 1, NC)
            total[y // 8:y // 8 + logits.shape[0], x // 8:x // 8 + logits.shape[1]] += logits
            cover[y // 8:y // 8 + logits.shape[0], x // 8:x // 8 + logits.shape[1]] += 1
    assert cover.min() >= 1
    grid = total / cover[..., None]
    # read where the whole-image path reads its logits: the network's logit count for the
    # side (model.output_size) stretched over the pixels (align corners)
    from deeplab_resnet.network.model import output_size
    fy = np.arange(h) * (output_size(h) - 1.0) / (h - 1)
    fx = np.arange(w) * (output_size(w) - 1.0) / (w - 1)
    y0, x0 = np.minimum(fy.astype(int), gh - 1), np.minimum(fx.astype(int), gw - 1)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    dy, dx = (fy - y0)[:, None, None], (fx - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - dx) + grid[y0][:, x1] * dx
    bottom = grid[y1][:, x0] * (1 - dx) + grid[y1][:, x1] * dx
    return top * (1 - dy) + bottom * dy


@pytest.fixture(scope='module')
def window_net(ckpt):
    return WindowNet(ckpt)


@pytest.mark.parametrize('shape', [(75, 99), (20, 90), (50, 41)])
def test_tiled_against_numpy_recomputation(tiled, window_net, shape):
    """Sizes not a multiple of the stride, odd, a side smaller than the window (20 < 33),
    one that fits in width only (41)."""
    rgb = _image(shape, sum(shape))
    check_against_reference(tiled, reference(window_net, rgb), rgb)


def test_default_stride_touching_windows_against_numpy(ckpt, window_net):
    """No --tile-stride: windows that touch. 75 px, windows of 33 (5 grid points), stride 32:
    0, 32, then 48 (ends at grid point 10, pixel 80); 99 px, 41 (6 points), stride 40: 0, 40,
    then 64 (ends at point 13, pixel 104)."""
    from deeplab_resnet.predict.predictor import Predictor
    assert axis_windows(75, 33, 32) == (33, [0, 32, 48])
    assert axis_windows(99, 41, 40) == (41, [0, 40, 64])
    rgb = _image((75, 99), 7)
    calls = []
    with Predictor(ckpt, NC, SCALES, flip=True, tile=TILE,
                   on_window=lambda done, total: calls.append((done, total))) as touching:
        check_against_reference(touching, reference(window_net, rgb, (32, 40)), rgb)
        # on_window before each of the 3 x 3 windows and after the last, in order, for each
        # of check_against_reference's two calls (with and without probabilities) ...
        assert calls == 2 * [(done, 9) for done in range(10)]
        touching.predict(_image((33, 41), 8))
        assert len(calls) == 20   # ... and never for an image one window covers


def check_against_reference(tiled, logits, rgb):
    """The tiled Predictor's labels and probabilities on rgb against the recomputed logits."""
    shape = rgb.shape[:2]
    labels, probs = tiled.predict(rgb, want_probs=True)
    assert labels.shape == shape and labels.dtype == np.int32
    expected = np.argmax(logits, axis=-1)
    agree = np.mean(labels == expected)
    # ties between classes aside, the same labels
    top2 = np.sort(logits, axis=-1)
    close = (top2[..., -1] - top2[..., -2]) < 1e-4 * np.ptp(logits)
    assert np.all((labels == expected) | close), agree
    # the probabilities (for the CRF): log-softmax within 1e-4 of the logits' range
    shifted = logits - logits.max(-1, keepdims=True)
    log_soft = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    assert probs.shape == shape + (NC,)
    assert np.allclose(probs.sum(-1), 1, atol=1e-5)
    kept = probs > 1e-6
    assert np.abs(np.log(probs[kept]) - log_soft[kept]).max() < 1e-4 * np.ptp(logits)
    assert np.array_equal(tiled.predict(rgb)[0], labels)


def test_whole_path_bit_for_bit_when_a_window_covers(tiled, ckpt):
    from deeplab_resnet.predict.predictor import Predictor
    images = [_image((33, 41), 3), _image((20, 17), 4), _image((33, 9), 5)]
    with Predictor(ckpt, NC, SCALES, flip=True) as whole:
        for rgb in images:
            a, pa = whole.predict(rgb, True)
            b, pb = tiled.predict(rgb, True)
            assert np.array_equal(a, b) and np.array_equal(pa, pb)


def run_main(module, argv):
    """module.main(argv) in-process -> (exit code, stdout, stderr)."""
    return run_captured(module.main, [str(a) for a in argv])


@pytest.mark.parametrize('flags, needle', [
    (['--tile', '64,64'], '8k+1'),
    (['--tile', '9'], '8k+1'),
    (['--tile', 'a,b'], 'integers'),
    (['--tile', '65,65,65'], 'integers'),
    (['--tile', '65', '--tile-stride', '12'], 'multiple of 8'),
    (['--tile', '65', '--tile-stride', '72'], 'multiple of 8'),
    (['--tile-stride', '16'], 'needs --tile'),
    (['--tile', '65', '--max-side', '500'], 'choose one'),
    (['--tile', '65', '--save-probs'], '--save-probs with --tile'),
    (['--tile', 'auto', '--tile-stride', '64'], '--tile auto chooses its window'),
    (['--tile', 'auto', '--export-savedmodel', 'm'], 'give --tile H,W with --export'),
    (['--tile', 'auto', '--max-side', '500'], 'choose one'),
])
def test_bad_tile_flags_one_line(tmp_path, flags, needle):
    import inference
    code, out, err = run_main(inference, ['x.jpg', 'ckpt'] + flags)
    lines = [line for line in err.splitlines() if 'error' in line]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_bad_tile_in_evaluation_one_line():
    import evaluate_msc_with_CRF
    code, _, err = run_main(evaluate_msc_with_CRF, ['--tile', '512,512'])
    lines = [line for line in err.splitlines() if 'error' in line]
    assert code == 2 and len(lines) == 1 and '8k+1' in lines[0], err


def test_tile_auto_resolved_from_the_images_and_the_memory(monkeypatch):
    """--tile auto: whole while the largest image fits, else the largest window up to 513
    that fits it, else nothing (check_fits refuses); the memory unknown: whole."""
    from deeplab_resnet.predict import memory
    sized = [('a.jpg', 1024, 2048), ('b.jpg', 375, 500)]
    args = ((1.0, 0.75, 0.5), False, 21)

    def resolve(available):
        return memory.resolve_tile(sized, *args, tile='auto', available=available)
    whole = memory.needed_bytes(1024, 2048, *args)
    tile, said = resolve(whole)
    assert tile is None and said.startswith('--tile auto: every image whole (the largest, '
                                            '2048x1024, needs about')
    at_513 = memory.needed_bytes(1024, 2048, *args, tile=(513, 513))
    assert at_513 < whole
    tile, said = resolve(at_513)
    assert tile == (513, 513) and said.startswith('--tile auto: windows of 513x513 (a.jpg, '
                                                  '2048x1024, needs about')
    at_257 = memory.needed_bytes(1024, 2048, *args, tile=(257, 257))
    assert resolve(at_257)[0] == (257, 257)   # 265 and more do not fit
    assert resolve(memory.FIXED_BYTES)[0] is None
    assert memory.resolve_tile(sized, *args, tile=(65, 65), available=1) == ((65, 65), None)
    monkeypatch.setattr(memory, 'available_bytes', lambda: None)
    assert memory.resolve_tile(sized, *args, tile='auto') == (
        None, '--tile auto: every image whole (the available memory is unknown)')


def test_tile_auto_in_inference_segments_in_the_window_it_chose(tmp_path, ckpt, monkeypatch):
    """inference.py --tile auto on an image that does not fit whole (the memory made small)
    runs windows of the size it names, with windows that touch; its labels are --tile S,S's."""
    import inference
    from deeplab_resnet.predict import memory
    from deeplab_resnet.predict.predictor import Predictor
    path = tmp_path / 'im.png'
    rgb = _image((75, 99), 21)
    Image.fromarray(rgb).save(path)
    scales = ','.join(map(str, SCALES))
    available = memory.needed_bytes(75, 99, SCALES, False, NC, tile=(49, 49))
    assert available < memory.needed_bytes(75, 99, SCALES, False, NC)
    monkeypatch.setattr(memory, 'available_bytes', lambda: available)
    code, out, err = run_main(inference, [path, ckpt, '--num-classes', NC, '--scales', scales,
                                          '--tile', 'auto', '--save-labels',
                                          '--save-dir', tmp_path / 'out'])
    assert code == 0, err
    side = int(re.search(r'--tile auto: windows of (\d+)x\1 \(', out).group(1))
    assert 49 <= side < 99 and (side - 1) % 8 == 0
    assert 'windows of %dx%d every %d,%d' % (side, side, side - 1, side - 1) in out
    with Predictor(ckpt, NC, SCALES, tile=(side, side)) as tiled:
        expected = tiled.predict(rgb)[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'out' / 'im.png')), expected)


LOADER = r'''
import sys
import numpy as np
from PIL import Image
import tensorflow as tf
segment = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
out = {}
for path in sys.argv[3:]:
    result = segment(image=tf.constant(np.asarray(Image.open(path).convert('RGB'))))
    out[path] = result['labels'].numpy()
    assert sorted(result) == ['labels'], sorted(result)
np.savez(sys.argv[2], *[out[p] for p in sys.argv[3:]])
'''


def test_tiled_savedmodel_against_inference(tmp_path, ckpt):
    """inference.py --tile writes the labels and exports the tiled SavedModel in one run;
    plain TensorFlow 2 loads it and segments the same images in one call each."""
    import inference
    paths = []
    for i, shape in enumerate([(75, 99), (20, 90), (30, 40)]):
        paths.append(str(tmp_path / ('im%d.png' % i)))
        Image.fromarray(_image(shape, 10 + i)).save(paths[-1])
    export = tmp_path / 'model'
    code, out, err = run_main(inference, paths + [
        ckpt, '--num-classes', NC, '--scales', ','.join(map(str, SCALES)), '--flip',
        '--tile', '%d,%d' % TILE, '--tile-stride', '%d,%d' % STRIDE, '--save-labels',
        '--save-dir', tmp_path / 'out', '--export-savedmodel', export])
    assert code == 0, err
    assert 'windows of 41x33, labels only' in out
    settings = json.loads((export / 'assets.extra' / 'deeplab.json').read_text())
    assert settings['tile'] == list(TILE) and settings['tile_stride'] == list(STRIDE)
    assert settings['outputs'] == {'labels': 'int32 [H, W]'}
    (tmp_path / 'load.py').write_text(LOADER)
    result = subprocess.run([sys.executable, str(tmp_path / 'load.py'), str(export),
                             str(tmp_path / 'labels.npz')] + paths, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(str(tmp_path / 'labels.npz'))
    equal = total = 0
    for i, path in enumerate(paths):
        written = np.asarray(Image.open(str(tmp_path / 'out' / ('im%d.png' % i))))
        assert served['arr_%d' % i].shape == written.shape
        equal += np.sum(served['arr_%d' % i] == written)
        total += written.size
    print('tiled SavedModel vs inference.py --tile: %.4f%% of %d labels equal'
          % (100.0 * equal / total, total))
    assert equal >= 0.999 * total


def test_memory_check_learns_windows(monkeypatch):
    # 9000x9000, 1 scale, 21 classes, --tile 513: the window's network (263,169 pixels),
    # the grid (1126^2 points x 21 classes), a strip of 32 rows and 16 bytes per pixel.
    need = memory.tiled_bytes(9000, 9000, (1.0,), False, 21, (513, 513))
    assert need == (memory.BYTES_PER_NETWORK_PIXEL * 513 * 513
                    + memory.GRID_BYTES_PER_CLASS_POINT * 21 * 1126 * 1126
                    + memory.STRIP_BYTES_PER_CLASS_PIXEL * 21 * 32 * 9000
                    + memory.TILED_BYTES_PER_PIXEL * 81000000)
    assert memory.tiled_bytes(500, 400, (1.0,), False, 21, (513, 513)) == (
        memory.image_bytes(500, 400, (1.0,), False, 21))
    sized = [('big.png', 9000, 9000)]
    with pytest.raises(InputError) as info:
        memory.check_fits(sized, (1.0, 0.75, 0.5), False, 21, available=8 * GB)
    assert 'pass --tile 513,513 (full resolution, in windows) or --max-side' in (
        str(info.value))
    memory.check_fits(sized, (1.0, 0.75, 0.5), False, 21, available=8 * GB, tile=(513, 513))
    with pytest.raises(InputError) as info:   # the CRF needs the full-size probabilities
        memory.check_fits(sized, (1.0,), False, 21, available=8 * GB, tile=(513, 513),
                          probs=True)
    assert 'the dense CRF' in str(info.value) and '\n' not in str(info.value)
    available = memory.needed_bytes(9000, 9000, (1.0,), False, 21, tile=(257, 257))
    assert memory.fitting_tile(9000, 9000, (1.0,), False, 21, available) == 257
    assert memory.fitting_tile(9000, 9000, (1.0,), False, 21, available - 1) == 249
    assert memory.fitting_tile(9000, 9000, (1.0,), False, 21, memory.FIXED_BYTES) is None


def test_pixel_limit_raised_where_the_memory_check_accepts(tmp_path, monkeypatch):
    from deeplab_resnet.data.labels import image_size
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
    path = str(tmp_path / 'big.png')
    Image.new('RGB', (300, 200)).save(path)      # 60,000 pixels, 60 times PIL's limit here
    assert image_size(path) == (200, 300)       # the header is read all the same
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    memory.check_fits([(path, 200, 300)], (1.0,), False, 21, available=100 * GB)
    assert Image.MAX_IMAGE_PIXELS == 60000
    with Image.open(path) as img:
        img.load()


def test_colour_mask_in_strips_equals_colourise():
    from deeplab_resnet.data.colormap import colourise
    from deeplab_resnet.predict.segment import OUTPUT_STRIP_ROWS, colour_mask
    labels = np.random.RandomState(0).randint(0, 6, (2 * OUTPUT_STRIP_ROWS + 7, 5))
    labels[3, 2] = 255
    assert np.array_equal(colour_mask(labels, 6), colourise(labels, 6))


def test_crf_evaluation_with_tile_runs_on_the_whole_image(tmp_path, ckpt):
    """evaluate_msc_with_CRF.py --tile: the windows' full-size probabilities go to the CRF
    (both images are taller than the window's 33 rows: tiled), and both tables and the JSON's
    settings come back."""
    import evaluate_msc_with_CRF
    from helpers import make_dataset
    data_list = make_dataset(str(tmp_path), num_images=2, sizes=((40, 50), (41, 37)))
    out_json = tmp_path / 'eval.json'
    code, out, err = run_main(evaluate_msc_with_CRF, [
        '--data-dir', tmp_path, '--data-list', data_list, '--restore-from', ckpt,
        '--num-classes', NC, '--scales', '1.0', '--tile', '%d,%d' % TILE,
        '--tile-stride', '%d,%d' % STRIDE, '--crf-iterations', '2', '--num-workers', '1',
        '--output-json', out_json])
    assert code == 0, err
    assert 'windows of 41x33 every 16,24' in out and 'mIoU before CRF' in out
    results = json.loads(out_json.read_text())
    assert results['settings']['tile'] == list(TILE)
    assert results['crf']['metrics']['mean_iou'] is not None
