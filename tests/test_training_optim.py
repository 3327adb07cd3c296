"""optim.build_train_ops: Adam and momentum updates, learning-rate groups and accumulation,
against the update rules written out in NumPy."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab_resnet.training import optim

tf1 = tf.compat.v1

BASE_LR, NUM_STEPS, POWER, BETA1 = 0.1, 10, 0.9, 0.8
MULTS = (10.0, 20.0)
SHAPES = {'res2a_branch2a/weights': [3], 'fc1_voc12_c0/weights': [2],
          'fc1_voc12_c0/biases': [2]}
GROUP_MULT = {'res2a_branch2a/weights': 1.0, 'fc1_voc12_c0/weights': MULTS[0],
              'fc1_voc12_c0/biases': MULTS[1]}


def _lr(step):
    return BASE_LR * (1 - step / float(NUM_STEPS)) ** POWER


def _expected(optimizer, micro_batches, k, decay=0.0):
    """NumPy: the variables after len(micro_batches) / k updates of loss = sum(x * w)
    (so the gradient of a micro-batch is its x) plus decay * |w|^2 / 2 over the kernels
    ('.../weights', gradient decay * w), each update from the mean over k."""
    w = {n: np.ones(s, np.float64) for n, s in SHAPES.items()}
    m = {n: np.zeros(s) for n, s in SHAPES.items()}
    v = {n: np.zeros(s) for n, s in SHAPES.items()}
    for step in range(len(micro_batches) // k):
        for n in SHAPES:
            g = np.mean([mb[n] for mb in micro_batches[step * k:(step + 1) * k]], axis=0)
            if n.endswith('/weights'):
                g = g + decay * w[n]
            lr = _lr(step) * GROUP_MULT[n]
            if optimizer == 'momentum':
                m[n] = BETA1 * m[n] + g
                w[n] -= lr * m[n]
            else:
                t = step + 1
                m[n] = BETA1 * m[n] + (1 - BETA1) * g
                v[n] = 0.999 * v[n] + 0.001 * g * g
                lr_t = lr * np.sqrt(1 - 0.999 ** t) / (1 - BETA1 ** t)
                w[n] -= lr_t * m[n] / (np.sqrt(v[n]) + 1e-8)
    return w


@pytest.mark.parametrize('optimizer,k,decay', [('adam', 1, 0.0), ('adam', 2, 0.0),
                                               ('momentum', 2, 0.0), ('momentum', 1, 0.3),
                                               ('adam', 2, 0.3)])
def test_update_matches_numpy(optimizer, k, decay):
    rng = np.random.RandomState(3)
    micro_batches = [{n: rng.normal(0, 1, s) for n, s in SHAPES.items()} for _ in range(2 * k)]
    with tf.Graph().as_default():
        feeds = {n: tf1.placeholder(tf.float32, s) for n, s in SHAPES.items()}
        variables = [tf1.get_variable(n, s, initializer=tf1.ones_initializer())
                     for n, s in SHAPES.items()]
        loss = tf.add_n([tf.reduce_sum(feeds[v.op.name] * v) for v in variables])
        ops = optim.build_train_ops(loss, variables, BASE_LR, BETA1, NUM_STEPS, POWER,
                                    grad_update_every=k, aspp_mults=MULTS, update_ops=[],
                                    optimizer=optimizer, weight_decay=decay)
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            for i, mb in enumerate(micro_batches):
                fd = {feeds[n]: mb[n] for n in SHAPES}
                if k == 1:
                    sess.run(ops.apply, fd)
                else:
                    sess.run(ops.accumulate, fd)
                    if (i + 1) % k == 0:
                        sess.run(ops.apply)
            got = {v.op.name: sess.run(v) for v in variables}
            step = sess.run(tf1.train.get_global_step())
            slots = [v.op.name for v in tf1.global_variables()]
    assert step == 2
    want = _expected(optimizer, micro_batches, k, decay)
    for n in SHAPES:
        np.testing.assert_allclose(got[n], want[n], rtol=1e-5, atol=1e-6, err_msg=n)
    slot = 'Adam' if optimizer == 'adam' else 'Momentum'
    assert 'res2a_branch2a/weights/%s' % slot in slots


def test_unknown_optimizer_is_refused():
    with tf.Graph().as_default():
        w = tf1.get_variable('res2a_branch2a/weights', [2])
        with pytest.raises(ValueError, match='unknown optimizer'):
            optim.build_train_ops(tf.reduce_sum(w), [w], 0.1, 0.9, 10, 0.9, update_ops=[],
                                  optimizer='rmsprop')
