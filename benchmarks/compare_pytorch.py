#!/usr/bin/env python
"""Side-by-side speed of this project's TensorFlow DeepLab-v2 ResNet-101 and a PyTorch one.

    python benchmarks/compare_pytorch.py [--sizes 321x321,513x513,375x500]
        [--scales '1.0|1.0,0.75,0.5'] [--mode infer|train|all] [--threads N] [--repeats 7]
        [--warmup 1] [--json OUT] [--quick] [--omp-passive] [--self-check]

The reference to beat: a PyTorch DeepLab-v2 ResNet-101 (the network of
kazuto1011/deeplab-pytorch), run in the same invocation with the same input sizes, scale sets
and thread count. PyTorch is not a project dependency; install its CPU build into the venv
for this script only (`pip install torch==2.13.0`; without it the script exits with status 2).

Cases, each framework's in its own child process (so peak RSS, ru_maxrss, is per case), the
TensorFlow case and then the same PyTorch case, so that a drift in machine load hits both:
  gemm   benchmarks/speed.py's float32 GEMM (TensorFlow, [2048, 2048]^2): the measured peak
         that both networks' GFLOP/s are given as a fraction of; and the same matmul in
         PyTorch (torch.mm), for information.
  infer  per size x scale set, batch 1: the fused logits upsampled bilinearly to the input
         size, softmax and argmax (TensorFlow: speed.py's infer case, msc.predict_probs, with
         fetch_probs so the softmax is computed too): images / s.
  train  one step, 321x321, batch 1, 3 towers (1, 0.75, 0.5): forward, the four softmax
         losses, backward, momentum-SGD update (TensorFlow: speed.py's train case): steps / s.
         Random weights whose batch-norm statistics are set to those of the input (one
         training-mode pass, then frozen), in both frameworks alike, so that every timed step
         is finite, as when a user fine-tunes (a case whose loss is not finite fails).
--quick: speed.py's quick settings (65x65, one training tower, 1 warm-up + 2 timed runs, a
512 GEMM), under about a minute on a quiet 2-core machine: a smoke test, not a measurement.
Inputs are random with a fixed seed (speed.random_images / random_labels, the same arrays for
both frameworks), weights random (He), nothing is downloaded. Rates are the median over
--repeats runs after --warmup runs. FLOPs are those of the TensorFlow graph (speed.count_flops,
multiply-add = 2); both frameworks' GFLOP/s are computed on those same FLOPs. Threads:
TensorFlow intra-op = --threads, inter-op 1 for inference and 2 for training
(speed.session_config, as the project's scripts);
PyTorch torch.set_num_threads(--threads), torch.set_num_interop_threads(1).

What the PyTorch model IS: benchmarks/pytorch_model.py (DeepLabV2ResNet101 and MSC),
written for this benchmark from the published architecture of DeepLab-v2 ResNet-101 as in the
authors' Caffe prototxt and kazuto1011/deeplab-pytorch: stem conv 7x7/2 pad 3 (no bias) + BN +
ReLU, max pool 3x3/2 pad 1 ceil_mode; bottleneck blocks (3, 4, 23, 3) of widths 64/128/256/512
(outputs 4x), Caffe-style stride 2 in the 1x1 branch2a and shortcut convolutions of the first
block of stage 3; stages 4 and 5 at stride 1 with dilation (= padding) 2 and 4 in their 3x3s;
a 1x1 conv + BN shortcut on the first block of each stage; BatchNorm eps 1e-5, frozen (eval
mode, its parameters not trained); ASPP: four 3x3 convolutions with bias at dilation = padding
6, 12, 18, 24, summed; 21 classes. MSC: scales 1, 0.75, 0.5, the smaller inputs resized
bilinearly to int(H * s) x int(W * s) with align_corners=False (as kazuto1011's current MSC;
this project's TensorFlow code uses align_corners=True, the same cost), each scale's logits
resized bilinearly (align_corners=False) to the 1.0 logits' size and fused by element-wise
max. Training: cross-entropy (ignore_index 255) on the fused logits and on each scale's
logits, labels resized (nearest, half-pixel centres, as the TensorFlow side) to each logit
size, summed; SGD momentum 0.9, weight decay 5e-4 on the convolution kernels, learning-rate
groups 1x backbone kernels / 10x ASPP kernels / 20x ASPP biases, poly learning rate. Eager
mode, NCHW, PyTorch's default CPU kernels (oneDNN / MKL), float32. `--self-check` shows that
it has this project's output sizes and parameter count and, with the TensorFlow model's
weights copied in, computes the same logits and losses.

Load: with its defaults PyTorch's OpenMP threads spin-wait at barriers, and when other
processes compete for the same cores that makes it many times slower, steadily (so the
'spread' column does not show it; OMP_WAIT_POLICY=PASSIVE removes it, hence the cause).
Measured on this 2-core machine with another job keeping the load average near 4: a 65x65
one-tower training step took 15 s with PyTorch's defaults, 0.65 s with OMP_WAIT_POLICY=PASSIVE,
and about 1.0 s in TensorFlow; a 65x65 forward pass 4.5 s instead of 0.09 s. Run the
comparison on a quiet machine (the script warns when the load average at its start is 1 or
more); --omp-passive runs the PyTorch children with OMP_WAIT_POLICY=PASSIVE, which is not
PyTorch's default configuration (say so when quoting).

What it is NOT: it is not kazuto1011's code (nothing was copied; their repository was used
only as the description of the architecture), it loads no pretrained weights (no Caffe or
COCO initialisation), it is not TorchScript / torch.compile'd, not channels-last, not
quantised or bfloat16, and it has no data pipeline (inputs are fed tensors). Its numbers are
those of a plain eager PyTorch implementation of the same network on the same inputs.
"""
import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (HERE, ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import speed  # noqa: E402  (benchmarks/speed.py: no TensorFlow import at module level)

from deeplab_resnet.common.constants import (  # noqa: E402
    LR_MULT_ASPP_BIASES, LR_MULT_ASPP_WEIGHTS, LR_MULT_BACKBONE)

NUM_CLASSES = speed.NUM_CLASSES
# speed.py's training recipe (case_train): base lr, momentum, steps, poly power, decay.
BASE_LR, MOMENTUM, NUM_STEPS, POWER, WEIGHT_DECAY = speed.TRAIN_BENCH_LR, 0.9, 20001, 0.9, 5e-4
LR_MULTS = (LR_MULT_BACKBONE, LR_MULT_ASPP_WEIGHTS, LR_MULT_ASPP_BIASES)

SELF_CHECK_SIZES = (33, 64, 65, 321, 513, 375, 500)
SELF_CHECK_INPUT = 65
SELF_CHECK_TOLERANCE = 1e-3    # max |difference| / max |TensorFlow value|

INSTALL_HINT = ('compare_pytorch.py: PyTorch is not installed (it is not a project '
                'dependency); install its CPU build with: %s -m pip install torch==2.13.0'
                % sys.executable)


def torch_available():
    return importlib.util.find_spec('torch') is not None


def torch_version():
    try:
        from importlib.metadata import version
        return version('torch')
    except Exception:   # noqa: BLE001 (any metadata problem: unknown)
        return None


# ----------------------------------------------------------------------------- PyTorch helpers
# torch and benchmarks/pytorch_model.py are imported inside the functions that need them: this
# module imports without PyTorch, and the TensorFlow processes never load it.

def set_torch_threads(threads):
    import torch
    if threads:
        torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def torch_info():
    import torch
    return dict(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                torch_interop_threads=torch.get_num_interop_threads(),
                mkldnn=bool(torch.backends.mkldnn.is_available()))


def to_nchw(images_nhwc):
    import torch
    return torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy())


# ----------------------------------------------------------------------------- PyTorch cases

def case_torch_gemm(spec):
    set_torch_threads(spec['threads'])
    import torch
    n = spec['gemm_n']
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    c = torch.empty(n, n)
    first, times = speed.time_runs(lambda: torch.mm(a, b, out=c), spec['warmup'] + 2,
                                   max(spec['repeats'], 5))
    flops = 2 * n ** 3
    med = statistics.median(times)
    return dict(torch_info(), rate=1.0 / med, unit='matmul/s', flops=flops,
                gflops_per_s=flops / med / 1e9, first_run_s=first, times_s=times,
                median_s=med)


def case_torch_infer(spec):
    set_torch_threads(spec['threads'])
    import torch
    import torch.nn.functional as F
    import pytorch_model
    h, w = spec['size']
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = pytorch_model.MSC(pytorch_model.DeepLabV2ResNet101(NUM_CLASSES),
                              spec['scales']).eval()
    build_s = time.perf_counter() - t0
    x = to_nchw(speed.random_images([1, h, w, 3]))

    def run():
        with torch.inference_mode():
            fused, _ = model(x)
            logits = F.interpolate(fused, size=(h, w), mode='bilinear', align_corners=False)
            probs = F.softmax(logits, dim=1)
            labels = logits.argmax(dim=1)
        return probs, labels

    first, times = speed.time_runs(run, spec['warmup'], spec['repeats'])
    med = statistics.median(times)
    return dict(torch_info(), rate=1.0 / med, unit='img/s', build_s=build_s,
                first_run_s=first, times_s=times, median_s=med)


def sgd_optimizer(base):
    """speed.py's training recipe for the PyTorch model `base` (a DeepLabV2ResNet101): SGD with
    momentum, weight decay on the kernels, learning-rate groups 1x backbone kernels / 10x ASPP
    kernels / 20x ASPP biases (each group's 'mult'). Returns (optimizer, groups)."""
    import torch
    aspp = {id(t) for t in base.aspp.parameters()}
    backbone = [t for t in base.parameters()
                if t.requires_grad and id(t) not in aspp]
    groups = [dict(params=backbone, mult=LR_MULTS[0]),
              dict(params=[c.weight for c in base.aspp.convs], mult=LR_MULTS[1]),
              dict(params=[c.bias for c in base.aspp.convs], mult=LR_MULTS[2],
                   weight_decay=0.0)]
    for g in groups:
        g['lr'] = BASE_LR * g['mult']
    optimizer = torch.optim.SGD(groups, lr=BASE_LR, momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY)
    return optimizer, groups


def case_torch_train(spec):
    set_torch_threads(spec['threads'])
    import torch
    import pytorch_model
    h, w = spec['size']
    t0 = time.perf_counter()
    torch.manual_seed(0)
    base = pytorch_model.DeepLabV2ResNet101(NUM_CLASSES)
    model = pytorch_model.MSC(base, spec['scales']).train()
    optimizer, groups = sgd_optimizer(base)
    build_s = time.perf_counter() - t0
    x = to_nchw(speed.random_images([1, h, w, 3]))
    labels = torch.from_numpy(speed.random_labels([1, h, w, 1])[..., 0].astype('int64'))
    pytorch_model.calibrate_batch_norm(base, x)
    step, losses = [0], []

    def run():
        poly = (1.0 - step[0] / float(NUM_STEPS)) ** POWER
        for g in optimizer.param_groups:
            g['lr'] = BASE_LR * g['mult'] * poly
        optimizer.zero_grad(set_to_none=True)
        loss = sum(pytorch_model.msc_losses(model(x), labels))
        loss.backward()
        optimizer.step()
        step[0] += 1
        losses.append(loss.item())

    first, times = speed.time_runs(run, spec['warmup'], spec['repeats'])
    if not all(math.isfinite(v) for v in losses):
        raise RuntimeError('the PyTorch training case diverged: losses %s' % losses)
    med = statistics.median(times)
    trained = sum(t.numel() for g in groups for t in g['params'])
    return dict(torch_info(), rate=1.0 / med, unit='step/s', build_s=build_s,
                first_run_s=first, times_s=times, median_s=med, trained_parameters=trained)


speed.CASES.update(torch_gemm=case_torch_gemm, torch_infer=case_torch_infer,
                   torch_train=case_torch_train)


# ----------------------------------------------------------------------------- plan

def build_specs(args):
    """speed.build_specs' gemm / infer / train specs (TensorFlow), each followed by its
    PyTorch twin (kind 'torch_<kind>', same name, sizes, scales, threads, repeats)."""
    ns = argparse.Namespace(quick=args.quick, sizes=args.sizes, scales=args.scales,
                            precision='float32', mode='all', threads=args.threads,
                            grappler=False, warmup=args.warmup, repeats=args.repeats,
                            train_size='321x321', unfolded_bn=False,
                            plain_session=False)
    wanted = {'gemm', 'infer', 'train'} if args.mode == 'all' else {'gemm', args.mode}
    specs = []
    for spec in speed.build_specs(ns):
        if spec['kind'] not in wanted:
            continue
        spec['framework'] = 'tensorflow'
        if spec['kind'] == 'infer':
            spec['fetch_probs'] = True
        twin = dict(spec, framework='pytorch', kind='torch_' + spec['kind'])
        twin.pop('fetch_probs', None)
        specs += [spec, twin]
    return specs


def pair_results(results):
    """{name: {'tensorflow': r, 'pytorch': r}} -> one row per case with the ratios."""
    by_name = {}
    for r in results:
        by_name.setdefault(r['name'], {})[r['framework']] = r
    gemm = by_name.get('gemm_float32', {})
    # The machine's fp32 GEMM rate: the best that TensorFlow, NumPy's BLAS or PyTorch reach.
    peak = max([r.get('best_gflops_per_s', r['gflops_per_s']) for r in gemm.values()],
               default=None)
    rows = []
    for name, pair in by_name.items():
        tf_r, pt_r = pair['tensorflow'], pair['pytorch']
        kind = tf_r['kind']
        row = dict(name=name, kind=kind, unit=tf_r['unit'], size=tf_r.get('size'),
                   scales=tf_r.get('scales'), threads=tf_r['threads'],
                   tensorflow=tf_r, pytorch=pt_r,
                   tf_over_pytorch_throughput=tf_r['rate'] / pt_r['rate'])
        for r in (tf_r, pt_r):
            r['spread_max_over_min'] = max(r['times_s']) / min(r['times_s'])
        if kind == 'gemm':
            if peak:
                for r in (tf_r, pt_r):
                    r['fraction_of_fp32_gemm_peak'] = r['gflops_per_s'] / peak
        else:
            flops = tf_r['flops']
            row['flops_tf_graph'] = flops
            pt_r['flops'] = flops
            pt_r['flops_source'] = 'TensorFlow graph of the same case (speed.count_flops)'
            pt_r['gflops_per_s'] = flops / pt_r['median_s'] / 1e9
            if peak:
                for r in (tf_r, pt_r):
                    r['fraction_of_fp32_gemm_peak'] = r['gflops_per_s'] / peak
        rows.append(row)
    return rows


def format_table(rows):
    head = ('case', 'unit', 'TF rate', 'PT rate', 'TF/PT', 'TF med s', 'PT med s', 'GFLOP',
            'TF GFLOP/s', 'PT GFLOP/s', 'TF %peak', 'PT %peak', 'TF RSS MB', 'PT RSS MB',
            'spread TF/PT')
    lines = []
    for row in rows:
        t, p = row['tensorflow'], row['pytorch']
        pct = lambda r: ('%.0f%%' % (100 * r['fraction_of_fp32_gemm_peak'])
                         if 'fraction_of_fp32_gemm_peak' in r else '-')
        lines.append((row['name'], row['unit'], '%.3f' % t['rate'], '%.3f' % p['rate'],
                      '%.2f' % row['tf_over_pytorch_throughput'], '%.3f' % t['median_s'],
                      '%.3f' % p['median_s'],
                      '%.1f' % (t['flops'] / 1e9) if row['kind'] != 'gemm' else
                      '%.2f' % (t['flops'] / 1e9),
                      '%.1f' % t['gflops_per_s'], '%.1f' % p['gflops_per_s'], pct(t), pct(p),
                      '%.0f' % t['peak_rss_mb'], '%.0f' % p['peak_rss_mb'],
                      '%.2f/%.2f' % (t['spread_max_over_min'], p['spread_max_over_min'])))
    return speed.aligned_table(head, lines)


# ----------------------------------------------------------------------------- self-check

def tf_reference(path):
    """Child process of --self-check (TensorFlow only): writes to `path` (.npz) the model's
    variable values (BN statistics, gamma, beta and ASPP biases randomised), a 65x65 input,
    labels, the 3-scale logits and cross-entropy terms, output_size of SELF_CHECK_SIZES and
    the parameter count from variable_shapes(21)."""
    import numpy as np
    import tensorflow as tf
    from deeplab_resnet.network import model, msc
    from deeplab_resnet.training import losses
    tf1 = tf.compat.v1
    shapes = model.variable_shapes(NUM_CLASSES)
    params = [n for n in shapes if not n.endswith(('moving_mean', 'moving_variance'))]
    n_params = sum(int(np.prod(shapes[n])) for n in params)
    size = SELF_CHECK_INPUT
    scales = speed.TRAIN_SCALES
    images_np = speed.random_images([1, size, size, 3])
    labels_np = speed.random_labels([1, size, size, 1])
    rs = np.random.RandomState(1)
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        images = tf1.placeholder(tf.float32, [1, size, size, 3])
        labels = tf1.placeholder(tf.uint8, [1, size, size, 1])
        out = msc.multi_scale_logits(images, NUM_CLASSES, False, scales)
        loss = losses.msc_loss(out, labels, NUM_CLASSES, [], 0.0, scales)
        variables = tf1.global_variables()
        with tf1.Session(config=speed.session_config(dict(threads=2, grappler=False))) as sess:
            sess.run(tf1.global_variables_initializer())
            for v in variables:
                name = v.op.name
                n = v.get_shape().as_list()[0]
                value = {'gamma': lambda: rs.uniform(0.5, 1.5, n),
                         'beta': lambda: rs.normal(0, 0.2, n),
                         'moving_mean': lambda: rs.normal(0, 0.2, n),
                         'moving_variance': lambda: rs.uniform(0.5, 2.0, n),
                         'biases': lambda: rs.normal(0, 0.1, n)}.get(name.rsplit('/', 1)[-1])
                if value is not None:
                    v.load(value().astype(np.float32), sess)
            fetched = sess.run(dict(fused=out.fused, per_scale=out.per_scale,
                                    terms=list(loss.terms.values())),
                               {images: images_np, labels: labels_np})
            values = {'var/' + v.op.name: sess.run(v) for v in variables}
    arrays = dict(values, images=images_np, labels=labels_np, fused=fetched['fused'],
                  terms=np.array(fetched['terms'], np.float64), n_params=n_params,
                  n_variables=len(shapes), sizes=np.array(SELF_CHECK_SIZES),
                  output_sizes=np.array([model.output_size(s) for s in SELF_CHECK_SIZES]))
    for i, logits in enumerate(fetched['per_scale']):
        arrays['per_scale_%d' % i] = logits
    np.savez(path, **arrays)


def relative_difference(a, b):
    import numpy as np
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


def nhwc(logits):
    """[N, C, h, w] torch tensor -> [N, h, w, C] NumPy array (the TensorFlow layout)."""
    return logits.numpy().transpose(0, 2, 3, 1)


def mark(passed):
    return 'OK' if passed else 'FAIL'


def run_tf_reference():
    """Runs tf_reference in a child process (TensorFlow never loads beside PyTorch). Returns
    its arrays as a dict, or None (with the child's stderr printed) when it failed."""
    import subprocess
    import tempfile
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'tf_reference.npz')
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--tf-reference',
                               path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            print('self-check: the TensorFlow reference process failed (exit %d)'
                  % proc.returncode)
            return None
        return dict(np.load(path))


def check_output_sizes(ref):
    """(a) logit sizes, from shapes only (meta tensors: no arithmetic). Returns passed."""
    import torch
    import pytorch_model
    with torch.device('meta'):
        meta_model = pytorch_model.DeepLabV2ResNet101(NUM_CLASSES)
    sizes = [int(s) for s in ref['sizes']]
    out = dict(zip(sizes, (int(s) for s in ref['output_sizes'])))
    inputs = [(s, s) for s in sizes] + [(375, 500), (500, 375)]   # and VOC's landscape
    want = [(out[h], out[w]) for h, w in inputs]
    with torch.no_grad():
        got = [tuple(meta_model(torch.empty(1, 3, h, w, device='meta')).shape[2:])
               for h, w in inputs]
    print('(a) logit size for inputs %s' % ', '.join('%dx%d' % hw for hw in inputs))
    print('    TensorFlow model.output_size: %s' % ', '.join('%dx%d' % hw for hw in want))
    print('    PyTorch (shapes only):        %s  %s' % (
        ', '.join('%dx%d' % hw for hw in got), mark(got == want)))
    return got == want


def check_parameters(model, ref):
    """(b) parameter count (BN gamma/beta count; moving statistics do not). Returns passed."""
    n_pt = sum(t.numel() for t in model.parameters())
    n_trained = sum(t.numel() for t in model.parameters() if t.requires_grad)
    n_tf = int(ref['n_params'])
    print('(b) parameters, 21 classes: TensorFlow %d (%d variables less the moving '
          'statistics), PyTorch %d (%d trained, BN frozen)  %s'
          % (n_tf, int(ref['n_variables']), n_pt, n_trained, mark(n_pt == n_tf)))
    return n_pt == n_tf


def check_single_scale(model, ref, x, num_tensors):
    """(c) single-scale logits of `model` (TensorFlow weights loaded) on x. Returns passed."""
    import numpy as np
    import torch
    with torch.inference_mode():
        single = nhwc(model(x))
    tf_single = ref['per_scale_0']
    rel = relative_difference(tf_single, single)
    agree = float(np.mean(tf_single.argmax(-1) == single.argmax(-1)))
    passed = rel < SELF_CHECK_TOLERANCE and tf_single.shape == single.shape
    size = SELF_CHECK_INPUT
    print('(c) %dx%d, single scale, TensorFlow weights copied (%d tensors; BN statistics, '
          'gamma, beta and ASPP biases randomised): logits %s, max |TF| %.3g, max |diff| '
          '%.3g, relative %.2g, argmax agreement %.4f  %s'
          % (size, size, num_tensors, 'x'.join(map(str, tf_single.shape[1:3])),
             np.max(np.abs(tf_single)), np.max(np.abs(tf_single - single)), rel, agree,
             mark(passed)))
    return passed


def check_multi_scale(model, ref, x):
    """(c) 3-scale logits, align_corners=True (as the TensorFlow code) and False (as the
    benchmark). Returns (passed, the align_corners=True MSC outputs)."""
    import torch
    import pytorch_model
    with torch.inference_mode():
        msc_same = pytorch_model.MSC(model, speed.TRAIN_SCALES, align_corners=True)(x)
        msc_k = pytorch_model.MSC(model, speed.TRAIN_SCALES, align_corners=False)(x)
    rels = [relative_difference(ref['per_scale_%d' % i], nhwc(msc_same[1][i]))
            for i in range(len(speed.TRAIN_SCALES))]
    rel_fused = relative_difference(ref['fused'], nhwc(msc_same[0]))
    passed = max(rels + [rel_fused]) < SELF_CHECK_TOLERANCE
    print('    3 scales (1, 0.75, 0.5) with align_corners=True as the TensorFlow code: '
          'per-scale relative %s, fused %.2g  %s' % (
              ', '.join('%.2g' % r for r in rels), rel_fused, mark(passed)))
    rel_k = relative_difference(ref['fused'], nhwc(msc_k[0]))
    print('    (the benchmark\'s align_corners=False, as kazuto1011: fused differs by %.2g '
          'relative, expected: different interpolation, same cost)' % rel_k)
    return passed, msc_same


def check_losses(msc_outputs, ref):
    """(d) the MSC cross-entropy terms on the reference labels. Returns passed."""
    import numpy as np
    import torch
    import pytorch_model
    labels = torch.from_numpy(ref['labels'][..., 0].astype(np.int64))
    with torch.no_grad():
        terms = np.array([float(t) for t in pytorch_model.msc_losses(msc_outputs, labels)])
    tf_terms = ref['terms']
    rel_terms = float(np.max(np.abs(terms - tf_terms) / np.abs(tf_terms)))
    passed = rel_terms < SELF_CHECK_TOLERANCE
    print('(d) cross-entropy terms (fused, 1, 0.75, 0.5), align_corners=True: TensorFlow %s, '
          'PyTorch %s, max relative %.2g  %s' % (
              ', '.join('%.6g' % t for t in tf_terms), ', '.join('%.6g' % t for t in terms),
              rel_terms, mark(passed)))
    return passed


def self_check(threads):
    """(a) output sizes, (b) parameter count, (c) logits with the TensorFlow weights copied
    in, (d) the MSC loss terms. Prints the results; returns 0 when every check passes."""
    import pytorch_model
    set_torch_threads(threads)
    ref = run_tf_reference()
    if ref is None:
        return 1
    print('self-check: PyTorch DeepLab-v2 ResNet-101 (benchmarks/pytorch_model.py) vs '
          'deeplab_resnet.network.model')
    passed = [check_output_sizes(ref)]
    model = pytorch_model.DeepLabV2ResNet101(NUM_CLASSES)
    passed.append(check_parameters(model, ref))
    values = {k[4:]: v for k, v in ref.items() if k.startswith('var/')}
    unused = pytorch_model.load_tf_weights(model, values)
    passed.append(not unused)
    if unused:
        print('    TensorFlow variables with no PyTorch counterpart: %s' % unused[:5])
    x = to_nchw(ref['images'])
    passed.append(check_single_scale(model, ref, x, len(values)))
    msc_passed, msc_outputs = check_multi_scale(model, ref, x)
    passed += [msc_passed, check_losses(msc_outputs, ref)]
    ok = all(passed)
    print('self-check: %s' % ('passed' if ok else 'FAILED'))
    return 0 if ok else 1


# ----------------------------------------------------------------------------- main

BUSY_LOAD = 1.0   # 1-minute load average at the start above which the script warns


@contextlib.contextmanager
def environment(values):
    """os.environ with `values` set (for the child processes started inside)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    speed.add_inference_arguments(p)
    p.add_argument('--mode', default='all', choices=['infer', 'train', 'all'])
    p.add_argument('--threads', type=int, default=os.cpu_count() or 1,
                   help='threads of both frameworks (TensorFlow intra-op, PyTorch '
                        'set_num_threads; default: the CPU count, %(default)s)')
    p.add_argument('--repeats', type=int, default=7, help='timed runs (default %(default)s)')
    p.add_argument('--warmup', type=int, default=1, help='warm-up runs (default %(default)s)')
    p.add_argument('--quick', action='store_true',
                   help="speed.py's --quick sizes: 65x65, one training tower, 1 warm-up + 2 "
                        'timed runs, a 512 GEMM (a smoke test)')
    p.add_argument('--json', help='write the results here')
    p.add_argument('--omp-passive', action='store_true',
                   help='run the PyTorch cases with OMP_WAIT_POLICY=PASSIVE (not PyTorch\'s '
                        'default; for a machine that other processes keep busy)')
    p.add_argument('--self-check', action='store_true',
                   help='check the PyTorch model against the TensorFlow one and exit')
    p.add_argument('--run-case', help=argparse.SUPPRESS)
    p.add_argument('--tf-reference', help=argparse.SUPPRESS)
    return p, p.parse_args(argv)


def run_meta(args):
    """The run's facts for the JSON (command, machine, versions, threading environment, the
    PyTorch children's environment) and its warnings (a busy machine)."""
    meta = dict(command=' '.join([os.path.basename(sys.executable)] + sys.argv),
                argv=sys.argv[1:], quick=args.quick, threads=args.threads,
                tensorflow_inter_op_threads='1 (inference), 2 (training)',
                pytorch_interop_threads=1,
                cpu=speed.cpu_model(), cpu_count=os.cpu_count(), cpu_flags=speed.cpu_features(),
                python=platform.python_version(), torch=torch_version(),
                load_average_start=speed.load_average(),
                started=time.strftime('%Y-%m-%dT%H:%M:%S'),
                environment={k: v for k, v in os.environ.items()   # threading / oneDNN
                             if k.startswith(('OMP_', 'KMP_', 'GOMP_', 'MKL_', 'DNNL_',
                                              'ONEDNN_', 'TORCH_'))
                             or k in ('TF_ENABLE_ONEDNN_OPTS', 'TF_NUM_INTRAOP_THREADS',
                                      'TF_NUM_INTEROP_THREADS', 'TF_XLA_FLAGS')},
                pytorch_model='benchmarks/pytorch_model.py\'s DeepLabV2ResNet101 + MSC (not '
                              'kazuto1011\'s code), eager, NCHW, float32, frozen BN, MSC '
                              'align_corners=False')
    meta['pytorch_child_environment'] = (
        {'OMP_WAIT_POLICY': 'PASSIVE'} if args.omp_passive else {})
    meta['warnings'] = warnings = []
    load = meta['load_average_start']
    if load and load[0] >= BUSY_LOAD:
        warnings.append('load average %.2f at the start: the machine is not quiet; PyTorch '
                        '(OpenMP) suffers much more from other processes than TensorFlow%s'
                        % (load[0], '' if args.omp_passive else ' (see --omp-passive)'))
    return meta


def run_cases(specs, pt_env):
    """Each spec in its own child process, the PyTorch ones with `pt_env` set."""
    results = []
    for spec in specs:
        print('... %s %s' % (spec['framework'], spec['name']), file=sys.stderr, flush=True)
        if spec['framework'] == 'pytorch':
            with environment(pt_env):
                results.append(speed.run_case_subprocess(spec, script=__file__))
        else:
            results.append(speed.run_case_subprocess(spec))
    return results


def _gemm_peak_text(rows):
    gemm = next((row for row in rows if row['kind'] == 'gemm'), None)
    if gemm is None:
        return 'not measured', float('nan')
    tf_r = gemm['tensorflow']
    best = max(tf_r.get('best_gflops_per_s', tf_r['gflops_per_s']),
               gemm['pytorch']['gflops_per_s'])
    return ('%s: %.1f GFLOP/s' % (tf_r.get('numpy_blas'), tf_r.get('numpy_gflops_per_s', 0.0)),
            best)


def print_report(rows, meta, args):
    print(format_table(rows))
    print('TF/PT: TensorFlow throughput / PyTorch throughput (> 1: TensorFlow faster). '
          'GFLOP: the TensorFlow graph\'s; %%peak: of the machine\'s fp32 GEMM, the best of '
          'TensorFlow, NumPy (%s) and PyTorch: %.1f GFLOP/s; spread: slowest / fastest timed '
          'run (well above 1: the machine was busy).' % _gemm_peak_text(rows))
    pt_env = meta['pytorch_child_environment']
    print(speed.cpu_line(meta))
    print('threads %d; TensorFlow %s, PyTorch %s%s; %s' % (
        args.threads, meta['tensorflow'], meta['torch'],
        ' (with %s)' % ' '.join('%s=%s' % kv for kv in pt_env.items()) if pt_env else '',
        speed.load_average_line(meta)))
    for w in meta['warnings']:
        print('warning: ' + w)


def compare(args):
    """The comparison: every case of both frameworks, the table, the JSON."""
    specs = build_specs(args)
    meta = run_meta(args)
    for w in meta['warnings']:
        print('warning: ' + w, file=sys.stderr, flush=True)
    results = run_cases(specs, meta['pytorch_child_environment'])
    rows = pair_results(results)
    meta['load_average_end'] = speed.load_average()
    meta['finished'] = time.strftime('%Y-%m-%dT%H:%M:%S')
    meta['tensorflow'] = next((r['tensorflow'] for r in results if r.get('tensorflow')), None)
    meta['torch'] = next((r['torch'] for r in results if r.get('torch')), meta['torch'])
    print_report(rows, meta, args)
    speed.write_json(args.json, meta, rows)
    return 0


def main(argv=None):
    p, args = parse_args(argv)
    if args.tf_reference:
        tf_reference(args.tf_reference)
        return 0
    if args.run_case:
        result = speed.run_case(json.loads(args.run_case))
        print(speed.RESULT_PREFIX + json.dumps(result))
        return 0
    if not torch_available():
        print(INSTALL_HINT)
        return 2
    if args.threads < 1:
        p.error('--threads must be at least 1 (both frameworks get the same count)')
    if args.self_check:
        return self_check(args.threads)
    return compare(args)


if __name__ == '__main__':
    sys.exit(main())
