"""inference.py end to end on generated images and a generated checkpoint: every output read
back, directory and list-file inputs, the provenance record, bad input, and the SavedModel
loaded by plain eager TensorFlow 2 in a subprocess."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import make_checkpoint, make_dataset, make_descriptor, run_captured
from deeplab_resnet.common.constants import IMG_MEAN_BGR
from deeplab_resnet.data.colormap import colourise, voc_palette_flat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NC = 4
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')


import inference as script  # noqa: E402  (the root script; conftest puts the root on sys.path)


def run_main(argv):
    """main(argv) in-process -> (exit code, stdout, stderr)."""
    return run_captured(script.main, [str(a) for a in argv])


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith('error:')]


def save_image(path, shape, seed, mode='RGB'):
    """Blocks of colour plus noise, so that the network's labels vary."""
    rng = np.random.RandomState(seed)
    h, w = shape
    blocks = rng.randint(0, 256, (4, 4, 3))
    img = blocks[np.arange(h) * 4 // h][:, np.arange(w) * 4 // w]
    img = np.clip(img + rng.randint(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
    pil = Image.fromarray(img)
    if mode == 'L':
        pil = pil.convert('L')
    pil.save(str(path), quality=95) if str(path).endswith('.jpg') else pil.save(str(path))
    return str(path)


def read_rgb(path):
    return np.asarray(Image.open(path).convert('RGB'))


@pytest.fixture(scope='module')
def ckpt(module_dir):
    return make_checkpoint(str(module_dir('ckpt')), num_classes=NC, seed=0,
                           aspp_std=1.0)


def link_checkpoint_with_record(prefix, directory, record):
    """The same weights under another prefix (symlinks), with a provenance record."""
    os.makedirs(directory, exist_ok=True)
    src_dir, name = os.path.split(prefix)
    for f in os.listdir(src_dir):
        if f.startswith(name + '.'):
            os.symlink(os.path.join(src_dir, f), os.path.join(directory, f))
    linked = os.path.join(directory, name)
    with open(linked + '.json', 'w') as f:
        json.dump(record, f)
    return linked


@pytest.fixture(scope='module')
def inputs(module_dir):
    """Explicit files (JPEG, PNG, greyscale, odd and even sizes), a directory with a corrupt
    file, and a list file. Returns (argv paths, {stem: (h, w)} of the good images, data_dir)."""
    root = module_dir('inputs')
    files = [save_image(root / 'odd.jpg', (41, 57), 1),
             save_image(root / 'even.png', (48, 64), 2),
             save_image(root / 'grey.png', (45, 38), 3, mode='L'),
             save_image(root / 'greyjpeg.jpg', (39, 50), 4, mode='L')]
    directory = root / 'dir'
    directory.mkdir()
    save_image(directory / 'd1.png', (44, 31), 5)
    (directory / 'd2_bad.jpg').write_bytes(b'this is not a JPEG')
    save_image(directory / 'd3.jpg', (30, 47), 6)
    (directory / 'notes.md').write_text('not an image, skipped')
    data = root / 'data'
    list_path = make_dataset(str(data), num_images=2, sizes=((40, 50), (37, 41)), prefix='lst')
    shapes = {'odd': (41, 57), 'even': (48, 64), 'grey': (45, 38), 'greyjpeg': (39, 50),
              'd1': (44, 31), 'd3': (30, 47), 'lst000': (40, 50), 'lst001': (37, 41)}
    return files + [str(directory), list_path], shapes, str(data)


@pytest.fixture(scope='module')
def run1(module_dir, ckpt, inputs):
    """One in-process run on every input with every output; the checkpoint has a provenance
    record giving the class count (no --num-classes)."""
    paths, _, data_dir = inputs
    prefix = link_checkpoint_with_record(
        ckpt, str(module_dir('prov')),
        {'num_classes': NC, 'image_mean': list(IMG_MEAN_BGR), 'created_by': 'test',
         'class_names': ['bg', 'one', 'two', 'three']})
    out = str(module_dir('out1'))
    code, stdout, stderr = run_main(paths + [prefix, '--data-dir', data_dir, '--save-dir', out,
                                             '--save-labels', '--overlay', '--save-probs',
                                             '--threads', 2])
    return code, out, stdout, stderr, prefix


def check_mask_labels_probs(out, stem, shape, colours=None):
    """Reads back <stem>_mask.png, <stem>.png (indices) and _probs.npy; returns labels and
    probs. colours: the [NC][R, G, B] class colours expected (default: VOC's)."""
    label_img = Image.open(os.path.join(out, stem + '.png'))
    assert label_img.mode == 'P' and label_img.size == (shape[1], shape[0])
    palette = label_img.getpalette()
    voc = voc_palette_flat()
    expected = voc if colours is None else sum(colours, []) + voc[3 * NC:]
    assert len(palette) >= 3 * NC and palette == expected[:len(palette)]
    labels = np.asarray(label_img)
    assert labels.max() < NC
    mask = Image.open(os.path.join(out, stem + '_mask.png'))
    assert mask.mode == 'RGB' and mask.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(mask), colourise(labels, NC) if colours is None
                                  else np.array(colours, np.uint8)[labels])
    probs = np.load(os.path.join(out, stem + '_probs.npy'))
    assert probs.dtype == np.float16 and probs.shape == shape + (NC,)
    np.testing.assert_allclose(probs.astype(np.float32).sum(-1), 1.0, atol=1e-2)
    # The label is the argmax: one of the maxima (float16 can round near-ties together),
    # and the first of them almost everywhere.
    chosen = np.take_along_axis(probs, labels[..., None].astype(np.int64), -1)[..., 0]
    np.testing.assert_array_equal(chosen, probs.max(-1))
    assert (probs.argmax(-1) == labels).mean() > 0.99
    return labels, probs


def test_outputs_read_back(run1, inputs):
    code, out, stdout, stderr, _ = run1
    paths, shapes, data_dir = inputs
    assert code == 1, stderr   # the corrupt file
    seen = set()
    image_paths = {os.path.splitext(os.path.basename(p))[0]: p for p in paths[:4]}
    image_paths.update(d1=os.path.join(paths[4], 'd1.png'), d3=os.path.join(paths[4], 'd3.jpg'),
                       lst000=os.path.join(data_dir, 'images', 'lst000.jpg'),
                       lst001=os.path.join(data_dir, 'images', 'lst001.jpg'))
    for stem, shape in shapes.items():
        rgb = read_rgb(image_paths[stem])
        assert rgb.shape[:2] == shape
        labels, _ = check_mask_labels_probs(out, stem, shape)
        seen.update(np.unique(labels).tolist())
        overlay = Image.open(os.path.join(out, stem + '_overlay.jpg'))
        assert overlay.format == 'JPEG' and overlay.size == (shape[1], shape[0])
        blend = 0.5 * rgb + 0.5 * colourise(labels, NC)
        got = np.asarray(overlay.convert('RGB')).astype(np.float64)
        # JPEG (quality 90) of pixel-wise varying masks: a few grey levels of error on
        # average, far below the distance to the image without the mask.
        assert np.abs(got - blend).mean() < 12
        assert np.abs(got - blend).mean() < 0.5 * np.abs(got - rgb).mean()
    assert len(seen) > 1   # the predictions vary (aspp_std=1.0)
    assert sorted(os.listdir(out)) == sorted(
        stem + s for stem in shapes
        for s in ('_mask.png', '.png', '_overlay.jpg', '_probs.npy'))
    assert 'first mask after' in stdout and '8 mask(s) written' in stdout
    assert 'img/s' in stderr and 'inference 9/9' in stderr


def test_corrupt_file_reported_once_and_counted(run1):
    code, _, _, stderr, _ = run1
    assert code == 1
    errors = error_lines(stderr)
    naming = [line for line in stderr.splitlines() if 'd2_bad.jpg' in line]
    assert len(naming) == 1 and naming[0].startswith('error:'), stderr
    assert len(errors) == 2 and '1 of 9 image(s) failed' in errors[-1], stderr


def test_provenance_record_values_used_and_reported(run1):
    _, _, stdout, _, prefix = run1
    lines = [line for line in stdout.splitlines() if 'provenance record' in line]
    assert len(lines) == 1, stdout
    assert prefix + '.json' in lines[0]
    assert lines[0].startswith('restored %s: %d classes (provenance record)' % (prefix, NC))
    assert 'image mean B,G,R 104.007,116.669,122.679 (provenance record)' in lines[0]
    assert 'bg, one, two, three' in lines[0]


COLOURS = [[10, 200, 30], [250, 5, 120], [40, 90, 250], [200, 200, 0]]   # none VOC's
SERVER_IDS = [3, 14, 15, 92]


def test_cli_subprocess_with_crf(tmp_path, ckpt):
    # The data (a "test" split of image-only lines), class count, names, colours and server
    # ids from a dataset descriptor alone.
    save_image(tmp_path / 'photo.jpg', (33, 40), 7)
    (tmp_path / 'test.txt').write_text('/photo.jpg\n')
    dataset = make_descriptor(tmp_path, tmp_path, {'test': str(tmp_path / 'test.txt')},
                              names=('bg', 'one', 'two', 'three'), palette=COLOURS,
                              server_ids=SERVER_IDS)
    out, ids = tmp_path / 'out', tmp_path / 'ids'
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'inference.py'),
                             '--dataset', dataset, '--split', 'test', ckpt,
                             '--save-dir', str(out), '--crf', '--save-server-ids', str(ids),
                             '--crf-iterations', '3', '--save-labels', '--save-probs'],
                            cwd=str(tmp_path), env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(str(out))) == ['photo.png', 'photo_mask.png', 'photo_probs.npy']
    # The CRF's probabilities; the masks in the descriptor's colours.
    labels, _ = check_mask_labels_probs(str(out), 'photo', (33, 40), COLOURS)
    assert os.listdir(str(ids)) == ['photo.png']
    server = Image.open(str(ids / 'photo.png'))
    assert server.mode == 'L'
    np.testing.assert_array_equal(np.asarray(server), np.array(SERVER_IDS)[labels])
    assert '4 classes (--dataset %s)' % dataset in result.stdout
    assert 'class names: --dataset %s (bg, one, two, three)' % dataset in result.stdout
    assert 'CRF' in result.stdout and 'first mask after' in result.stdout
    assert not error_lines(result.stderr)


EAGER_LOADER = r'''
import sys
import numpy as np
import tensorflow as tf
from PIL import Image
assert tf.executing_eagerly()
model = tf.saved_model.load(sys.argv[1])
segment = model.signatures['serving_default']
rgb = np.asarray(Image.open(sys.argv[2]).convert('RGB'))
out = segment(image=tf.constant(rgb))
assert out['labels'].dtype == tf.int32 and out['probabilities'].dtype == tf.float32
np.savez(sys.argv[3], labels=out['labels'].numpy(), probs=out['probabilities'].numpy())
'''


def test_savedmodel_export_loads_in_eager_tf2(tmp_path, ckpt, inputs, run1):
    export_dir = str(tmp_path / 'savedmodel')
    code, stdout, stderr = run_main(['--export-savedmodel', export_dir, ckpt,
                                     '--num-classes', NC])
    assert code == 0, stderr
    assert 'SavedModel written to' in stdout
    with open(os.path.join(export_dir, 'assets.extra', 'deeplab.json')) as f:
        settings = json.load(f)
    assert settings['num_classes'] == NC and settings['scales'] == [1.0]

    loader = tmp_path / 'load.py'
    loader.write_text(EAGER_LOADER)
    result_path = str(tmp_path / 'result.npz')
    image = inputs[0][0]   # odd.jpg, odd-sized
    result = subprocess.run([sys.executable, str(loader), export_dir, image, result_path],
                            cwd=str(tmp_path), env=ENV, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.load(result_path)
    out = run1[1]
    labels = np.asarray(Image.open(os.path.join(out, 'odd.png')))
    probs = np.load(os.path.join(out, 'odd_probs.npy')).astype(np.float32)
    assert got['labels'].shape == labels.shape == (41, 57)
    np.testing.assert_allclose(got['probs'], probs, atol=2e-3)
    differ = got['labels'] != labels
    if differ.any():   # only at exact near-ties (thread-order rounding), never expected
        top2 = np.sort(got['probs'], axis=-1)[..., -2:]
        assert (top2[..., 1] - top2[..., 0])[differ].max() < 1e-4
    assert differ.sum() == 0

    # A second export into the same (now non-empty) directory is refused before any work.
    code, _, stderr = run_main(['--export-savedmodel', export_dir, ckpt, '--num-classes', NC])
    assert code == 2 and len(error_lines(stderr)) == 1 and 'not empty' in stderr


def expect_exit_2(argv, *fragments):
    code, stdout, stderr = run_main(argv)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith('error:'), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_colliding_output_names_refused_before_work(tmp_path, ckpt):
    a, b = tmp_path / 'a', tmp_path / 'b'
    a.mkdir()
    b.mkdir()
    pa = save_image(a / 'same.jpg', (20, 20), 0)
    pb = save_image(b / 'same.png', (20, 20), 1)
    out = tmp_path / 'out'
    expect_exit_2([pa, pb, ckpt, '--num-classes', NC, '--save-dir', out],
                  pa, pb, 'same_mask.png')
    expect_exit_2([a, pa, ckpt, '--num-classes', NC, '--save-dir', out], 'collide')
    assert not out.exists()
    # --save-labels writes <stem>.png: not over an input PNG in --save-dir.
    expect_exit_2([pb, ckpt, '--num-classes', NC, '--save-dir', b, '--save-labels'],
                  pb, 'overwrite')


def test_class_count_mismatch(tmp_path, ckpt, inputs):
    expect_exit_2([inputs[0][0], ckpt, '--save-dir', tmp_path],   # no record: default 21
                  'for %d classes' % NC, '21')
    expect_exit_2([inputs[0][0], ckpt, '--num-classes', 7, '--save-dir', tmp_path],
                  'for %d classes' % NC, '--num-classes is 7')
    # With a record of the right count, a contradicting flag names the checkpoint's count.
    recorded = link_checkpoint_with_record(ckpt, str(tmp_path / 'rec'), {'num_classes': NC})
    expect_exit_2([inputs[0][0], recorded, '--num-classes', 7, '--save-dir', tmp_path],
                  recorded, 'for %d classes' % NC, '--num-classes is 7')


def test_flag_fitting_the_variables_overrides_a_wrong_record(tmp_path, ckpt):
    # The record says 21 classes but the variables have NC: --num-classes NC is used, with
    # the contradiction named once.
    wrong = link_checkpoint_with_record(ckpt, str(tmp_path / 'wrong'), {'num_classes': 21})
    img = save_image(tmp_path / 'small.png', (21, 26), 8)
    code, stdout, stderr = run_main([img, wrong, '--num-classes', NC,
                                     '--save-dir', tmp_path / 'out'])
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith('warning:')]
    assert warnings == ["warning: --num-classes %d contradicts the checkpoint's record (21); "
                        "using %d" % (NC, NC)]
    assert 'restored %s: %d classes (--num-classes)' % (wrong, NC) in stdout
    assert os.listdir(str(tmp_path / 'out')) == ['small_mask.png']


def test_missing_checkpoint_image_and_listed_image(tmp_path, ckpt, inputs):
    missing = str(tmp_path / 'nothing' / 'model.ckpt')
    expect_exit_2([inputs[0][0], missing, '--save-dir', tmp_path], missing, 'checkpoint not found')
    expect_exit_2([str(tmp_path / 'absent.jpg'), ckpt, '--save-dir', tmp_path],
                  'absent.jpg', 'not found')
    list_path = tmp_path / 'list.txt'
    list_path.write_text('/there.jpg\n/gone.jpg\n')
    save_image(tmp_path / 'there.jpg', (20, 20), 0)
    expect_exit_2([list_path, ckpt, '--data-dir', tmp_path, '--save-dir', tmp_path / 'o'],
                  'gone.jpg', 'missing')


def test_images_needed_without_export(ckpt):
    code, _, stderr = run_main([ckpt])
    assert code == 2 and 'MODEL_WEIGHTS' in stderr



def test_exif_orientation_applied_outputs_as_displayed(tmp_path, ckpt):
    """A phone photo stored 30x52 (h x w) with EXIF orientation 6 (displayed turned 90 degrees
    clockwise, 52x30): one line says so, and the mask, labels and overlay have the displayed
    size and follow the displayed pixels. Evaluation's reader keeps the stored pixels."""
    from deeplab_resnet.data import imageio
    stored = np.asarray(Image.open(save_image(tmp_path / 'plain.png', (30, 52), 7)))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = str(tmp_path / 'photo.png')
    Image.fromarray(stored).save(photo, exif=exif.tobytes())
    displayed = np.rot90(stored, k=-1)   # orientation 6: 90 degrees clockwise
    assert displayed.shape == (52, 30, 3) and displayed[0, -1].tolist() == stored[0, 0].tolist()
    np.testing.assert_array_equal(imageio.read_image(photo), stored)
    out = tmp_path / 'out'
    code, stdout, stderr = run_main([photo, ckpt, '--num-classes', NC, '--save-dir', out,
                                     '--save-labels', '--overlay', '--threads', 2])
    assert code == 0, stderr
    lines = [l for l in stdout.splitlines() if 'EXIF' in l]
    assert lines == ['%s: EXIF orientation 6 applied; every input is segmented and written as '
                     'viewers display it' % photo], stdout
    labels = np.asarray(Image.open(str(out / 'photo.png')))
    assert labels.shape == (52, 30)
    mask = np.asarray(Image.open(str(out / 'photo_mask.png')))
    np.testing.assert_array_equal(mask, colourise(labels, NC))
    overlay = np.asarray(Image.open(str(out / 'photo_overlay.jpg')).convert('RGB'))
    blend = 0.5 * displayed + 0.5 * colourise(labels, NC)
    assert np.abs(overlay - blend).mean() < 12
    assert np.abs(overlay - blend).mean() < 0.5 * np.abs(
        overlay - (0.5 * np.rot90(displayed, 2) + 0.5 * colourise(labels, NC))).mean()
