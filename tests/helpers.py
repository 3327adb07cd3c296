"""Small generated datasets and checkpoints for tests (no downloads)."""
import contextlib
import io
import os
import re

import numpy as np
from PIL import Image

from deeplab_resnet.data.imageio import write_index_png

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_dataset(root, num_images=4, sizes=((40, 50), (41, 37)), num_classes=3, seed=0,
                 list_name='train.txt', prefix='img'):
    """Writes JPEG images and palette index masks: a bright rectangle of class 1 and a dark
    disc of class 2 (if num_classes > 2) on noise, with a 1-px ignore border.
    Returns the list path; paths in the list start with '/' as VOC's do."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(root, 'images'), exist_ok=True)
    os.makedirs(os.path.join(root, 'labels'), exist_ok=True)
    lines = []
    for i in range(num_images):
        h, w = sizes[i % len(sizes)]
        img = rng.randint(60, 120, size=(h, w, 3)).astype(np.uint8)
        lab = np.zeros((h, w), np.uint8)
        y0, x0 = rng.randint(0, h // 2), rng.randint(0, w // 2)
        lab[y0:y0 + h // 3, x0:x0 + w // 3] = 1
        if num_classes > 2:
            yy, xx = np.mgrid[:h, :w]
            cy, cx = rng.randint(h // 4, 3 * h // 4), rng.randint(w // 4, 3 * w // 4)
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 < (min(h, w) // 5) ** 2] = 2
        img[lab == 1] = [230, 200, 40]
        img[lab == 2] = [20, 30, 160]
        lab[0, :] = 255
        name = '%s%03d' % (prefix, i)
        Image.fromarray(img).save(os.path.join(root, 'images', name + '.jpg'), quality=95)
        write_index_png(os.path.join(root, 'labels', name + '.png'), lab)
        lines.append('/images/%s.jpg /labels/%s.png' % (name, name))
    path = os.path.join(root, list_name)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def make_checkpoint(directory, num_classes=3, seed=0, aspp_std=None, class_names=None):
    """Saves a randomly initialised network (He init; ASPP std 0.01 unless aspp_std) as
    DIR/model.ckpt with a `checkpoint` state file; with class_names, a provenance record
    too (the class count and names, the default image mean). Returns the prefix."""
    import tensorflow as tf
    from deeplab_resnet.network.model import DeepLabResNetModel
    tf1 = tf.compat.v1
    os.makedirs(directory, exist_ok=True)
    with tf.Graph().as_default():
        tf1.set_random_seed(seed)
        DeepLabResNetModel({'data': tf1.placeholder(tf.float32, [1, None, None, 3])},
                           num_classes=num_classes)
        variables = tf1.global_variables()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            if aspp_std is not None:
                rng = np.random.RandomState(seed)
                for v in variables:
                    if v.op.name.startswith('fc1_voc12_c') and v.op.name.endswith('weights'):
                        v.load(rng.normal(0, aspp_std, v.shape.as_list()), sess)
            prefix = tf1.train.Saver(variables).save(
                sess, os.path.join(directory, 'model.ckpt'), write_meta_graph=False)
    if class_names is not None:
        from deeplab_resnet.checkpoint import provenance
        from deeplab_resnet.common.constants import IMG_MEAN_BGR
        provenance.write_record(prefix, {'num_classes': num_classes,
                                         'class_names': list(class_names),
                                         'image_mean': list(IMG_MEAN_BGR)})
    return prefix


def make_calibrated_checkpoint(directory, data_root, data_list, input_size, num_classes=3,
                               seed=0):
    """A random network whose batch-norm moving statistics are those of the list's images
    (one training-mode pass with decay 0), so that it is usable with frozen batch norm.
    Saves DIR/model.ckpt; returns the prefix."""
    import tensorflow as tf
    from deeplab_resnet.data.image_reader import ImageReader
    from deeplab_resnet.network.model import DeepLabResNetModel
    tf1 = tf.compat.v1
    os.makedirs(directory, exist_ok=True)
    with tf.Graph().as_default():
        tf1.set_random_seed(seed)
        reader = ImageReader(data_root, data_list, input_size, shuffle=False)
        images, _ = reader.dequeue(len(reader))
        net = DeepLabResNetModel({'data': images}, is_training=True, num_classes=num_classes,
                                 moving_stats_in_place=False, bn_decay=0.0)
        variables = tf1.global_variables()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(net.update_ops)
            return tf1.train.Saver(variables).save(
                sess, os.path.join(directory, 'model.ckpt'), write_meta_graph=False)


def read_until(proc, needle, timeout=300):
    """Reads a subprocess's stdout lines until one contains `needle`; returns them. Kills the
    process and fails with what it printed when `needle` does not come within `timeout` s."""
    import time
    lines, start = [], time.time()
    while time.time() - start < timeout:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    proc.kill()
    raise AssertionError('%r not seen in:\n%s' % (needle, ''.join(lines)))


# Colours no VOC class of a 3-class set has, so a mask drawn in them proves the palette used.
TOY_PALETTE = [[10, 200, 30], [250, 5, 120], [40, 90, 250]]
TOY_SERVER_IDS = [7, 24, 33]   # as Cityscapes' road, person, bicycle


def make_descriptor(directory, data_dir, splits, names=('bg', 'rect', 'disc'),
                    palette=TOY_PALETTE, server_ids=TOY_SERVER_IDS, img_mean=None):
    """Writes DIRECTORY/dataset.json for a make_dataset tree (splits: name -> list path).
    Returns the descriptor's path."""
    from deeplab_resnet.data import descriptor
    path = os.path.join(str(directory), 'dataset.json')
    descriptor.write(path, 'toy', str(data_dir), len(names), list(names), palette, splits,
                     server_ids=server_ids, img_mean=img_mean)
    return path


SMALL_BLOCKS = (1, 1, 1, 1)
"""Blocks per stage of the small test network: ResNet-101's stem, widths, strides, dilations,
ASPP and names (res2a.., res5a), one block per stage, about 10x cheaper to build and run."""


def original_names(blocks):
    """The original project's variable names (tests/data/original_variables.txt, 528 for
    ResNet-101) that a network with `blocks` blocks per stage has: Caffe's block suffixes
    a, b, c (short stages) or a, b1, b2, ... (long ones), the first `blocks[i]` of each."""
    def kept(block, count):
        if block == 'a':
            return True
        index = 'abc'.index(block) if block in ('b', 'c') else int(block[1:])
        return index < count
    names = set()
    with open(os.path.join(ROOT, 'tests', 'data', 'original_variables.txt')) as f:
        for line in f:
            if not line.strip():
                continue
            name = line.split()[0]
            match = re.match(r'(?:res|bn)(\d)([a-z]\d*)_branch', name)
            if match is None or kept(match.group(2), blocks[int(match.group(1)) - 2]):
                names.add(name)
    return names


def num_convolutions(blocks):
    """Convolutions without bias (each followed by a batch norm): conv1, 3 per block, and the
    projection shortcut (branch1) of each stage's first block. 104 for ResNet-101."""
    return 1 + 3 * sum(blocks) + 4


def expect_error_line(main, argv, capsys, *fragments):
    """main(argv) must exit with status 2 and one stderr line 'error: ...' holding every
    fragment (the small network's DEEPLAB_BLOCKS warning aside). Returns the line."""
    import pytest
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.strip() and not line.startswith('WARNING: DEEPLAB_BLOCKS')]
    assert len(err) == 1, err
    assert err[0].startswith('error: ')
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])
    return err[0]


def run_captured(fn, *args, **kwargs):
    """fn(*args) -> (result or SystemExit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result = fn(*args, **kwargs)
        except SystemExit as e:
            result = e.code
    return result, out.getvalue(), err.getvalue()
