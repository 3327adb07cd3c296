"""Caffe-exact layers built from `tf.compat.v1` variables and `tf.nn` ops (NHWC).

Caffe pads symmetrically and pools in ceil mode; TensorFlow's 'SAME' pads asymmetrically on
even sizes when the stride is 2. Strided layers here therefore pad explicitly and use 'VALID';
stride-1 convolutions with padding = dilation * (k - 1) / 2 are the one case where 'SAME' is
exactly Caffe's padding, and use it.
"""
import zlib

import tensorflow as tf

from deeplab_resnet.common.constants import BN_DECAY, BN_EPSILON
from deeplab_resnet.runtime.distribute import sum_over_replicas

tf1 = tf.compat.v1

BN_VARIABLES = ('beta', 'gamma', 'moving_mean', 'moving_variance')


def he_initializer(seed=None):
    """He (MSRA) normal initialiser, fan-in, as Caffe's 'msra' filler."""
    return tf1.variance_scaling_initializer(scale=2.0, mode='fan_in',
                                            distribution='untruncated_normal', seed=seed)


def name_seed(name):
    """An op seed from a variable's name: with the graph seed (tf1.set_random_seed) it fixes
    the initial value whatever else the graph holds (replicas, iterators, towers)."""
    return zlib.crc32(name.encode()) & 0x7fffffff


def conv_output_size(size, kernel, stride, pad, dilation=1):
    """Caffe convolution output size: floor((size + 2 pad - dilated_kernel) / stride) + 1."""
    dilated = dilation * (kernel - 1) + 1
    return (size + 2 * pad - dilated) // stride + 1


def pool_output_size(size, kernel, stride, pad):
    """Caffe ceil-mode pooling output size, with Caffe's rule that drops a last window
    starting inside the right/bottom padding."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _gpu_present():
    return bool(tf.config.list_physical_devices('GPU'))


def dilated_conv_same(x, w, dilation):
    """Stride-1 dilated convolution with 'SAME' padding (= Caffe's symmetric padding for an
    odd kernel): [N, H, W, C_in] x [k, k, C_in, C_out] -> [N, H, W, C_out].

    The forward pass is tf.nn.conv2d(dilations=...) (oneDNN's fast atrous kernels). TensorFlow
    has no CPU kernels for the gradients of a dilated convolution, so without a GPU they are
    written out here, exactly:
      dx = the same dilated convolution of dy with the filter flipped in space and with its
           in/out channels swapped;
      dw[i, j] = sum over pixels of x[shifted by (i d - pad, j d - pad)]^T dy  (k^2 matmuls).
    (Space-to-batch, tf.nn.atrous_conv2d, is exact too but pads small maps to a multiple of
    the rate: at rate 24 on a 41x41 map it does several times the work.)
    """
    if dilation == 1 or _gpu_present():
        return tf.nn.conv2d(x, w, strides=1, padding='SAME', dilations=dilation)

    @tf.custom_gradient
    def conv(x, w):
        y = tf.nn.conv2d(x, w, strides=1, padding='SAME', dilations=dilation)

        def grad(dy):
            with tf.control_dependencies([dy]):   # made when needed, not at the forward pass
                w_t = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])
            dx = tf.nn.conv2d(dy, w_t, strides=1, padding='SAME', dilations=dilation)
            return dx, _dilated_filter_grad(x, dy, w.get_shape().as_list(), dilation)

        return y, grad

    return conv(x, tf.convert_to_tensor(w))


def _overlap(offset):
    """The slices of x's and of dy's rows (or columns) that tap offset `offset` pairs:
    dy[r] meets x[r + offset] where both exist (x is zero outside its own rows, the 'SAME'
    padding). Empty when |offset| >= the size."""
    if offset > 0:
        return slice(offset, None), slice(None, -offset)
    if offset < 0:
        return slice(None, offset), slice(-offset, None)
    return slice(None), slice(None)


def _dilated_filter_grad(x, dy, w_shape, dilation):
    """d loss / d w of dilated_conv_same: [k, k, C_in, C_out] float32.

    dw[i, j] = sum over output pixels p of x[p + (i d - pad, j d - pad)]^T dy[p], x zero
    outside the image: one matmul per tap over the rows and columns where the shifted x and
    dy overlap (no padded copy of x, and at a rate near the map's size, far less work: rate
    24 on a 41 x 41 map overlaps 17 rows).

    The slices of x depend on x alone, so without a control dependency the executor would make
    them during the forward pass, as soon as x exists, and hold them until the backward pass
    reaches this layer (measured: about 2 GB of the 4.6 GB peak of a 3-tower step at 321x321,
    when they were k^2 shifted copies of the padded input). Tied to dy, and each to the
    previous tap, they are made one at a time when the gradient is computed.
    """
    k, _, c_in, c_out = w_shape
    pad = dilation * (k - 1) // 2
    taps = []
    for i in range(k):
        x_rows, dy_rows = _overlap(i * dilation - pad)
        for j in range(k):
            x_cols, dy_cols = _overlap(j * dilation - pad)
            with tf.control_dependencies(taps[-1:] or [dy]):
                x_tap = tf.reshape(x[:, x_rows, x_cols, :], [-1, c_in])
            dy_tap = tf.reshape(dy[:, dy_rows, dy_cols, :], [-1, c_out])
            taps.append(tf.matmul(x_tap, dy_tap, transpose_a=True))
    return tf.reshape(tf.stack(taps), [k, k, c_in, c_out])


def conv2d(x, name, kernel, filters, stride=1, pad=0, dilation=1, biased=False,
           trainable=True, weights_std=None):
    """Caffe convolution: symmetric padding `pad`, then stride / dilation.

    Args:
      x: [N, H, W, C_in] float32.
    Creates `<name>/weights` [k, k, C_in, filters] (HWIO), He-initialised or normal with
    `weights_std`, and, if biased, `<name>/biases` (zeros).
    Returns: [N, H', W', filters] float32, H' = conv_output_size(H, kernel, stride, pad, dilation).
    """
    c_in = x.get_shape().as_list()[-1]
    with tf1.variable_scope(name):
        seed = name_seed(tf1.get_variable_scope().name + '/weights')
        init = (he_initializer(seed) if weights_std is None
                else tf1.random_normal_initializer(stddev=weights_std, seed=seed))
        w = tf1.get_variable('weights', [kernel, kernel, c_in, filters],
                             initializer=init, trainable=trainable)
        b = (tf1.get_variable('biases', [filters], initializer=tf1.zeros_initializer(),
                              trainable=trainable) if biased else None)
    if stride == 1 and 2 * pad == dilation * (kernel - 1):
        y = dilated_conv_same(x, w, dilation)
    else:
        if pad:
            x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        y = tf.nn.conv2d(x, w, strides=stride, padding='VALID', dilations=dilation)
    if b is not None:
        y = tf.nn.bias_add(y, b)
    return y


def max_pool_ceil(x, kernel, stride, pad):
    """Caffe MAX pooling (ceil mode, padding counts as -inf), for dynamic H and W.

    Args:
      x: [N, H, W, C] float32.
    Returns: [N, H', W', C], H' = pool_output_size(H, kernel, stride, pad). When C is static,
      the result says so to every shape inference, not only to Python's: the computed
      paddings leave the pad's shape unknown (the channels too) in a saved graph, and the
      LiteRT converter then refuses the convolutions that follow (a reshape to a shape whose
      channel entry is a constant; it changes no value).
    """
    channels = x.get_shape().as_list()[-1]
    shape = tf.shape(x)

    def right_pad(size):
        # ceil((size + 2 pad - k) / s) + 1, minus Caffe's dropped last window.
        out = -((-(size + 2 * pad - kernel)) // stride) + 1
        out = tf.where((out - 1) * stride >= size + pad, out - 1, out)
        return (out - 1) * stride + kernel - size - pad

    pad_h, pad_w = right_pad(shape[1]), right_pad(shape[2])
    x = tf.pad(x, [[0, 0], [pad, tf.maximum(pad_h, 0)], [pad, tf.maximum(pad_w, 0)], [0, 0]],
               constant_values=float('-inf'))
    y = tf.nn.max_pool2d(x, kernel, stride, padding='VALID')
    if channels is None:
        return y
    return tf.reshape(y, tf.concat([tf.shape(y)[:3], [channels]], axis=0))


def caffe_moving_average_decay(num_updates, fraction=BN_DECAY):
    """Decay that makes an exponential moving average equal Caffe's BatchNorm statistics
    when they start from nothing: Caffe accumulates s_t = m_t + f s_{t-1} with a scale factor
    n_t = 1 + f n_{t-1} and uses s_t / n_t, a bias-corrected average. Updating the average
    a_t = a_{t-1} - (1 - d_t)(a_{t-1} - m_t) with d_t = 1 - (1 - f) / (1 - f^t) gives the same
    a_t = s_t / n_t (t = 1, 2, ...; d_1 = 0: the first batch's statistics).

    Args: num_updates: scalar tensor, t >= 1.
    Returns: float32 scalar tensor.
    """
    t = tf.cast(tf.maximum(num_updates, 1), tf.float32)
    return 1.0 - (1.0 - fraction) / (1.0 - tf.pow(fraction, t))


def batch_norm(x, name, is_training, relu=False, update_moving_stats=True, decay=BN_DECAY,
               updates=None, sync=False, in_place=False):
    """Caffe BatchNorm + Scale (epsilon 1e-5), optionally followed by ReLU.

    Creates `<name>/beta`, `gamma`, `moving_mean`, `moving_variance` (not trainable: DeepLab
    does not train the batch-norm parameters, as the original project). The moving
    statistics aggregate by MEAN, so that replicas of a tf.distribute strategy may update them
    (each replica's new value, averaged).
    With is_training, normalises with the batch's statistics and (if update_moving_stats)
    makes the moving-average updates (`decay`, a float or a scalar tensor; BN_DECAY by
    default), appended to `updates` (a list) and added to tf1.GraphKeys.UPDATE_OPS; otherwise
    uses the moving statistics.

    Args:
      x: [N, H, W, C] float32 (or bfloat16: the statistics and the affine are computed in
        float32 and applied in x's dtype).
      sync: with is_training inside a tf.distribute replica context, the batch statistics are
        those of the global batch: mean and mean of squares all-reduced (summed) over the
        replicas, variance = E[x^2] - E[x]^2.
      in_place: the moving-average updates run whenever the output is computed (the output
        depends on them; none goes to UPDATE_OPS), as the original project's
        slim.batch_norm(updates_collections=None) did.
    Returns: same shape and dtype.
    """
    beta, gamma, mean, var = batch_norm_variables(name, x.get_shape().as_list()[-1])
    if is_training:
        x32 = tf.cast(x, tf.float32)
        batch_mean, batch_var = (global_batch_moments(x32) if sync
                                 else tf.nn.moments(x32, axes=[0, 1, 2]))
        if update_moving_stats:
            with tf1.name_scope(name + '_update'):
                ops = [tf1.assign_sub(mean, (1.0 - decay) * (mean - batch_mean)),
                       tf1.assign_sub(var, (1.0 - decay) * (var - batch_var))]
            if in_place:
                with tf.control_dependencies(ops):
                    batch_mean, batch_var = tf.identity(batch_mean), tf.identity(batch_var)
            else:
                for op in ops:
                    tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, op)
            if updates is not None:
                updates.extend(ops)
        mean, var = batch_mean, batch_var
    scale, shift = batch_norm_affine(beta, gamma, mean, var)
    y = x * tf.cast(scale, x.dtype) + tf.cast(shift, x.dtype)
    return tf.nn.relu(y) if relu else y


def batch_norm_variables(name, channels):
    """Creates (or reuses) `<name>/beta`, `gamma`, `moving_mean`, `moving_variance`, each
    [channels] float32, not trainable; the moving statistics aggregate by MEAN."""
    with tf1.variable_scope(name):
        beta = tf1.get_variable('beta', [channels], initializer=tf1.zeros_initializer(),
                                trainable=False)
        gamma = tf1.get_variable('gamma', [channels], initializer=tf1.ones_initializer(),
                                 trainable=False)
        mean = tf1.get_variable('moving_mean', [channels],
                                initializer=tf1.zeros_initializer(), trainable=False,
                                aggregation=tf.VariableAggregation.MEAN)
        var = tf1.get_variable('moving_variance', [channels],
                               initializer=tf1.ones_initializer(), trainable=False,
                               aggregation=tf.VariableAggregation.MEAN)
    return beta, gamma, mean, var


def batch_norm_scale(gamma, var):
    """The scale of frozen batch norm: gamma / sqrt(var + epsilon), [C] float32."""
    return gamma * tf.math.rsqrt(var + BN_EPSILON)


def batch_norm_affine(beta, gamma, mean, var):
    """Batch norm as y = x * scale + shift: (scale, shift), each [C] float32 (the arguments
    in batch_norm_variables' order)."""
    scale = batch_norm_scale(gamma, var)
    return scale, beta - mean * scale


def folded_batch_norm(x, name, relu=False):
    """Frozen batch norm whose scale is already in the preceding convolution's kernel
    (fold_batch_norm_scale): y = x + shift, optionally followed by ReLU. Creates the same
    variables as batch_norm (a checkpoint restores the same way).

    Args: x: [N, H, W, C] float32 or bfloat16 (the shift is computed in float32).
    Returns: same shape and dtype.
    """
    variables = batch_norm_variables(name, x.get_shape().as_list()[-1])
    y = tf.nn.bias_add(x, tf.cast(batch_norm_affine(*variables)[1], x.dtype))
    return tf.nn.relu(y) if relu else y


def fold_batch_norm_scale(kernel, gamma, moving_variance):
    """The op that multiplies a convolution's kernel [k, k, C_in, C] (a variable) by the
    scale of the frozen batch norm that follows it (per output channel), for
    folded_batch_norm. Run it once, after the weights are restored: it changes the variable.
    """
    return tf1.assign(kernel, kernel * batch_norm_scale(gamma, moving_variance))


def global_batch_moments(x):
    """Mean and (biased) variance over N, H, W of the batch of every replica in sync.

    Args:
      x: [N, H, W, C] float32, this replica's part of the batch.
    Returns: (mean [C], variance [C]) float32, equal on every replica; from the pixel count
      and the sums of x and x^2, packed into one [1 + 2C] tensor that the current replica
      context sums over the replicas (no reduction outside a strategy): one cross-replica
      reduction per layer in the forward pass and one in the backward pass, whose gradient
      flows to every replica's x (all_sum_with_grad).
    """
    channels = x.get_shape().as_list()[-1]
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
    packed = tf.concat([count[None], tf.reduce_sum(x, axis=[0, 1, 2]),
                        tf.reduce_sum(tf.square(x), axis=[0, 1, 2])], axis=0)
    count, total, total_sq = tf.split(sum_over_replicas(packed, with_grad=True),
                                      [1, channels, channels])
    mean = total / count
    return mean, tf.maximum(total_sq / count - tf.square(mean), 0.0)
