"""An independent NumPy reference of Caffe's forward pass of DeepLab-v2 ResNet-101 (test phase).

It works directly on a caffemodel's layers (name, type, blobs), in Caffe's conventions: CHW
activations, OIHW kernels, BatchNorm blobs (mean * s, variance * s, s) followed by a Scale
layer (gamma, beta). The algorithms are Caffe's, written out literally:

  Convolution  im2col (symmetric zero padding, stride, dilation) then a matrix product
               (conv_layer / base_conv_layer / im2col.cpp); output (H + 2p - d(k-1) - 1)/s + 1.
  Pooling MAX  ceil mode: pooled = ceil((H + 2p - k) / s) + 1, minus one if the last window
               would start at or after H + p; each window is clipped to the image, so padding
               never takes part in the max (pooling_layer.cpp).
  BatchNorm    use_global_stats: factor = 0 if s == 0 else 1 / s; (x - mean * factor) /
               sqrt(var * factor + eps), eps = 1e-5 (batch_norm_layer.cpp).
  Scale        x * gamma + beta.   ReLU  max(x, 0).   Eltwise SUM  a + b.

Nothing here comes from deeplab_resnet's layers or model: the architecture is the table below.

Also a generator of synthetic Caffe layers for the converter tests (random_caffe_layers).
"""
import numpy as np

BN_EPS = 1e-5

# ResNet-101 as in the DeepLab-v2 prototxt: (stage, block names, bottleneck width, stride of
# the block 'a' 1x1 convolutions, dilation of the 3x3 convolutions).
STAGES = (
    (2, ('a', 'b', 'c'), 64, 1, 1),
    (3, ('a', 'b1', 'b2', 'b3'), 128, 2, 1),
    (4, ('a', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8', 'b9', 'b10', 'b11', 'b12',
         'b13', 'b14', 'b15', 'b16', 'b17', 'b18', 'b19', 'b20', 'b21', 'b22'), 256, 1, 2),
    (5, ('a', 'b', 'c'), 512, 1, 4),
)
# ASPP: fc1_voc12_c0..c3, 3x3 with bias, pad = dilation = rate; summed.
ASPP = (('fc1_voc12_c0', 6), ('fc1_voc12_c1', 12), ('fc1_voc12_c2', 18),
        ('fc1_voc12_c3', 24))

# Bound on the im2col buffer of one chunk of output rows.
IM2COL_CHUNK_BYTES = 48 << 20


# ---------------------------------------------------------------------------------------------
# Caffe layers, one image, CHW.

def conv_out_size(size, kernel, stride, pad, dilation):
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def im2col(xpad, kernel, stride, dilation, row0, row1, w_out):
    """Columns of output rows [row0, row1) of the zero-padded input xpad [C, H + 2p, W + 2p]:
    [C * k * k, (row1 - row0) * W_out], rows in Caffe's im2col_cpu order (c, kh, kw); the
    padding supplies Caffe's zeros for positions outside the image."""
    c = xpad.shape[0]
    rows = row1 - row0
    col = np.empty((c, kernel, kernel, rows, w_out), xpad.dtype)
    for kh in range(kernel):
        r = kh * dilation + stride * row0
        for kw in range(kernel):
            q = kw * dilation
            col[:, kh, kw] = xpad[:, r:r + stride * (rows - 1) + 1:stride,
                                  q:q + stride * (w_out - 1) + 1:stride]
    return col.reshape(c * kernel * kernel, rows * w_out)


def convolution(x, weights, bias=None, stride=1, pad=0, dilation=1):
    """Caffe Convolution of x [C, H, W] with weights [O, C, k, k] (+ bias [O]) -> [O, H', W']."""
    out_c, in_c, kernel, kernel_w = weights.shape
    assert kernel == kernel_w and in_c == x.shape[0], (weights.shape, x.shape)
    _, h, w = x.shape
    h_out = conv_out_size(h, kernel, stride, pad, dilation)
    w_out = conv_out_size(w, kernel, stride, pad, dilation)
    wmat = weights.reshape(out_c, -1).astype(x.dtype)
    out = np.empty((out_c, h_out, w_out), x.dtype)
    if kernel == 1 and stride == 1 and pad == 0:
        # Caffe's is_1x1_ case: the input is its own column buffer.
        out[:] = (wmat @ x.reshape(in_c, h * w)).reshape(out_c, h_out, w_out)
    else:
        xpad = np.pad(x, ((0, 0), (pad, pad), (pad, pad))) if pad else x
        row_bytes = in_c * kernel * kernel * w_out * x.itemsize
        step = max(1, IM2COL_CHUNK_BYTES // row_bytes)
        for r0 in range(0, h_out, step):
            r1 = min(r0 + step, h_out)
            col = im2col(xpad, kernel, stride, dilation, r0, r1, w_out)
            out[:, r0:r1, :] = (wmat @ col).reshape(out_c, r1 - r0, w_out)
    if bias is not None:
        out += bias.reshape(out_c, 1, 1).astype(x.dtype)
    return out


def pooled_size(size, kernel, stride, pad):
    pooled = int(np.ceil(float(size + 2 * pad - kernel) / stride)) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


def max_pool(x, kernel, stride, pad):
    """Caffe MAX pooling, ceil mode, window by window."""
    c, h, w = x.shape
    ph_n, pw_n = pooled_size(h, kernel, stride, pad), pooled_size(w, kernel, stride, pad)
    out = np.empty((c, ph_n, pw_n), x.dtype)
    for ph in range(ph_n):
        hstart = ph * stride - pad
        hend = min(hstart + kernel, h)
        hstart = max(hstart, 0)
        for pw in range(pw_n):
            wstart = pw * stride - pad
            wend = min(wstart + kernel, w)
            wstart = max(wstart, 0)
            out[:, ph, pw] = x[:, hstart:hend, wstart:wend].max(axis=(1, 2))
    return out


def batch_norm(x, mean_blob, var_blob, factor_blob):
    s = float(np.asarray(factor_blob).reshape(-1)[0])
    factor = 0.0 if s == 0 else 1.0 / s
    mean = np.asarray(mean_blob, np.float64).reshape(-1, 1, 1) * factor
    var = np.asarray(var_blob, np.float64).reshape(-1, 1, 1) * factor
    return ((x - mean.astype(x.dtype)) / np.sqrt(var + BN_EPS).astype(x.dtype)).astype(x.dtype)


def scale(x, gamma, beta):
    return x * np.asarray(gamma, x.dtype).reshape(-1, 1, 1) + \
        np.asarray(beta, x.dtype).reshape(-1, 1, 1)


def relu(x):
    return np.maximum(x, 0)


# ---------------------------------------------------------------------------------------------
# The network.

def _by_name(layers):
    if isinstance(layers, dict):
        return layers
    table = {}
    for name, _, blobs in layers:
        if name not in table or (blobs and not table[name]):
            table[name] = blobs
    return table


def forward(layers, image, dtype=np.float32, keep=None):
    """Caffe's forward pass of DeepLab-v2 ResNet-101 on one image.

    Args:
      layers: the caffemodel's layers, a list of (name, type, blobs) or a dict name -> blobs.
      image: [H, W, 3], BGR, mean-subtracted (Caffe's data blob, transposed).
      dtype: working precision.
      keep: optional dict; filled with intermediate blobs (HWC) by layer name.
    Returns: logits [h, w, num_classes] (HWC), dtype `dtype`.
    """
    p = _by_name(layers)

    def conv(x, name, stride=1, pad=0, dilation=1):
        blobs = p[name]
        return convolution(x, blobs[0], blobs[1] if len(blobs) > 1 else None, stride, pad,
                           dilation)

    def bn_scale(x, suffix):
        x = batch_norm(x, *p['bn' + suffix][:3])
        return scale(x, *p['scale' + suffix][:2])

    x = np.ascontiguousarray(np.asarray(image, dtype).transpose(2, 0, 1))
    x = relu(bn_scale(conv(x, 'conv1', stride=2, pad=3), '_conv1'))
    x = max_pool(x, 3, 2, 1)
    for stage, blocks, _, stride, dilation in STAGES:
        for block in blocks:
            name = '%d%s' % (stage, block)
            s = stride if block == 'a' else 1
            if block == 'a':
                shortcut = bn_scale(conv(x, 'res%s_branch1' % name, stride=s),
                                    '%s_branch1' % name)
            else:
                shortcut = x
            y = relu(bn_scale(conv(x, 'res%s_branch2a' % name, stride=s),
                              '%s_branch2a' % name))
            y = relu(bn_scale(conv(y, 'res%s_branch2b' % name, pad=dilation,
                                   dilation=dilation), '%s_branch2b' % name))
            y = bn_scale(conv(y, 'res%s_branch2c' % name), '%s_branch2c' % name)
            x = relu(shortcut + y)
            if keep is not None:
                keep['res%s_relu' % name] = x.transpose(1, 2, 0)
    logits = None
    for name, rate in ASPP:
        branch = conv(x, name, pad=rate, dilation=rate)
        logits = branch if logits is None else logits + branch
    return logits.transpose(1, 2, 0)


# ---------------------------------------------------------------------------------------------
# Synthetic caffemodels for tests.

def backbone_layer_specs():
    """[(conv name, bn suffix, out channels, in channels, kernel)] in network order."""
    specs = [('conv1', '_conv1', 64, 3, 7)]
    channels = 64
    for stage, blocks, width, _, _ in STAGES:
        for block in blocks:
            name = '%d%s' % (stage, block)
            if block == 'a':
                specs.append(('res%s_branch1' % name, '%s_branch1' % name, 4 * width,
                              channels, 1))
            specs.append(('res%s_branch2a' % name, '%s_branch2a' % name, width, channels, 1))
            specs.append(('res%s_branch2b' % name, '%s_branch2b' % name, width, width, 3))
            specs.append(('res%s_branch2c' % name, '%s_branch2c' % name, 4 * width, width, 1))
            channels = 4 * width
    return specs


def random_caffe_layers(num_classes=21, seed=0, include_aspp=True, msc_copies=True,
                        image_std=74.0):
    """A complete synthetic DeepLab-v2 ResNet-101 caffemodel: list of (name, type, blobs).

    Convolutions are He-scaled (OIHW, no bias); BatchNorm stores (mean * s, var * s, [s]) with
    a scale factor s drawn in [0.5, 4] (so a converter that forgets to divide is caught);
    Scale has random gamma and beta. Statistics roughly match the activations' scale (conv1's
    for inputs of std `image_std`), and the residual branches' last gamma is small, so the
    activations stay bounded through the 33 blocks. Includes parameter-free layers (ReLU,
    Pooling, Eltwise) as a real model does and, with msc_copies, `_res075` / `_res05` copies of
    a few layers holding different values (the multi-scale models' copies, to be ignored).
    ASPP (fc1_voc12_c0..c3, weights [C, 2048, 3, 3] and bias [C]) if include_aspp.
    """
    rng = np.random.default_rng(seed)
    f32 = np.float32
    layers = [('data', 'Input', [])]

    def bn_layers(suffix, channels, input_var, gamma_scale=1.0):
        s = f32(rng.uniform(0.5, 4.0))
        mean = rng.normal(0, 0.3 * np.sqrt(input_var), channels)
        var = input_var * rng.uniform(0.5, 2.0, channels)
        gamma = gamma_scale * rng.uniform(0.5, 1.5, channels)
        beta = rng.normal(0, 0.2, channels)
        return [('bn' + suffix, 'BatchNorm',
                 [(mean * s).astype(f32), (var * s).astype(f32), np.array([s], f32)]),
                ('scale' + suffix, 'Scale', [gamma.astype(f32), beta.astype(f32)])]

    def conv_layer(name, out_c, in_c, kernel):
        std = np.sqrt(2.0 / (in_c * kernel * kernel))
        w = rng.standard_normal((out_c, in_c, kernel, kernel), dtype=f32) * f32(std)
        return (name, 'Convolution', [w])

    for name, suffix, out_c, in_c, kernel in backbone_layer_specs():
        layers.append(conv_layer(name, out_c, in_c, kernel))
        if name == 'conv1':
            # He-scaled conv of the image: output variance ~ 2 * image variance.
            layers += bn_layers(suffix, out_c, 2 * image_std ** 2)
            layers += [('conv1_relu', 'ReLU', []), ('pool1', 'Pooling', [])]
            continue
        branch_end = name.endswith('branch2c')
        layers += bn_layers(suffix, out_c, 1.0, gamma_scale=0.25 if branch_end else 1.0)
        if name.endswith(('branch2a', 'branch2b')):
            layers.append((name + '_relu', 'ReLU', []))
        if branch_end:
            block = name[:-len('_branch2c')]
            layers += [(block, 'Eltwise', []), (block + '_relu', 'ReLU', [])]
    if include_aspp:
        for name, _ in ASPP:
            w = rng.standard_normal((num_classes, 2048, 3, 3), dtype=f32) * f32(0.01)
            b = rng.normal(0, 1.0, num_classes).astype(f32)
            layers.append((name, 'Convolution', [w, b]))
        layers.append(('fc1_voc12', 'Eltwise', []))
    if msc_copies:
        copies = []
        for name, layer_type, blobs in layers:
            if name in ('conv1', 'bn_conv1', 'scale_conv1', 'fc1_voc12_c0'):
                for suffix in ('_res075', '_res05'):
                    copies.append((name + suffix, layer_type,
                                   [(b + f32(1.0)).astype(f32) for b in blobs]))
        layers += copies
    return layers


def random_image(height, width, seed, mean_bgr=(104.00698793, 116.66876762, 122.67891434)):
    """A random BGR image, mean-subtracted: [H, W, 3] float32."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (height, width, 3)) - np.asarray(mean_bgr)).astype(np.float32)
