"""The input pipeline and the utilities: decoding, validation, augmentation, colour maps."""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_resnet.common.constants import IMG_MEAN_BGR
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data import colormap, datalist
from deeplab_resnet.data.colormap import make_palette
from deeplab_resnet.data.image_reader import ImageReader, input_error_from_op_error
from deeplab_resnet.network import resize

tf1 = tf.compat.v1


def run_all(reader, with_rgb=False, batches=None, batch_size=1):
    with tf.Graph().as_default():
        ds = reader.dataset(batch_size, with_rgb=with_rgb)
        nxt = tf1.data.make_one_shot_iterator(ds).get_next()
        out = []
        with tf1.Session() as sess:
            try:
                while batches is None or len(out) < batches:
                    out.append(sess.run(nxt))
            except tf.errors.OutOfRangeError:
                pass
    return out


def write_list(root, lines, name='list.txt'):
    path = os.path.join(root, name)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def test_palette_png_is_read_as_indices_and_image_as_bgr_minus_mean(tmp_path):
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    Image.fromarray(rgb).save(tmp_path / 'a.png')
    labels = np.array([[0, 1, 2, 255], [3, 4, 5, 6], [7, 8, 9, 10]], np.uint8)
    mask = Image.fromarray(labels, mode='P')
    mask.putpalette(make_palette(256).reshape(-1).tolist())   # colours != indices
    mask.save(tmp_path / 'a_mask.png')
    lst = write_list(str(tmp_path), ['/a.png /a_mask.png'])
    (image, label), = run_all(ImageReader(str(tmp_path), lst, None))
    np.testing.assert_array_equal(label[0, :, :, 0], labels)
    want = np.array([30, 20, 10], np.float32) - np.array(IMG_MEAN_BGR, np.float32)
    np.testing.assert_allclose(image[0], np.broadcast_to(want, (3, 4, 3)), atol=1e-4)


def test_greyscale_jpeg_becomes_three_channels(tmp_path):
    Image.fromarray(np.full((5, 7), 128, np.uint8), mode='L').save(tmp_path / 'g.jpg')
    Image.fromarray(np.zeros((5, 7), np.uint8), mode='L').save(tmp_path / 'g.png')
    lst = write_list(str(tmp_path), ['g.jpg g.png'])
    (image, label, rgb), = run_all(ImageReader(str(tmp_path), lst, None), with_rgb=True)
    assert image.shape == (1, 5, 7, 3) and rgb.shape == (1, 5, 7, 3)
    assert np.all(rgb == rgb[..., :1])


def test_rgb_colour_mask_is_refused_with_advice(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'x.jpg')
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[:2] = (128, 0, 0)
    Image.fromarray(colour).save(tmp_path / 'x.png')
    lst = write_list(str(tmp_path), ['x.jpg x.png'])
    with pytest.raises(tf.errors.OpError) as info:
        run_all(ImageReader(str(tmp_path), lst, None))
    err = input_error_from_op_error(info.value)
    assert err is not None and 'x.png' in str(err) and 'rgb2index' in str(err)


def test_corrupt_image_and_size_mismatch_name_the_files(tmp_path):
    (tmp_path / 'bad.jpg').write_bytes(b'not a jpeg at all')
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / 'bad.png')
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / 'b.png')
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / 'b_mask.png')
    for line, name in [('bad.jpg bad.png', 'bad.jpg'), ('b.png b_mask.png', 'b_mask.png')]:
        lst = write_list(str(tmp_path), [line])
        with pytest.raises(tf.errors.OpError) as info:
            run_all(ImageReader(str(tmp_path), lst, None))
        err = input_error_from_op_error(info.value)
        assert err is not None and name in str(err)
        assert len(str(err).splitlines()) == 1


def test_missing_files_are_reported_before_anything_runs(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'ok.jpg')
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / 'ok.png')
    lst = write_list(str(tmp_path), ['ok.jpg ok.png', '', 'no1.jpg ok.png', 'ok.jpg no2.png'])
    with pytest.raises(InputError) as info:
        ImageReader(str(tmp_path), lst, (5, 5))
    text = str(info.value)
    assert '2 listed file(s) missing' in text
    assert 'line 3: %s' % os.path.join(str(tmp_path), 'no1.jpg') in text and 'line 4' in text


@pytest.mark.parametrize('lines,message', [
    (['a.jpg b.png c.png'], ':1: malformed line'),
    (['# only a comment'], 'the list is empty'),
    (['a.jpg'], ':1: no label path'),
])
def test_malformed_lists(tmp_path, lines, message):
    lst = write_list(str(tmp_path), lines)
    with pytest.raises(InputError) as info:
        datalist.parse_list(lst, str(tmp_path))
    assert message in str(info.value) and lst in str(info.value)


def test_missing_list_and_unlabelled_lines(tmp_path):
    with pytest.raises(InputError, match='list file not found'):
        datalist.parse_list(str(tmp_path / 'nope.txt'))
    lst = write_list(str(tmp_path), ['/JPEG/a.jpg'])
    ex, = datalist.parse_list(lst, '/data', need_labels=False)
    assert ex.image == '/data/JPEG/a.jpg' and ex.label is None and ex.line == 1


def test_training_crops_pad_with_zero_image_and_ignore_label(tmp_path):
    rgb = np.full((6, 5, 3), 200, np.uint8)
    Image.fromarray(rgb).save(tmp_path / 's.png')
    Image.fromarray(np.ones((6, 5), np.uint8)).save(tmp_path / 's_mask.png')
    lst = write_list(str(tmp_path), ['s.png s_mask.png'])
    reader = ImageReader(str(tmp_path), lst, (9, 8), random_mirror=True, seed=1)
    for image, label in run_all(reader, batches=3, batch_size=2):
        assert image.shape == (2, 9, 8, 3) and label.shape == (2, 9, 8, 1)
        # The 6x5 image sits somewhere in the 9x8 crop; the rest is padding.
        assert np.sum(label == 1) == 2 * 30 and np.sum(label == 255) == 2 * (72 - 30)
        padded = (label[..., 0] == 255)
        np.testing.assert_allclose(image[padded], 0.0)
        np.testing.assert_allclose(image[~padded],
                                   np.broadcast_to(200 - np.array(IMG_MEAN_BGR), (60, 3)),
                                   atol=1e-3)


def test_random_scale_keeps_labels_valid(tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[:, 15:] = 2
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / 'r.png')
    Image.fromarray(labels).save(tmp_path / 'r_mask.png')
    lst = write_list(str(tmp_path), ['r.png r_mask.png'])
    reader = ImageReader(str(tmp_path), lst, (16, 16), random_scale=True, seed=3,
                         scale_set=(0.5, 1.5))
    for _, label in run_all(reader, batches=4):
        assert set(np.unique(label)) <= {0, 2, 255}   # nearest: no blended label values


def _numbered_dataset(root, count=7):
    """count images whose every pixel holds the image's number (so a crop names its image),
    with labels 0, of different sizes."""
    lines = []
    for i in range(count):
        h, w = 12 + i, 15 - i
        Image.fromarray(np.full((h, w, 3), 10 * i, np.uint8)).save(os.path.join(root, '%d.png' % i))
        Image.fromarray(np.zeros((h, w), np.uint8)).save(os.path.join(root, '%d_m.png' % i))
        lines.append('%d.png %d_m.png' % (i, i))
    return write_list(root, lines)


def _training_batches(root, lst, seed, threads, start=0, batches=6):
    reader = ImageReader(root, lst, (9, 8), random_scale=True, random_mirror=True,
                         seed=seed, num_parallel_calls=threads)
    with tf.Graph().as_default():
        nxt = tf1.data.make_one_shot_iterator(
            reader.dataset(2, start=start)).get_next()
        with tf1.Session() as sess:
            return [sess.run(nxt) for _ in range(batches)]


def test_same_seed_same_batches_any_threads_and_from_any_position(tmp_path):
    """The training sequence is a function of the seed alone: two readers with one seed give
    the same batches (augmentation included) with 1 or 4 decoding threads, a reader started
    at position p gives the batches from example p on, another seed gives others, and every
    epoch visits each image once (7 images: batches cross the epoch boundary)."""
    root = str(tmp_path)
    lst = _numbered_dataset(root)
    a = _training_batches(root, lst, 1234, 1)
    b = _training_batches(root, lst, 1234, 4)
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    later = _training_batches(root, lst, 1234, 4, start=4, batches=4)
    for (ia, _), (ib, _) in zip(a[2:], later):
        np.testing.assert_array_equal(ia, ib)
    other = _training_batches(root, lst, 99, 1)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, other))
    # The image of each crop: its pixels (not padding) are 10 * number - mean.
    mean_b = IMG_MEAN_BGR[0]
    numbers = []
    for images, labels in a:
        for image, label in zip(images, labels):
            inside = image[label[..., 0] != 255]
            numbers.append(int(round((inside[0, 0] + mean_b) / 10.0)))
    assert sorted(numbers[:7]) == list(range(7))       # epoch 1: each image once
    assert len(set(numbers[7:12])) == 5                 # epoch 2 starts without repeats
    assert numbers[:7] != list(range(7)) and numbers[7:12] != numbers[:5]   # shuffled anew


def test_label_downsampling_is_centre_aligned():
    """Nearest rule: output pixel i takes input floor((i + 0.5) * in / out)."""
    labels = np.arange(7 * 9, dtype=np.int32).reshape(1, 7, 9, 1)
    with tf.Graph().as_default(), tf1.Session() as sess:
        got = sess.run(resize.resize_labels(tf.constant(labels), [3, 4]))[0, :, :, 0]
    rows = np.floor((np.arange(3) + 0.5) * 7 / 3).astype(int)
    cols = np.floor((np.arange(4) + 0.5) * 9 / 4).astype(int)
    np.testing.assert_array_equal(got, labels[0, :, :, 0][np.ix_(rows, cols)])


def test_decode_labels_inv_preprocess_prepare_label():
    mask = np.array([[[0], [1]], [[15], [255]]], np.int64)[None]
    colours = colormap.decode_labels(mask, num_images=1, num_classes=21)
    assert colours.shape == (1, 2, 2, 3)
    # PASCAL VOC: background black, aeroplane (128, 0, 0), person (192, 128, 128).
    assert tuple(colours[0, 0, 0]) == (0, 0, 0) and tuple(colours[0, 0, 1]) == (128, 0, 0)
    assert tuple(colours[0, 1, 0]) == (192, 128, 128)
    bgr = np.array([[[[30.0, 20.0, 10.0]]]]) - np.array(IMG_MEAN_BGR)
    assert tuple(colormap.inv_preprocess(bgr)[0, 0, 0]) == (10, 20, 30)
    with tf.Graph().as_default(), tf1.Session() as sess:
        onehot = sess.run(resize.prepare_label(tf.constant([[[[1], [255]]]], tf.uint8),
                                              [1, 2], num_classes=3))
    np.testing.assert_array_equal(onehot, [[[[0, 1, 0], [0, 0, 0]]]])
    palette = make_palette(256)
    # 21 = 0b010101: bits (0,1,2) -> R,G,B bit 7; bits (3,4,5) -> bit 6.
    assert tuple(palette[21]) == (128, 64, 128)


# ----------------------------------------------------------------------------- against a907866

def _noisy_rgb(rs, h, w):
    """Smooth colours plus noise: JPEG-like content with detail in every block."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 7 % 256, yy * 5 % 256, (xx + yy) * 3 % 256], -1).astype(np.float32)
    return np.clip(base + rs.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _mixed_dataset(root):
    """Images of every kind the readers take (JPEG 4:2:0 / 4:4:4 / progressive / greyscale,
    PNG), some smaller than the crop, with palette-PNG and mode-L labels of random indices."""
    rs = np.random.RandomState(5)
    kinds = [((47, 61), 'jpg', dict(quality=90)), ((30, 25), 'jpg', dict(subsampling=0)),
             ((52, 40), 'jpg', dict(progressive=True, quality=70)), ((41, 57), 'png', {}),
             ((36, 70), 'grey.jpg', {}), ((60, 45), 'jpg', dict(quality=95, subsampling=1))]
    lines = []
    for i, ((h, w), ext, options) in enumerate(kinds):
        rgb = _noisy_rgb(rs, h, w)
        image = Image.fromarray(rgb).convert('L') if ext.startswith('grey') else Image.fromarray(rgb)
        image.save(os.path.join(root, '%d.%s' % (i, ext)), **options)
        indices = rs.randint(0, 21, (h, w)).astype(np.uint8)
        indices[0, :3] = 255
        mask = Image.fromarray(indices, mode='P' if i % 2 else 'L')
        if i % 2:
            mask.putpalette(make_palette(256).reshape(-1).tolist())
        mask.save(os.path.join(root, '%d_m.png' % i))
        lines.append('%d.%s %d_m.png' % (i, ext, i))
    return write_list(root, lines)


def _batches(dataset, count):
    with tf.Graph().as_default():
        nxt = tf1.data.make_one_shot_iterator(dataset()).get_next()
        with tf1.Session() as sess:
            return [sess.run(nxt) for _ in range(count)]


@pytest.mark.parametrize('augment', [
    dict(random_scale=True, random_mirror=True),
    dict(random_scale=True, scale_set=(0.5, 0.75, 1.0, 1.25, 1.5)),
    dict(random_mirror=True),
])
def test_training_crops_equal_those_of_a907866(tmp_path, augment):
    """The training sequence is the one of the whole-image pipeline of a907866
    (benchmarks/pipeline_reference.py, PIL decoding): every image and label crop equal,
    pixel for pixel, from a start position on, across two epochs, with padding (images
    smaller than the crop) and every image kind."""
    from benchmarks import pipeline_reference
    root = str(tmp_path)
    lst = _mixed_dataset(root)
    crop = (44, 50)
    reader = ImageReader(root, lst, crop, seed=11, **augment)
    got = _batches(lambda: reader.dataset(2, start=3), 6)
    want = _batches(lambda: pipeline_reference.training_dataset(
        reader.examples, crop, 2, seed=11, start=3, **augment), 6)
    for (image, label), (image_want, label_want) in zip(got, want):
        np.testing.assert_array_equal(image, image_want)
        np.testing.assert_array_equal(label, label_want)
    labels = np.concatenate([label for _, label in got])
    assert np.any(labels == 255) and set(np.unique(labels)) <= set(range(21)) | {255}


def test_jpegs_decode_in_tensorflow_to_pils_pixels(tmp_path, monkeypatch):
    """JPEGs (4:2:0, 4:2:2, 4:4:4, progressive, greyscale, odd sizes) never reach PIL in the
    pipeline and still give PIL's pixels; a PNG image, a CMYK JPEG and a truncated JPEG go to
    PIL, which decodes the first two as before and names the third."""
    from deeplab_resnet.data import image_reader
    rs = np.random.RandomState(2)
    cases = [((37, 53), dict(quality=90)), ((16, 9), dict(subsampling=1, quality=60)),
             ((61, 30), dict(subsampling=0, quality=100)), ((45, 45), dict(progressive=True)),
             ((23, 77), 'L'), ((8, 8), 'CMYK'), ((29, 31), 'PNG')]
    paths = []
    for i, (size, options) in enumerate(cases):
        image = Image.fromarray(_noisy_rgb(rs, *size))
        path = str(tmp_path / ('%d.%s' % (i, 'png' if options == 'PNG' else 'jpg')))
        if isinstance(options, str):
            image = image if options == 'PNG' else image.convert(options)
            image.save(path)
        else:
            image.save(path, **options)
        paths.append(path)
    jpeg = open(paths[0], 'rb').read()
    (tmp_path / 'cut.jpg').write_bytes(jpeg[:len(jpeg) // 2])
    pil_calls = []

    def pil_image(path):
        pil_calls.append(path.decode())
        return real_pil_image(path)
    real_pil_image = image_reader._pil_image
    monkeypatch.setattr(image_reader, '_pil_image', pil_image)
    with tf.Graph().as_default():
        path = tf1.placeholder(tf.string, [])
        image = image_reader.read_image(path)
        with tf1.Session() as sess:
            for p in paths:
                np.testing.assert_array_equal(sess.run(image, {path: p}),
                                              np.asarray(Image.open(p).convert('RGB')))
            assert pil_calls == paths[-2:]     # the CMYK JPEG and the PNG
            with pytest.raises(tf.errors.OpError) as info:
                sess.run(image, {path: str(tmp_path / 'cut.jpg')})
    err = input_error_from_op_error(info.value)
    assert err is not None and 'cut.jpg' in str(err) and 'cannot decode image' in str(err)


def test_palette_and_grey_labels_give_the_same_indices_in_training(tmp_path):
    """A palette PNG (colours unlike the indices) and a mode-L PNG holding the same indices
    give the same training labels, and those are the indices: a crop of the whole image,
    unscaled and unmirrored, is the image."""
    indices = np.random.RandomState(4).randint(0, 21, (13, 17)).astype(np.uint8)
    indices[2, 3] = 255
    Image.fromarray(np.zeros((13, 17, 3), np.uint8)).save(tmp_path / 'i.jpg')
    palette = Image.fromarray(indices, mode='P')
    palette.putpalette(make_palette(256).reshape(-1).tolist())
    palette.save(tmp_path / 'p.png')
    Image.fromarray(indices, mode='L').save(tmp_path / 'l.png')
    lst = write_list(str(tmp_path), ['i.jpg p.png', 'i.jpg l.png'])
    reader = ImageReader(str(tmp_path), lst, (13, 17), shuffle=False)
    (_, labels), = run_all(reader, batches=1, batch_size=2)
    np.testing.assert_array_equal(labels[..., 0], np.stack([indices, indices]))
