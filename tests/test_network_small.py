"""The test/debug knob DEEPLAB_BLOCKS (a network with fewer blocks per stage, for tests where
the network's size is not the point): ResNet-101 unless set, loud when set, the original
names of the blocks it keeps, and its checkpoints are refused by a ResNet-101 in one line."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab_resnet.checkpoint import checkpoints
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.network import model
from helpers import SMALL_BLOCKS, num_convolutions, original_names

tf1 = tf.compat.v1


def test_blocks_come_from_the_variable_only_when_set(monkeypatch, capsys):
    monkeypatch.delenv('DEEPLAB_BLOCKS', raising=False)
    assert model.network_blocks() == (3, 4, 23, 3)
    monkeypatch.setenv('DEEPLAB_BLOCKS', '1,2,1,1')
    model._announced.discard((1, 2, 1, 1))
    assert model.network_blocks() == (1, 2, 1, 1)
    assert model.network_blocks() == (1, 2, 1, 1)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and 'DEEPLAB_BLOCKS=1,2,1,1' in err[0]   # once per process
    assert 'TEST/DEBUG' in err[0] and 'NOT ResNet-101' in err[0]
    for bad in ('1,1,1', '1,0,1,1', 'a,b,c,d'):
        monkeypatch.setenv('DEEPLAB_BLOCKS', bad)
        with pytest.raises(ValueError, match='DEEPLAB_BLOCKS=%s' % bad):
            model.network_blocks()


def test_small_network_keeps_the_original_names_and_sizes():
    """Built with blocks=SMALL_BLOCKS: exactly the original project's names of the blocks it
    keeps (conv1, res2a..res5a, the ASPP), and ResNet-101's logit size (33 -> 17 -> 9 -> 5:
    conv1 and pool1 stride 2, res3a stride 2, dilation elsewhere)."""
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.float32, [1, 33, 33, 3])
        net = model.DeepLabResNetModel({'data': images}, num_classes=21, blocks=SMALL_BLOCKS)
        names = {v.op.name for v in tf1.global_variables()}
        assert names == original_names(SMALL_BLOCKS) and len(names) == 93
        assert net.logits.shape.as_list() == [1, 5, 5, 21]
        kernels = [n for n in names if n.endswith('/weights') and not n.startswith('fc1')]
        assert len(kernels) == num_convolutions(SMALL_BLOCKS) == 17
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            out = sess.run(net.logits, {images: np.zeros((1, 33, 33, 3), np.float32)})
        assert np.isfinite(out).all()


def test_small_checkpoint_is_refused_by_resnet101_in_one_line(tmp_path):
    with tf.Graph().as_default():
        model.DeepLabResNetModel({'data': tf1.placeholder(tf.float32, [1, None, None, 3])},
                                 num_classes=3, blocks=SMALL_BLOCKS)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            prefix = tf1.train.Saver().save(sess, str(tmp_path / 'small.ckpt'),
                                            write_meta_graph=False)
    with tf.Graph().as_default():
        model.DeepLabResNetModel({'data': tf1.placeholder(tf.float32, [1, None, None, 3])},
                                 num_classes=3, blocks=(3, 4, 23, 3))
        with tf1.Session() as sess:
            with pytest.raises(InputError) as info:
                checkpoints.restore_variables(sess, prefix, checkpoints.model_variables())
    message = str(info.value)
    assert '\n' not in message and message.startswith(prefix + ':')
    assert '1,1,1,1 blocks per stage, the model has 3,4,23,3' in message
    assert 'DEEPLAB_BLOCKS' in message
