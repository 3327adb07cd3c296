#!/usr/bin/env python
"""Speed benchmark of the DeepLab-v2 ResNet-101 suite (CPU or GPU, graph mode).

    python benchmarks/speed.py [--sizes 321x321,513x513,375x500] [--scales 1.0|1.0,0.75,0.5]
        [--mode infer|train|pipeline|crf|all] [--threads N] [--json OUT] [--quick]
        [--pipeline-threads 1,2] [--pipeline-images 80]
        [--grappler] [--precision float32,bfloat16,amp] [--unfolded-bn] [--plain-session]
        [--repeats 7]

Prints one table and (with --json) writes every number. Random weights, generated inputs;
nothing is downloaded or read from disk except what the script writes to a temp dir.

Cases (each in a child process, so each has its own peak RSS, unless --in-process or --quick):
  gemm      a [2048, 2048] x [2048, 2048] float32 matmul (bfloat16 too when a bfloat16 case
            runs) in a session with the same thread settings: the machine's measured peak,
            against which the network's achieved GFLOP/s is given as a fraction.
  infer     Predictor's graph and session (msc.predict_probs with batch norm folded into
            the kernels unless --unfolded-bn; session_config(inference=True) unless
            --plain-session; labels fetched, the probabilities too with the spec's
            fetch_probs) on a fixed-size float placeholder, per size and scale set: images / s.
  train     one step of the default recipe (msc_loss over 3 towers, frozen BN, momentum SGD
            with the 1x/10x/20x groups, weight decay, grad-update-every 1), 321x321, batch 1,
            inputs fed: steps / s (= images / s).
  pipeline  ImageReader's training pipeline (random scale + mirror + crop 321x321) on
            generated 500x375 JPEG images and palette PNG labels, one case per
            --pipeline-threads count (the process pinned to that many CPUs), timed alternately
            with the pipeline of a907866 (benchmarks/pipeline_reference.py): images / s, per
            CPU, CPU ms per image, the speed-up, and the ratio to the images / s that
            training consumes (when the train case ran).
  crf       dense_crf of a 500x375 image, 21 classes, through CRFPool with 1 and 2 workers.

Rates are the median over --repeats timed runs after warm-up runs. FLOPs are counted from
the graph's static shapes (the placeholder has a fixed size), multiply-add = 2: Conv2D,
Conv2DBackpropInput / Filter (training) and MatMul / BatchMatMul. `first_run_s` is the
first Session.run (graph optimisation, Grappler when on, and oneDNN primitive creation).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

NUM_CLASSES = 21
TRAIN_SCALES = (1.0, 0.75, 0.5)   # constants.TRAIN_SCALES (not imported: no TF in the parent)
TRAIN_SIZE = (321, 321)
PIPELINE_IMAGE = (375, 500)   # H, W (a VOC landscape image)
CRF_IMAGE = (375, 500)
PIPELINE_SETTLE = 8   # examples of each pipeline run not timed (threads start, buffers fill)
GEMM_N = 2048
# The training case's base learning rate: an update does the same arithmetic at any rate, and
# random labels on random weights at the recipe's 2.5e-4 (x10 / x20 for the classifier) drive
# the loss to NaN within about 5 steps (measured), which would time NaN arithmetic.
TRAIN_BENCH_LR = 1e-7
RESULT_PREFIX = 'SPEED_RESULT '

# --quick: a smoke test. Its training step has one tower (building the gradients of three
# takes 25-50 s on 2 busy cores); everything else is the full case at a tiny size.
QUICK = dict(sizes=[(65, 65)], train_size=(65, 65), train_scales=(1.0,), crop=(65, 65),
             pipeline_image=(75, 100), crf_image=(75, 100), gemm_n=512, warmup=1, repeats=2,
             pipeline_images=4)


# ----------------------------------------------------------------------------- helpers

def peak_rss_mb(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024.0   # Linux: kilobytes


def time_runs(fn, warmup, repeats):
    """Runs fn warmup + repeats times; returns (first call seconds, [timed seconds])."""
    first = None
    for _ in range(warmup):
        t = time.perf_counter()
        fn()
        first = time.perf_counter() - t if first is None else first
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        first = times[0] if first is None else first
    return first, times


def count_flops(graph):
    """Multiply-add = 2 FLOPs of the graph's Conv2D (and gradient) and MatMul ops, from
    static shapes. Returns (flops, number of such ops with unknown shapes)."""
    total, unknown = 0, 0
    for op in graph.get_operations():
        try:
            if op.type in ('Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter'):
                if op.type == 'Conv2D':
                    out = op.outputs[0].shape.as_list()
                    k_h, k_w, c_in, _ = op.inputs[1].shape.as_list()
                elif op.type == 'Conv2DBackpropInput':
                    out = op.inputs[2].shape.as_list()     # out_backprop
                    k_h, k_w, c_in, _ = op.inputs[1].shape.as_list()
                else:
                    out = op.inputs[2].shape.as_list()
                    k_h, k_w, c_in, _ = op.outputs[0].shape.as_list()
                n, h, w, c_out = out
                total += 2 * n * h * w * c_out * k_h * k_w * c_in
            elif op.type == 'MatMul':
                a = op.inputs[0].shape.as_list()
                k = a[0] if op.get_attr('transpose_a') else a[1]
                m, n = op.outputs[0].shape.as_list()
                total += 2 * m * n * k
            elif op.type.startswith('BatchMatMul'):
                a = op.inputs[0].shape.as_list()
                adj = op.get_attr('adj_x')
                k = a[-2] if adj else a[-1]
                out = op.outputs[0].shape.as_list()
                size = 1
                for d in out:
                    size *= d
                total += 2 * size * k
        except (TypeError, ValueError):   # None in a shape
            unknown += 1
    return total, unknown


def session_config(spec):
    import tensorflow as tf
    from deeplab_resnet.runtime.session import session_config as base
    precision = spec.get('precision', 'float32')
    grappler = spec['grappler'] or precision == 'amp'
    config = base(spec['threads'], optimize_graph=grappler,
                  inference=spec.get('kind') == 'infer' and spec.get('inference_session', True))
    if precision == 'amp':
        opts = config.graph_options.rewrite_options
        opts.auto_mixed_precision_onednn_bfloat16 = \
            tf.compat.v1.ConfigProto().graph_options.rewrite_options.ON
    return config


def random_images(shape, seed=0):
    import numpy as np
    return np.random.RandomState(seed).uniform(-120.0, 130.0, shape).astype(np.float32)


def random_labels(shape, seed=0):
    """[N, H, W, 1] uint8 labels in [0, NUM_CLASSES), the last 10 columns ignored (255)."""
    import numpy as np
    lab = np.random.RandomState(seed).randint(0, NUM_CLASSES, shape).astype(np.uint8)
    lab[:, :, -10:] = 255
    return lab


# ----------------------------------------------------------------------------- cases

def case_gemm(spec):
    import tensorflow as tf
    tf1 = tf.compat.v1
    n = spec['gemm_n']
    dtype = tf.bfloat16 if spec.get('precision') == 'bfloat16' else tf.float32
    with tf.Graph().as_default() as g:
        a = tf1.Variable(tf.cast(tf1.random_normal([n, n], seed=1), dtype))
        b = tf1.Variable(tf.cast(tf1.random_normal([n, n], seed=2), dtype))
        c = tf.matmul(a, b)
        with tf1.Session(graph=g, config=session_config(spec)) as sess:
            sess.run(tf1.global_variables_initializer())
            first, times = time_runs(lambda: sess.run(c.op), spec['warmup'] + 2,
                                     max(spec['repeats'], 5))
    flops = 2 * n ** 3
    med = statistics.median(times)
    out = dict(rate=1.0 / med, unit='matmul/s', flops=flops, gflops_per_s=flops / med / 1e9,
               first_run_s=first, times_s=times, median_s=med)
    if dtype == tf.float32:
        out['numpy_gflops_per_s'], out['numpy_blas'] = numpy_gemm(
            n, spec['warmup'] + 1, max(spec['repeats'], 5))
    out['best_gflops_per_s'] = max(out['gflops_per_s'], out.get('numpy_gflops_per_s', 0.0))
    return out


def numpy_gemm(n, warmup, repeats):
    """The same GEMM through NumPy's BLAS (OpenBLAS in NumPy's wheels; its threads come from
    OPENBLAS_NUM_THREADS, which run_case_subprocess sets to --threads): (GFLOP/s, BLAS name)."""
    import numpy as np
    rng = np.random.RandomState(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    _, times = time_runs(lambda: a @ b, warmup, repeats)
    try:
        blas = np.show_config(mode='dicts')['Build Dependencies']['blas']
        name = '%s %s' % (blas.get('name'), blas.get('version'))
    except Exception:   # show_config's layout differs between NumPy versions
        name = 'unknown'
    return 2 * n ** 3 / statistics.median(times) / 1e9, name


def case_infer(spec):
    """spec['fetch_probs'] (default False): fetch the softmax probabilities with the labels
    (otherwise the session prunes the softmax, which the labels do not need)."""
    import tensorflow as tf
    from deeplab_resnet.checkpoint import checkpoints
    from deeplab_resnet.network import model, msc
    tf1 = tf.compat.v1
    h, w = spec['size']
    scales = tuple(spec['scales'])
    fold = spec.get('fold_batch_norm', True)
    t0 = time.perf_counter()
    with tf.Graph().as_default() as g:
        images = tf1.placeholder(tf.float32, [1, h, w, 3], name='images')
        towers = 'bfloat16' if spec.get('precision') == 'bfloat16' else 'float32'
        probs, labels = msc.predict_probs(images, NUM_CLASSES, scales, precision=towers,
                                          fold_batch_norm=fold)
        fetch = [probs, labels] if spec.get('fetch_probs') else labels
        flops, unknown = count_flops(g)
        init = tf1.global_variables_initializer()
        fold_op = (model.fold_batch_norm_op(checkpoints.model_variables()) if fold
                   else tf.no_op())
        build_s = time.perf_counter() - t0
        feed = {images: random_images([1, h, w, 3])}
        with tf1.Session(graph=g, config=session_config(spec)) as sess:
            sess.run(init)
            sess.run(fold_op)
            first, times = time_runs(lambda: sess.run(fetch, feed), spec['warmup'],
                                     spec['repeats'])
    med = statistics.median(times)
    return dict(rate=1.0 / med, unit='img/s', flops=flops, flops_unknown_ops=unknown,
                gflops_per_s=flops / med / 1e9, build_s=build_s, first_run_s=first,
                times_s=times, median_s=med)


def calibrate_batch_norm(images):
    """Ops setting every batch norm's moving statistics to those of `images` (one
    training-mode pass with decay 0, sharing the variables): frozen batch norm on random He
    weights with the initial 0 / 1 statistics would blow the activations up and give NaN
    weights after the first update; calibrated, the steps are those of a user fine-tuning."""
    import tensorflow as tf
    from deeplab_resnet.network.model import DeepLabResNetModel
    tf1 = tf.compat.v1
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
        net = DeepLabResNetModel({'data': images}, is_training=True, num_classes=NUM_CLASSES,
                                 moving_stats_in_place=False, bn_decay=0.0)
    return tf.group(*net.update_ops)


def case_train(spec):
    """One update of the paper's recipe (train_step.PAPER: frozen batch norm, momentum SGD,
    --grad-update-every 1; base learning rate TRAIN_BENCH_LR) on random images, as
    train_msc.py builds it, from random weights whose batch-norm statistics are those of the
    images (calibrate_batch_norm): every timed step is finite."""
    import tensorflow as tf
    from deeplab_resnet.training.train_step import PAPER, build_train_step
    tf1 = tf.compat.v1
    h, w = spec['size']
    hparams = PAPER._replace(num_classes=NUM_CLASSES, scales=tuple(spec['scales']),
                             grad_update_every=1, learning_rate=TRAIN_BENCH_LR,
                             precision='bfloat16' if spec.get('precision') == 'bfloat16'
                             else 'float32')
    t0 = time.perf_counter()
    with tf.Graph().as_default() as g:
        images = tf1.placeholder(tf.float32, [1, h, w, 3], name='images')
        labels = tf1.placeholder(tf.uint8, [1, h, w, 1], name='labels')
        step = build_train_step(images, labels, hparams)
        flops, unknown = count_flops(g)
        calibrate = calibrate_batch_norm(images)
        init = tf1.global_variables_initializer()
        build_s = time.perf_counter() - t0
        feed = {images: random_images([1, h, w, 3]), labels: random_labels([1, h, w, 1])}
        with tf1.Session(graph=g, config=session_config(spec)) as sess:
            sess.run(init)
            sess.run(calibrate, feed)
            losses = []

            def update():
                losses.append(sess.run([step.ops.apply, step.loss.total], feed)[1])
            first, times = time_runs(update, spec['warmup'], spec['repeats'])
    import math
    if not all(math.isfinite(v) for v in losses):
        raise RuntimeError('the training case diverged: losses %s' % losses)
    med = statistics.median(times)
    return dict(rate=1.0 / med, unit='step/s', flops=flops, flops_unknown_ops=unknown,
                gflops_per_s=flops / med / 1e9, build_s=build_s, first_run_s=first,
                times_s=times, median_s=med)


def write_dataset(directory, count, size_hw):
    """count JPEG images (smooth colours + noise) and palette PNG labels; returns the list."""
    import numpy as np
    from PIL import Image
    from deeplab_resnet.data.colormap import voc_palette_flat
    h, w = size_hw
    rs = np.random.RandomState(0)
    os.makedirs(os.path.join(directory, 'img'))
    os.makedirs(os.path.join(directory, 'lab'))
    yy, xx = np.mgrid[0:h, 0:w]
    lines = []
    for i in range(count):
        base = np.stack([(xx * (i + 1)) % 256, (yy * 2 + 40 * i) % 256,
                         (xx + yy) % 256], axis=-1).astype(np.float32)
        rgb = np.clip(base + rs.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(os.path.join(directory, 'img', '%03d.jpg' % i), quality=90)
        lab = ((xx // 50 + yy // 50 + i) % NUM_CLASSES).astype(np.uint8)
        lab[:4] = 255
        img = Image.fromarray(lab, 'P')
        img.putpalette(voc_palette_flat())
        img.save(os.path.join(directory, 'lab', '%03d.png' % i))
        lines.append('/img/%03d.jpg /lab/%03d.png' % (i, i))
    list_path = os.path.join(directory, 'train.txt')
    with open(list_path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return list_path


def pin_to_cpus(count):
    """Restricts this process to `count` of the CPUs it may use (the first ones); returns
    the previous set (to restore), or None where affinity is not available."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    os.sched_setaffinity(0, allowed[:max(1, count)])
    return set(allowed)


def case_pipeline(spec):
    """The training input pipeline (ImageReader: random scale, mirror, crop) and the one of
    a907866 (benchmarks/pipeline_reference.py), each in its own graph and Session, with
    the process pinned to spec['threads'] CPUs; their timed runs alternate (reference, current,
    reference, ...) so that both see the same machine load. Each run fetches
    spec['pipeline_images'] examples, batch 1. Reports images/s (wall), per CPU, and the
    process's CPU milliseconds per image (all its threads: less sensitive to other jobs).
    Each run starts its pipeline afresh and times the examples after the first
    PIPELINE_SETTLE."""
    per_run, cpus = spec['pipeline_images'], spec['threads'] or None
    previous = pin_to_cpus(cpus) if cpus else None   # before TensorFlow sizes its pools
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else cpus
    import tensorflow as tf
    from benchmarks import pipeline_reference
    from deeplab_resnet.data.image_reader import ImageReader
    tf1 = tf.compat.v1
    try:
        with tempfile.TemporaryDirectory() as tmp:
            list_path = write_dataset(tmp, 16, spec['image'])
            reader = ImageReader(tmp, list_path, tuple(spec['crop']), random_scale=True,
                                 random_mirror=True, seed=1234)
            builders = {
                'reference': lambda: pipeline_reference.training_dataset(
                    reader.examples, tuple(spec['crop']), 1, random_scale=True,
                    random_mirror=True, seed=1234),
                'current': lambda: reader.dataset(1)}
            sessions = {}
            for name, build in builders.items():
                with tf.Graph().as_default() as g:
                    ds = build()
                    iterator = tf1.data.Iterator.from_structure(
                        tf1.data.get_output_types(ds), tf1.data.get_output_shapes(ds))
                    # Starting the pipeline anew for each run, and replacing it by an empty
                    # one after, keeps the pipeline not being timed from working ahead.
                    start_stop = (iterator.make_initializer(ds),
                                  iterator.make_initializer(ds.take(0)))
                    fetch = iterator.get_next()
                sessions[name] = (tf1.Session(graph=g, config=session_config(spec)), fetch,
                                  start_stop)
            timings = dict((name, ([], [])) for name in sessions)
            load_start, first = load_average(), None
            for i in range(spec['warmup'] + spec['repeats']):
                for name, (sess, fetch, (start, stop)) in sessions.items():
                    sess.run(start)
                    for _ in range(PIPELINE_SETTLE):
                        sess.run(fetch)
                    wall, cpu = time.perf_counter(), time.process_time()
                    for _ in range(per_run):
                        sess.run(fetch)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    sess.run(stop)
                    if first is None and name == 'current':
                        first = wall
                    if i >= spec['warmup']:
                        timings[name][0].append(wall)
                        timings[name][1].append(cpu)
            for sess, _, _ in sessions.values():
                sess.close()
    finally:
        if previous:
            os.sched_setaffinity(0, previous)
    result = dict(unit='img/s', images_per_run=per_run, load_average_case=[load_start,
                                                                          load_average()],
                  cpus=cpus or os.cpu_count(), first_run_s=first)   # the CPUs it had
    for name, (walls, cpu_times) in timings.items():
        med = statistics.median(walls)
        prefix = '' if name == 'current' else 'reference_'
        result.update({prefix + 'rate': per_run / med, prefix + 'median_s': med,
                       prefix + 'times_s': walls,
                       prefix + 'rate_per_cpu': per_run / med / result['cpus'],
                       prefix + 'cpu_ms_per_image': 1000 * statistics.median(cpu_times) / per_run})
    result['speedup_vs_reference'] = result['rate'] / result['reference_rate']
    return result


def _crf_inputs(size_hw, seed):
    import numpy as np
    h, w = size_hw
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.float32)
    rgb = np.clip(rgb + rs.normal(0, 10, rgb.shape), 0, 255).astype(np.uint8)
    # Smooth logits: coarse random field upsampled (nearest) plus noise, then softmax.
    coarse = rs.normal(0, 3, (h // 25 + 1, w // 25 + 1, NUM_CLASSES))
    logits = coarse.repeat(25, 0).repeat(25, 1)[:h, :w] + rs.normal(0, 1, (h, w, NUM_CLASSES))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return rgb, (e / e.sum(-1, keepdims=True)).astype(np.float32)


def case_crf(spec):
    from deeplab_resnet.predict.crf import CRFPool
    workers = spec['workers']
    inputs = [_crf_inputs(spec['image'], s) for s in range(2)]
    per_run = 2 * workers

    with CRFPool(num_workers=workers) as pool:
        def run():
            for i in range(per_run):
                image, probs = inputs[i % 2]
                pool.submit(i, image, probs)
            for _ in pool.results():
                pass
        first, times = time_runs(run, spec['warmup'], spec['repeats'])
        workers_rss = _workers_peak_rss_mb(pool)
    med = statistics.median(times)
    return dict(rate=per_run / med, unit='img/s', first_run_s=first, times_s=times,
                median_s=med, images_per_run=per_run, workers_peak_rss_mb=workers_rss)


def _workers_peak_rss_mb(pool):
    """Largest VmHWM of the pool's worker processes (fresh interpreters, so their own
    peak), or None where /proc or the executor's process table is unavailable."""
    try:
        pids = list(pool._executor._processes)
        peaks = []
        for pid in pids:
            with open('/proc/%d/status' % pid) as f:
                peaks += [int(l.split()[1]) / 1024.0 for l in f if l.startswith('VmHWM')]
        return max(peaks) if peaks else None
    except (AttributeError, OSError, ValueError):
        return None


CASES = {'gemm': case_gemm, 'infer': case_infer, 'train': case_train,
         'pipeline': case_pipeline, 'crf': case_crf}


def run_case(spec):
    """Runs one case in this process; returns its result dict (spec fields included)."""
    t = time.perf_counter()
    result = dict(spec)
    result.update(CASES[spec['kind']](spec))
    result['peak_rss_mb'] = peak_rss_mb()
    result['case_wall_s'] = time.perf_counter() - t
    if 'tensorflow' in sys.modules:
        result['tensorflow'] = sys.modules['tensorflow'].__version__
    return result


def run_case_subprocess(spec, script=None):
    """Runs one case in a child `python <script> --run-case <spec json>` (this file by
    default; another script that answers --run-case the same way, e.g. with cases it adds to
    CASES); returns its result dict."""
    script = script or __file__
    cmd = [sys.executable, os.path.abspath(script), '--run-case', json.dumps(spec)]
    env = dict(os.environ)
    if spec.get('threads'):
        env['OPENBLAS_NUM_THREADS'] = str(spec['threads'])   # NumPy's GEMM, as TensorFlow's
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError('case %s failed (exit %d):\n%s' % (spec['name'], proc.returncode,
                                                          proc.stderr[-4000:]))


# ----------------------------------------------------------------------------- plan

def parse_size(text):
    h, w = text.lower().split('x')
    return int(h), int(w)


def build_specs(args):
    quick = QUICK if args.quick else {}
    sizes = quick.get('sizes') or [parse_size(s) for s in args.sizes.split(',') if s]
    scale_sets = [tuple(float(s) for s in group.split(',') if s)
                  for group in args.scales.replace(';', '|').split('|') if group.strip()]
    precisions = [p for p in args.precision.split(',') if p]
    modes = ['infer', 'train', 'pipeline', 'crf'] if args.mode == 'all' else [args.mode]
    common = dict(threads=args.threads, grappler=args.grappler,
                  fold_batch_norm=not args.unfolded_bn,
                  inference_session=not args.plain_session,
                  warmup=quick.get('warmup', args.warmup),
                  repeats=quick.get('repeats', args.repeats))
    specs = []
    needs_bf16 = 'bfloat16' in precisions or 'amp' in precisions
    if 'infer' in modes or 'train' in modes:
        for p in ['float32'] + (['bfloat16'] if needs_bf16 else []):
            specs.append(dict(common, kind='gemm', name='gemm_%s' % p, precision=p,
                              gemm_n=quick.get('gemm_n', GEMM_N)))
    if 'infer' in modes:
        for p in precisions:
            for (h, w) in sizes:
                for scales in scale_sets:
                    name = 'infer_%dx%d_%dscale%s' % (h, w, len(scales),
                                                       '' if p == 'float32' else '_' + p)
                    specs.append(dict(common, kind='infer', name=name, size=[h, w],
                                      scales=list(scales), precision=p))
    if 'train' in modes:
        size = quick.get('train_size') or parse_size(args.train_size)
        scales = quick.get('train_scales', TRAIN_SCALES)
        for p in [p for p in precisions if p in ('float32', 'bfloat16')]:
            specs.append(dict(common, kind='train', name='train_%dx%d_%dscale%s' % (
                size + (len(scales), '' if p == 'float32' else '_' + p)), size=list(size),
                scales=list(scales), precision=p))
    if 'pipeline' in modes:
        crop = quick.get('crop') or parse_size(args.train_size)
        image = quick.get('pipeline_image', PIPELINE_IMAGE)
        for threads in [int(t) for t in args.pipeline_threads.split(',') if t]:
            specs.append(dict(common, kind='pipeline', crop=list(crop), image=list(image),
                              threads=threads,
                              name='pipeline_%dx%d_crop%dx%d_%dcpu' % (
                                  image[1], image[0], crop[0], crop[1], threads),
                              pipeline_images=quick.get('pipeline_images',
                                                        args.pipeline_images)))
    if 'crf' in modes:
        image = quick.get('crf_image', CRF_IMAGE)
        for workers in (1, 2):
            specs.append(dict(common, kind='crf', workers=workers, image=list(image),
                              name='crf_%dx%d_%dworker' % (image[1], image[0], workers)))
    return specs


def finish(results):
    """Adds the fraction of the measured GEMM peak and the pipeline / training ratio."""
    gemm = {r['precision']: r for r in results if r['kind'] == 'gemm'}
    train = [r for r in results if r['kind'] == 'train']
    for r in results:
        if r['kind'] in ('infer', 'train') and 'float32' in gemm:
            # The machine's fp32 GEMM rate: the best of TensorFlow's and NumPy's BLAS.
            r['fraction_of_fp32_gemm_peak'] = (r['gflops_per_s']
                                               / gemm['float32']['best_gflops_per_s'])
            if r['precision'] != 'float32' and 'bfloat16' in gemm:
                r['fraction_of_bf16_gemm_peak'] = (r['gflops_per_s']
                                                   / gemm['bfloat16']['gflops_per_s'])
        if r['kind'] == 'pipeline' and train:
            # A training step consumes batch (1) images.
            r['ratio_vs_train_consumption'] = r['rate'] / train[0]['rate']
    return results


def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


CPU_FEATURES = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16')
"""The CPU flags that decide the fast paths (oneDNN's kernels, bfloat16), reported with every
run: the same figures mean little across CPUs."""


def cpu_model():
    """'AMD EPYC (family 25 model 17)': /proc/cpuinfo's model name, family and model."""
    fields = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor()
    if 'cpu family' in fields and 'model' in fields:
        return '%s (family %s model %s)' % (fields.get('model name', '?'), fields['cpu family'],
                                            fields['model'])
    return fields.get('model name') or platform.processor()


def cpu_features():
    """{flag: present} for CPU_FEATURES."""
    from deeplab_resnet.runtime.precision import cpu_flags
    flags = cpu_flags()
    return dict((f, f in flags) for f in CPU_FEATURES)


def cpu_line(meta):
    """'CPU: <model>, N cores; flags: avx2 ... (none of: amx_tile ...)' from meta."""
    have = [f for f in CPU_FEATURES if meta['cpu_flags'].get(f)]
    lack = [f for f in CPU_FEATURES if not meta['cpu_flags'].get(f)]
    return 'CPU: %s, %s cores; flags: %s%s' % (
        meta['cpu'], meta['cpu_count'], ' '.join(have) or 'none of ' + ' '.join(CPU_FEATURES),
        ' (none of: %s)' % ' '.join(lack) if have and lack else '')


def format_table(results):
    head = ('case', 'rate', 'unit', 'median s', 'GFLOP', 'GFLOP/s', '%peak', 'first s',
            'RSS MB', 'note')
    rows = []
    for r in results:
        note = ''
        if r['kind'] == 'pipeline':
            note = pipeline_note(r)
        if r.get('workers_peak_rss_mb'):
            note = 'each worker %.0f MB' % r['workers_peak_rss_mb']
        if 'fraction_of_bf16_gemm_peak' in r:
            note = '%.0f%% of bf16 peak' % (100 * r['fraction_of_bf16_gemm_peak'])
        frac = r.get('fraction_of_fp32_gemm_peak')
        rows.append((r['name'], '%.3f' % r['rate'], r['unit'], '%.3f' % r['median_s'],
                     '%.1f' % (r['flops'] / 1e9) if r.get('flops') else '-',
                     '%.1f' % r['gflops_per_s'] if r.get('gflops_per_s') else '-',
                     '%.0f%%' % (100 * frac) if frac is not None else '-',
                     '%.1f' % r['first_run_s'], '%.0f' % r['peak_rss_mb'], note))
    return aligned_table(head, rows)


def pipeline_note(r):
    """'2 CPU: 103.6 img/s per CPU, 5.7 CPU ms/img; a907866: 51.0 img/s per CPU, 12.0 CPU
    ms/img; 2.03x[; 9.1x training need]' for a pipeline case."""
    note = ('%d CPU: %.1f img/s per CPU, %.1f CPU ms/img; a907866: %.1f img/s per CPU, %.1f '
            'CPU ms/img; %.2fx' % (r['cpus'], r['rate_per_cpu'], r['cpu_ms_per_image'],
                                   r['reference_rate_per_cpu'],
                                   r['reference_cpu_ms_per_image'],
                                   r['speedup_vs_reference']))
    if 'ratio_vs_train_consumption' in r:
        note += '; %.1fx training need' % r['ratio_vs_train_consumption']
    return note


def aligned_table(head, rows):
    """Left-aligned columns two spaces apart, a dashed rule under the header."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: '  '.join(str(c).ljust(wd) for c, wd in zip(cells, widths)).rstrip()
    return '\n'.join([line(head), line(['-' * wd for wd in widths])] + [line(r) for r in rows])


def add_inference_arguments(p):
    """--sizes and --scales, as speed.py and compare_pytorch.py take them."""
    p.add_argument('--sizes', default='321x321,513x513,375x500',
                   help='inference sizes HxW, comma-separated (default %(default)s)')
    p.add_argument('--scales', default='1.0|1.0,0.75,0.5',
                   help="inference scale sets separated by '|' (default %(default)s)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_inference_arguments(p)
    p.add_argument('--train-size', default='321x321', help='training crop (default %(default)s)')
    p.add_argument('--mode', default='all', choices=['infer', 'train', 'pipeline', 'crf', 'all'])
    p.add_argument('--threads', type=int, default=0,
                   help='intra-op threads (0: TensorFlow default), as --threads of the scripts')
    p.add_argument('--precision', default='float32',
                   help='inference precisions, comma-separated: float32, bfloat16 (towers '
                        'cast to bfloat16 in the graph), amp (Grappler oneDNN bfloat16 '
                        'auto-mixed-precision; turns Grappler on)')
    p.add_argument('--grappler', action='store_true',
                   help='run Grappler (session.session_config(optimize_graph=True))')
    p.add_argument('--unfolded-bn', action='store_true',
                   help='inference with batch norm as its own multiply-add (the training '
                        "graph's form) instead of folded into the kernels, as the scripts run")
    p.add_argument('--plain-session', action='store_true',
                   help="inference sessions configured as training's (Grappler off, 2 "
                        "inter-op threads) instead of session.session_config(inference=True), "
                        "the scripts' (fused convolutions, 1 inter-op thread)")
    p.add_argument('--pipeline-threads', default='1,2',
                   help='CPUs the pipeline case runs on, one case per number, comma-separated '
                        '(the process is pinned to that many CPUs; default %(default)s)')
    p.add_argument('--pipeline-images', type=int, default=80,
                   help='examples per timed run of the pipeline case (default %(default)s)')
    p.add_argument('--repeats', type=int, default=7, help='timed runs (default %(default)s)')
    p.add_argument('--warmup', type=int, default=1, help='warm-up runs (default %(default)s)')
    p.add_argument('--quick', action='store_true',
                   help='tiny sizes, 1 warm-up + 2 timed runs (a smoke test)')
    p.add_argument('--in-process', action='store_true',
                   help='run every case in this process (peak RSS is then cumulative; the '
                        'default with --quick, to import TensorFlow once)')
    p.add_argument('--json', help='write the results here')
    p.add_argument('--run-case', help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.run_case:
        result = run_case(json.loads(args.run_case))
        print(RESULT_PREFIX + json.dumps(result))
        return 0

    for prec in args.precision.split(','):
        if prec and prec not in ('float32', 'bfloat16', 'amp'):
            p.error('unknown precision %r' % prec)
    specs = build_specs(args)
    meta = dict(command=' '.join([os.path.basename(sys.executable)] + sys.argv),
                argv=sys.argv[1:], quick=args.quick, threads=args.threads,
                grappler=args.grappler, cpu=cpu_model(), cpu_count=os.cpu_count(),
                cpu_flags=cpu_features(),
                python=platform.python_version(), load_average_start=load_average(),
                started=time.strftime('%Y-%m-%dT%H:%M:%S'))
    meta['isolated'] = isolated = not (args.in_process or args.quick)
    results = []
    for spec in specs:
        print('... %s' % spec['name'], file=sys.stderr, flush=True)
        results.append(run_case_subprocess(spec) if isolated else run_case(spec))
    finish(results)
    meta['load_average_end'] = load_average()
    meta['tensorflow'] = next((r['tensorflow'] for r in results if r.get('tensorflow')), None)
    print(format_table(results))
    print(cpu_line(meta))
    print(load_average_line(meta))
    write_json(args.json, meta, results)
    return 0


def load_average_line(meta):
    """'load average (1, 5, 15 min): start a, b, c, end d, e, f' from meta's
    load_average_start / load_average_end."""
    return 'load average (1, 5, 15 min): start %s, end %s' % (
        ', '.join('%.2f' % x for x in meta['load_average_start'] or []),
        ', '.join('%.2f' % x for x in meta['load_average_end'] or []))


def write_json(path, meta, cases):
    """Writes {'meta': meta, 'cases': cases} to path (nothing when path is empty)."""
    if path:
        with open(path, 'w') as f:
            json.dump({'meta': meta, 'cases': cases}, f, indent=1)


if __name__ == '__main__':
    sys.exit(main())
