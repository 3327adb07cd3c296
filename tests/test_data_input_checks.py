"""Input faults found before (or at) the work they would spoil: a list saved with a UTF-8
byte-order mark, a 0-byte or non-image file in a training list (headers read up front), label
values outside the classes (training stops at the batch holding one, naming the file), and
signals during start-up (one line, 130 / 143, at once)."""
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab_resnet.checkpoint import provenance
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data import datalist, imageio
from deeplab_resnet.data.image_reader import (ImageReader, input_error_from_op_error,
                                              out_of_range_in_mask)
from helpers import make_dataset, read_until

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def data(module_dir):
    root = str(module_dir('input_checks'))
    return root, make_dataset(root, num_images=4, sizes=((20, 24),), num_classes=3)


def test_list_with_byte_order_mark_reads_like_without(data, tmp_path):
    """Notepad's UTF-8 writes EF BB BF first: the first line is still its image, in the
    examples and in the resume digest alike (both equal to those of the plain list)."""
    root, lst = data
    text = open(lst, encoding='utf-8').read()
    bom = tmp_path / 'bom.txt'
    bom.write_bytes(b'\xef\xbb\xbf' + text.encode('utf-8'))
    first = text.split()[0]   # '/images/img000.jpg'
    examples = datalist.load_examples(str(bom), root)
    assert examples[0].image == os.path.join(root, first.lstrip('/'))
    assert provenance.listed_images(str(bom))[0] == first
    paths = sorted(line.split()[0] for line in text.splitlines())
    digest = hashlib.sha256('\n'.join(paths).encode('utf-8')).hexdigest()
    assert provenance.list_info(str(bom))['sha256'] == digest


@pytest.mark.parametrize('content, what', [(b'', 'image file is empty (0 bytes'),
                                           (b'<html>not found</html>',
                                            'cannot read image header (UnidentifiedImageError')])
def test_training_list_headers_checked_up_front(data, tmp_path, content, what):
    """A 0-byte or non-image file among the listed images: one line naming it and its list
    line when the training reader is made, before any graph or step."""
    root, lst = data
    bad = os.path.join(root, 'images', 'bad%d.jpg' % len(content))
    with open(bad, 'wb') as f:
        f.write(content)
    listed = tmp_path / 'list.txt'
    listed.write_text(open(lst).read() + '/images/%s /labels/img000.png\n'
                      % os.path.basename(bad))
    with pytest.raises(InputError) as info:
        ImageReader(root, str(listed), (17, 17))
    message = str(info.value)
    assert message.startswith(bad + ': ' + what), message
    assert message.endswith('%s line 5)' % listed), message
    ImageReader(root, str(listed), None)   # evaluation reads its own headers (labels.py)


def test_out_of_range_values_of_a_mask():
    mask = np.array([[0, 1, 2, 255], [7, 7, 21, 0]], np.uint8)
    assert out_of_range_in_mask(mask, 22, 255) == []   # 0..21 and 255
    assert out_of_range_in_mask(mask, 21, 255) == [21]
    assert out_of_range_in_mask(mask, 3, 255) == [7, 21]
    assert out_of_range_in_mask(mask, 3, 0) == [7, 21, 255]


def test_training_stops_at_the_batch_holding_a_bad_label(data, tmp_path):
    """List order (no shuffle), batch 1: the third mask holds 7 with 3 classes. Making the
    reader reads no mask; batches 0 and 1 come; batch 2 fails naming that mask;
    num_classes=None (--ignore-out-of-range) passes the value through to the loss."""
    root, lst = data
    lines = open(lst).read().splitlines()
    third_label = os.path.join(root, lines[2].split()[1].lstrip('/'))
    mask = imageio.read_label(third_label).copy()
    mask[3:6, 4:9] = 7
    imageio.write_index_png(third_label, mask)
    try:
        with tf.Graph().as_default():
            reader = ImageReader(root, lst, (17, 17), shuffle=False, num_classes=3)
            checked = reader.dequeue(1)
            unchecked = ImageReader(root, lst, (30, 30), shuffle=False).dequeue(1)
            with tf1.Session() as sess:
                for _ in range(2):
                    sess.run(checked)
                with pytest.raises(tf.errors.OpError) as info:
                    sess.run(checked)
                values = [np.unique(sess.run(unchecked)[1]).tolist() for _ in range(3)]
        error = input_error_from_op_error(info.value)
        assert str(error) == ('%s: label values 7 are neither classes 0..2 nor the ignore label '
                              '255 (pass --ignore-out-of-range to ignore them, or check '
                              '--num-classes)' % third_label)
        assert 7 in values[2] and 7 not in values[0] + values[1]
    finally:
        mask[mask == 7] = 0
        imageio.write_index_png(third_label, mask)


BLOCKED_IN_CPP = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    from deeplab_resnet.training.stopping import StopFlag
    import tensorflow as tf
    tf1 = tf.compat.v1
    with tf.Graph().as_default():
        queue = tf1.FIFOQueue(1, tf.float32)
        with StopFlag(), tf1.Session() as sess:
            print('blocked in C++', flush=True)
            sess.run(queue.dequeue())   # never returns; the Python handler never runs
''')


def test_signal_while_blocked_in_cpp_during_start_up(tmp_path):
    """The main thread blocked in a Session.run (no Python handler can run): the watcher woken
    by the signal ends the process STARTUP_GRACE_S later with 143 and the one line."""
    from deeplab_resnet.training.stopping import STARTUP_GRACE_S
    proc = subprocess.Popen([sys.executable, '-c', BLOCKED_IN_CPP, ROOT], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = read_until(proc, 'blocked in C++', timeout=120)
    time.sleep(0.5)   # into the dequeue
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    seconds = time.time() - t0
    assert proc.returncode == 143, ''.join(lines) + out
    assert STARTUP_GRACE_S <= seconds < 30
    assert [l for l in out.splitlines() if l.strip()] == [
        'SIGTERM during start-up: nothing trained yet, nothing to save; exiting']
