"""The network: variables, output sizes, Caffe semantics, sharing, batch norm, gradients."""
import os

import numpy as np
import pytest
import tensorflow as tf

import caffe_reference as ref
from deeplab_resnet.common.constants import BN_DECAY, BN_EPSILON
from deeplab_resnet.network import layers, model
from deeplab_resnet.network.model import DeepLabResNetModel
from deeplab_resnet.predict.predictor import restore_folded

tf1 = tf.compat.v1
DATA = os.path.join(os.path.dirname(__file__), 'data')


def original_variables():
    table = {}
    with open(os.path.join(DATA, 'original_variables.txt')) as f:
        for line in f:
            name, shape = line.split()
            table[name] = tuple(int(s) for s in shape.split(','))
    return table


@pytest.fixture(scope='module')
def net_session():
    """One 21-class network on a dynamic-size input, random weights with non-trivial batch
    norm statistics, shared by the tests below."""
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(3)
        images = tf1.placeholder(tf.float32, [1, None, None, 3])
        net = DeepLabResNetModel({'data': images}, is_training=False, num_classes=21)
        sess = tf1.Session(graph=graph)
        sess.run(tf1.global_variables_initializer())
        rng = np.random.RandomState(0)
        for v in tf1.global_variables():
            name, shape = v.op.name, v.shape.as_list()
            if name.endswith('moving_mean') or name.endswith('beta'):
                v.load(rng.uniform(-0.2, 0.2, shape).astype(np.float32), sess)
            elif name.endswith('moving_variance'):
                v.load(rng.uniform(0.5, 2.0, shape).astype(np.float32), sess)
            elif name.endswith('gamma'):
                v.load(rng.uniform(0.3, 1.0, shape).astype(np.float32), sess)
    yield sess, images, net
    sess.close()


def test_variables_match_the_original_project():
    assert dict(model.variable_shapes(21)) == original_variables()


def test_variables_follow_the_class_count():
    shapes = model.variable_shapes(5)
    assert len(shapes) == 528
    assert shapes['fc1_voc12_c3/weights'] == (3, 3, 2048, 5)
    assert shapes['fc1_voc12_c3/biases'] == (5,)


@pytest.mark.parametrize('h,w,expected', [
    (321, 321, (41, 41)), (375, 500, (48, 63)), (64, 96, (9, 13)), (65, 65, (9, 9))])
def test_output_sizes(net_session, h, w, expected):
    sess, images, net = net_session
    out = sess.run(net.layers['fc1_voc12'], {images: np.zeros((1, h, w, 3), np.float32)})
    assert out.shape == (1,) + expected + (21,)
    assert (model.output_size(h), model.output_size(w)) == expected


def test_layer_names(net_session):
    names = list(net_session[2].layers)
    for name in ['conv1', 'bn_conv1', 'pool1', 'res2a_branch1', 'bn2a_branch1', 'res2c_relu',
                 'res3b3_relu', 'res4b22_relu', 'res5c_relu', 'fc1_voc12_c0', 'fc1_voc12_c3',
                 'fc1_voc12']:
        assert name in names
    assert 'res3b4_relu' not in names and 'res4b23_relu' not in names


def _tf_value(sess, name):
    with sess.graph.as_default():
        return sess.run([v for v in tf1.global_variables() if v.op.name == name][0])


def _caffe_blobs(sess, conv, bn):
    """The TF variables of one conv + batch norm, as Caffe blobs (OIHW; BN factor 1)."""
    w = _tf_value(sess, conv + '/weights').transpose(3, 2, 0, 1)
    mean, var, gamma, beta = [_tf_value(sess, '%s/%s' % (bn, v)) for v in
                              ('moving_mean', 'moving_variance', 'gamma', 'beta')]
    return w, (mean, var, np.ones(1, np.float32)), (gamma, beta)


def _conv_bn(sess, x_chw, conv, bn, stride=1, pad=0, dilation=1, relu=True):
    w, bn_blobs, scale_blobs = _caffe_blobs(sess, conv, bn)
    y = ref.scale(ref.batch_norm(ref.convolution(x_chw, w, None, stride, pad, dilation),
                                 *bn_blobs), *scale_blobs)
    return ref.relu(y) if relu else y


@pytest.mark.parametrize('h,w', [(64, 96), (65, 71)])
def test_conv1_pool1_match_caffe(net_session, h, w):
    """Even and odd sizes: symmetric padding 3, ceil-mode pooling with padding 1."""
    sess, images, net = net_session
    image = np.random.RandomState(1).uniform(-100, 100, (h, w, 3)).astype(np.float32)
    got = sess.run(net.layers['pool1'], {images: image[None]})[0]
    x = _conv_bn(sess, image.transpose(2, 0, 1), 'conv1', 'bn_conv1', stride=2, pad=3)
    want = ref.max_pool(x, 3, 2, 1).transpose(1, 2, 0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-3 * np.abs(want).max())


def test_dilated_bottleneck_matches_caffe(net_session):
    """res4b1 (dilation 2) computed by NumPy Caffe ops from TF's own res4a_relu."""
    sess, images, net = net_session
    image = np.random.RandomState(2).uniform(-100, 100, (64, 96, 3)).astype(np.float32)
    x, got = sess.run([net.layers['res4a_relu'], net.layers['res4b1_relu']],
                      {images: image[None]})
    x = x[0].transpose(2, 0, 1)
    y = _conv_bn(sess, x, 'res4b1_branch2a', 'bn4b1_branch2a')
    y = _conv_bn(sess, y, 'res4b1_branch2b', 'bn4b1_branch2b', pad=2, dilation=2)
    y = _conv_bn(sess, y, 'res4b1_branch2c', 'bn4b1_branch2c', relu=False)
    want = ref.relu(x + y).transpose(1, 2, 0)
    np.testing.assert_allclose(got[0], want, atol=1e-4 * np.abs(want).max())


def test_pool_output_size_rule():
    assert layers.pool_output_size(161, 3, 2, 1) == 81
    assert layers.pool_output_size(5, 2, 2, 1) == 3   # Caffe drops the window at 6 >= 5 + 1
    for size in range(3, 40):
        for kernel, stride, pad in [(3, 2, 1), (2, 2, 1), (3, 2, 0), (3, 3, 1)]:
            assert layers.pool_output_size(size, kernel, stride, pad) == \
                ref.pooled_size(size, kernel, stride, pad)


@pytest.mark.parametrize('size,kernel,stride,pad', [(5, 2, 2, 1), (8, 3, 2, 1), (7, 3, 2, 0)])
def test_max_pool_ceil_matches_caffe(size, kernel, stride, pad):
    x = np.random.RandomState(size).normal(size=(1, size, size + 1, 2)).astype(np.float32)
    with tf.Graph().as_default(), tf1.Session() as sess:
        got = sess.run(layers.max_pool_ceil(tf.constant(x), kernel, stride, pad))[0]
    want = ref.max_pool(x[0].transpose(2, 0, 1), kernel, stride, pad).transpose(1, 2, 0)
    np.testing.assert_array_equal(got, want)


def test_second_and_third_towers_share_variables():
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.float32, [1, None, None, 3])
        with tf1.variable_scope('', reuse=False):
            DeepLabResNetModel({'data': images}, num_classes=21)
        count = len(tf1.global_variables())
        for _ in range(2):
            with tf1.variable_scope('', reuse=True):
                DeepLabResNetModel({'data': images}, num_classes=21)
        assert count == 528 and len(tf1.global_variables()) == 528


def test_original_checkpoint_restores(tmp_path):
    """A checkpoint with exactly the original project's 528 names restores into the model,
    value by value, with no missing or unexpected variable."""
    names = original_variables()
    rng = np.random.RandomState(0)
    values = {n: rng.standard_normal(s).astype(np.float32) for n, s in names.items()}
    prefix = str(tmp_path / 'model.ckpt-20000')
    with tf.Graph().as_default():
        vs = [tf1.Variable(values[n], name=n) for n in sorted(names)]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver(vs).save(sess, prefix, write_meta_graph=False)
    with tf.Graph().as_default():
        DeepLabResNetModel({'data': tf1.placeholder(tf.float32, [1, None, None, 3])})
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, prefix)   # every model variable, by name
            for v in tf1.global_variables():
                np.testing.assert_array_equal(sess.run(v), values[v.op.name])


def test_training_batch_norm_uses_batch_statistics_and_updates_moving_averages():
    rng = np.random.RandomState(0)
    x = rng.normal(3.0, 2.0, (2, 5, 6, 4)).astype(np.float32)
    with tf.Graph().as_default():
        y = layers.batch_norm(tf.constant(x), 'bn_test', is_training=True)
        updates = tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            out = sess.run(y)
            sess.run(updates)
            mean, var = _tf_value(sess, 'bn_test/moving_mean'), \
                _tf_value(sess, 'bn_test/moving_variance')
    m, v = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(out, (x - m) / np.sqrt(v + BN_EPSILON), atol=1e-4)
    np.testing.assert_allclose(mean, (1 - BN_DECAY) * m, rtol=1e-4)
    np.testing.assert_allclose(var, BN_DECAY * 1.0 + (1 - BN_DECAY) * v, rtol=1e-4)


def test_frozen_batch_norm_epsilon():
    x = np.random.RandomState(0).normal(size=(1, 3, 3, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = layers.batch_norm(tf.constant(x), 'bn_eps', is_training=False)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            variance = [v for v in tf1.global_variables()
                        if v.op.name == 'bn_eps/moving_variance'][0]
            variance.load(np.full(2, 1e-4, np.float32), sess)
            out = sess.run(y)
    np.testing.assert_allclose(out, x / np.sqrt(1e-4 + 1e-5), rtol=1e-4)


@pytest.mark.parametrize('dilation', [2, 4, 8])
def test_dilated_convolution_gradient(dilation):
    """The hand-written CPU gradient equals the space-to-batch formulation's (at rate 8 the
    outer taps miss the 7 columns entirely, as ASPP's rate 24 does on small maps)."""
    rng = np.random.RandomState(dilation)
    x = rng.normal(size=(2, 9, 7, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    dy = rng.normal(size=(2, 9, 7, 4)).astype(np.float32)
    with tf.Graph().as_default():
        xt, wt = tf.constant(x), tf.constant(w)
        y = layers.dilated_conv_same(xt, wt, dilation)
        y_ref = tf.nn.atrous_conv2d(xt, wt, dilation, padding='SAME')
        grads = tf.gradients(y, [xt, wt], grad_ys=dy)
        grads_ref = tf.gradients(y_ref, [xt, wt], grad_ys=dy)
        with tf1.Session() as sess:
            out, ref_out, g, g_ref = sess.run([y, y_ref, grads, grads_ref])
    np.testing.assert_allclose(out, ref_out, atol=1e-4)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_folded_batch_norm_gives_the_same_logits(net_session, tmp_path):
    """A network built with fold_batch_norm, restored from the same weights and folded, gives
    the logits of the unfolded one; a folded kernel is w * gamma / sqrt(var + eps)."""
    sess, images, net = net_session
    prefix = str(tmp_path / 'model.ckpt')
    with sess.graph.as_default():
        tf1.train.Saver().save(sess, prefix)
    x = np.random.RandomState(5).uniform(-100, 100, (1, 57, 43, 3)).astype(np.float32)
    want = sess.run(net.logits, {images: x})
    w, gamma, var = [_tf_value(sess, n) for n in ('res4b7_branch2b/weights',
                                                  'bn4b7_branch2b/gamma',
                                                  'bn4b7_branch2b/moving_variance')]
    with tf.Graph().as_default():
        folded_images = tf1.placeholder(tf.float32, [1, None, None, 3])
        folded = DeepLabResNetModel({'data': folded_images}, num_classes=21,
                                    fold_batch_norm=True)
        with tf1.Session() as folded_sess:
            restore_folded(folded_sess, prefix)
            got = folded_sess.run(folded.logits, {folded_images: x})
            kernel = _tf_value(folded_sess, 'res4b7_branch2b/weights')
    np.testing.assert_allclose(kernel, w * gamma / np.sqrt(var + BN_EPSILON), rtol=1e-5)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


def test_fold_batch_norm_is_for_inference_only():
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match='inference'):
            DeepLabResNetModel({'data': tf1.placeholder(tf.float32, [1, 33, 33, 3])},
                               is_training=True, fold_batch_norm=True)
