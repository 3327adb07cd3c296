"""optim's dynamic loss scaling (--precision float16) on a tiny float16 graph: the update
skipped and the scale halved on an overflow, the weights and optimiser state then unchanged,
the scale doubled after N finite updates, the accumulated gradient checked before the update,
and the replicas of a strategy agreeing. Expected values are written out by hand / in NumPy."""
import numpy as np
import tensorflow as tf

from deeplab_resnet.network.model import variable_name
from deeplab_resnet.training import optim

tf1 = tf.compat.v1

LR, MOMENTUM = 0.1, 0.9
NAME = 'res2a_branch2a/weights'   # a backbone kernel: learning-rate multiplier 1
FP16_MAX = 65504.0


def _graph(initial_scale, growth_interval, k=1, strategy=None):
    """loss = sum(float16(w) * x), float32 w of 3 values, x fed in float16: d loss / d w = x,
    and the float16 gradient of loss x S is S x, which overflows when |S x| > 65504.
    Returns (x placeholder, ops, w, momentum slot getter, loss_scale)."""
    x = tf1.placeholder(tf.float16, [3])
    state = {}

    def replica(x):
        w = tf1.get_variable(NAME, [3], initializer=tf1.ones_initializer())
        loss = tf.cast(tf.reduce_sum(tf.cast(w, tf.float16) * x), tf.float32)
        scale = optim.dynamic_loss_scale(initial_scale, growth_interval)
        ops = optim.build_train_ops(loss, [w], LR, MOMENTUM, 10 ** 6, 0.0, k, update_ops=[],
                                    loss_scale=scale)
        state.update(w=w, scale=scale)
        return ops.apply if k == 1 else (ops.accumulate, ops.apply)

    if strategy is None:
        tf1.train.get_or_create_global_step()
        return x, replica(x), state
    with strategy.scope():
        tf1.train.get_or_create_global_step()
        ops = strategy.extended.call_for_each_replica(replica, args=(x,))
        return x, strategy.group(ops), state


def _read(sess, state):
    slot = [v for v in tf1.global_variables() if variable_name(v) == NAME + '/Momentum']
    return dict(zip(('w', 'slot', 'scale', 'count', 'step'), sess.run(
        [state['w'], slot[0] if slot else tf.constant(0.0), state['scale'].scale,
         state['scale'].finite_updates, tf1.train.get_global_step()])))


def test_overflow_skips_the_update_and_halves_the_scale():
    """S = 2^17: the gradient 2^17 x (x = 1, 2, 3) overflows float16 (> 65504): no change to
    w or the momentum, S -> 2^16, the step still counts. S = 2^16 overflows again (2^16 > 65504
    for x = 1 already) -> 2^15; then 2^15 x 3 = 98304 still overflows -> 2^14; at 2^14 the
    gradient is exact (powers of two), and the momentum update is applied."""
    x0 = np.array([1.0, 2.0, 3.0], np.float16)
    with tf.Graph().as_default():
        x, apply, state = _graph(2.0 ** 17, 1000)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            before = _read(sess, state)
            scales = []
            for _ in range(3):
                sess.run(apply, {x: x0})
                after = _read(sess, state)
                scales.append(after['scale'])
                np.testing.assert_array_equal(after['w'], before['w'])
            assert scales == [2.0 ** 16, 2.0 ** 15, 2.0 ** 14]
            assert after['step'] == 3 and after['count'] == 0
            sess.run(apply, {x: x0})
            final = _read(sess, state)
    # First applied update: momentum m = g = x; w = 1 - lr * x.
    np.testing.assert_allclose(final['w'], 1.0 - LR * x0.astype(np.float64), rtol=1e-6)
    np.testing.assert_allclose(final['slot'], x0, rtol=0)
    assert final['scale'] == 2.0 ** 14 and final['count'] == 1 and final['step'] == 4


def test_scale_doubles_after_n_finite_updates():
    """growth_interval 3 from S = 4: updates 1-2 count, the 3rd doubles S (8) and restarts the
    count; 2 more count to 2. Each update is the exact momentum step."""
    x0 = np.array([0.5, -1.0, 2.0], np.float16)
    with tf.Graph().as_default():
        x, apply, state = _graph(4.0, 3)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            seen = []
            for _ in range(5):
                sess.run(apply, {x: x0})
                r = _read(sess, state)
                seen.append((r['scale'], r['count']))
    assert seen == [(4.0, 1), (4.0, 2), (8.0, 0), (8.0, 1), (8.0, 2)]
    w, m = np.ones(3), np.zeros(3)
    for _ in range(5):
        m = MOMENTUM * m + x0
        w = w - LR * m
    np.testing.assert_allclose(r['w'], w, rtol=1e-5)


def test_accumulated_gradient_is_checked_before_the_update():
    """--grad-update-every 2: one micro-batch of the update overflows (S x = 16 x 8192 > 65504),
    the other does not: the update is skipped and S halves; the accumulators restart at zero,
    so the next update is the exact mean of its two micro-batches."""
    good = np.array([1.0, 2.0, 3.0], np.float16)
    bad = np.array([8192.0, 1.0, 1.0], np.float16)
    with tf.Graph().as_default():
        x, (accumulate, apply), state = _graph(16.0, 1000, k=2)
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            sess.run(accumulate, {x: good})
            sess.run(accumulate, {x: bad})
            sess.run(apply)
            skipped = _read(sess, state)
            other = np.array([-1.0, 0.5, 4.0], np.float16)
            sess.run(accumulate, {x: good})
            sess.run(accumulate, {x: other})
            sess.run(apply)
            applied = _read(sess, state)
    np.testing.assert_array_equal(skipped['w'], np.ones(3, np.float32))
    assert skipped['scale'] == 8.0 and skipped['step'] == 1
    mean = (good.astype(np.float64) + other) / 2
    np.testing.assert_allclose(applied['w'], 1.0 - LR * mean, rtol=1e-6)
    assert applied['scale'] == 8.0 and applied['count'] == 1 and applied['step'] == 2


def test_replicas_agree_to_skip_when_one_overflows():
    """2 replicas (logical CPUs of one Session) feeding the same x but different scales of
    it is not possible, so replica 1 differs by the device-dependent input: each replica's x
    is x_fed * (replica id + 1). With S = 2^14 and x = 2, replica 0's gradient 2^15 fits
    float16, replica 1's (2^16) does not: both skip. Then with x = 1 both fit: the update is
    the sum over replicas (1 + 2) x, the momentum step from it."""
    devices = ['/cpu:0', '/cpu:1']
    with tf.Graph().as_default():
        strategy = tf1.distribute.MirroredStrategy(devices)
        x = tf1.placeholder(tf.float16, [3])
        state = {}

        def replica():
            rid = tf.distribute.get_replica_context().replica_id_in_sync_group
            x_r = x * tf.cast(rid + 1, tf.float16)
            w = tf1.get_variable(NAME, [3], initializer=tf1.ones_initializer())
            loss = tf.cast(tf.reduce_sum(tf.cast(w, tf.float16) * x_r), tf.float32)
            scale = optim.dynamic_loss_scale(2.0 ** 14, 1000)
            ops = optim.build_train_ops(loss, [w], LR, MOMENTUM, 10 ** 6, 0.0, 1,
                                        update_ops=[], loss_scale=scale)
            state.update(w=w, scale=scale)
            return ops.apply

        with strategy.scope():
            tf1.train.get_or_create_global_step()
            apply = strategy.group(strategy.extended.call_for_each_replica(replica))
        config = tf1.ConfigProto()
        config.device_count['CPU'] = 2
        with tf1.Session(config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(apply, {x: np.full(3, 2.0, np.float16)})
            skipped = _read(sess, state)
            copies_after_skip = sess.run(strategy.experimental_local_results(state['w']))
            sess.run(apply, {x: np.ones(3, np.float16)})
            applied = _read(sess, state)
            copies = sess.run(strategy.experimental_local_results(state['w']))
    np.testing.assert_array_equal(skipped['w'], np.ones(3, np.float32))
    for copy in copies_after_skip:
        np.testing.assert_array_equal(copy, np.ones(3, np.float32))
    assert skipped['scale'] == 2.0 ** 13 and skipped['step'] == 1
    np.testing.assert_allclose(applied['w'], np.full(3, 1.0 - LR * 3.0), rtol=1e-6)
    np.testing.assert_array_equal(copies[0], copies[1])
    assert applied['scale'] == 2.0 ** 13 and applied['step'] == 2


def _save_snapshot(directory, with_loss_scale):
    """A one-update snapshot of the tiny graph, as the trainer writes it (a Saver of every
    global variable): with a loss scale that has halved once (with_loss_scale True), or of a run
    without loss scaling. Returns the prefix."""
    from deeplab_resnet.training import snapshots
    with tf.Graph().as_default():
        if with_loss_scale:
            x, apply, state = _graph(2.0 ** 17, 1000)   # overflows: S -> 2^16, w unchanged
        else:
            x = tf1.placeholder(tf.float16, [3])
            w = tf1.get_variable(NAME, [3], initializer=tf1.ones_initializer())
            loss = tf.cast(tf.reduce_sum(tf.cast(w, tf.float16) * x), tf.float32)
            apply = optim.build_train_ops(loss, [w], LR, MOMENTUM, 10 ** 6, 0.0,
                                          update_ops=[]).apply
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(apply, {x: np.array([1.0, 2.0, 3.0], np.float16)})
            snaps = snapshots.Snapshots(str(directory),
                                        tf1.train.Saver(tf1.global_variables()), keep=2)
            return snaps.save(sess, 1, {'step': 1})


def _resume(directory, prefix):
    from deeplab_resnet.training import snapshots
    lines = []
    with tf.Graph().as_default():
        x, apply, state = _graph(2.0 ** 15, 1000)
        saver = tf1.train.Saver(tf1.global_variables())
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            snapshots.resume(sess, saver, prefix, {'step': 1},
                             tf1.train.get_global_step(), 0, lines.append)
            return _read(sess, state), lines


def test_resume_restores_the_loss_scale(tmp_path):
    """The trainer's snapshot (every global variable) holds loss_scale/*: a resumed float16
    run continues with the halved scale, not the initial one."""
    prefix = _save_snapshot(tmp_path, True)
    state, lines = _resume(tmp_path, prefix)
    assert state['scale'] == 2.0 ** 16 and state['count'] == 0 and state['step'] == 1
    assert not any('loss scale' in line for line in lines)


def test_resume_of_a_run_without_loss_scale_starts_the_scale_afresh(tmp_path):
    """A snapshot of a float32 run resumed with --precision float16: everything else is
    restored (w after one momentum step, the step), the scale starts at its initial value, and
    one line says so."""
    prefix = _save_snapshot(tmp_path, False)
    state, lines = _resume(tmp_path, prefix)
    np.testing.assert_allclose(state['w'], 1.0 - LR * np.array([1.0, 2.0, 3.0]), rtol=1e-6)
    assert state['step'] == 1 and state['scale'] == 2.0 ** 15 and state['count'] == 0
    assert sum('has no loss scale' in line for line in lines) == 1
