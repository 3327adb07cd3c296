#!/usr/bin/env python
"""One-shot GPU check of the DeepLab-v2 ResNet-101 suite: run it once on your GPU machine.

    pip install "tensorflow[and-cuda]"   # TensorFlow's CUDA build (see docs/gpu.md)
    python benchmarks/gpu_check.py [--batch 10] [--xla] [--json gpu_check.json]
    python benchmarks/gpu_check.py --smoke      # on a CPU: tiny sizes, that it runs at all

Nothing is downloaded: random weights (batch norm calibrated on the inputs), generated
images. Each phase runs in a child process (its own GPU memory peak; --smoke: all in this
process, one training, one inference and one tiling graph) and one table ends the run:

  env        the devices line, TensorFlow's CUDA / cuDNN build, TF32, the precision chosen
             for --precision bfloat16 (precision.choose), a large GEMM per precision: the
             card's measured peak, against which the network's TFLOP/s are given.
  train_*    the default recipe's update (3 towers, frozen batch norm, momentum SGD) at
             321x321 in float32 and in the fast precision, at batch 1 and --batch: s/step,
             img/s, TFLOP/s (FLOPs counted from the graph's shapes), peak GPU memory
             (tf.config.experimental.get_memory_info). train_float32_b1 also traces one
             step (RunMetadata step_stats) and names the op types that ran on the CPU.
  pipeline   ImageReader (decode, random scale, mirror, crop) on generated 500x375 JPEG +
             palette PNG pairs at --batch: img/s, against what train_*_b<batch> consumes.
  infer      3-scale inference (batch norm folded, the scripts' inference session): latency
             of the first image of a new size (cuDNN autotunes every new shape) vs a
             repeated size.
  tile       a 1024x2048 image (Cityscapes) at 3 scales, whole (as infer) and in windows of
             513x513 (--tile 513,513, the default stride; tiling.tiled_predict) in one graph:
             s/step of each, peak GPU memory of each, the window count, and the share of
             pixels labelled alike (random weights: a sanity figure, not an accuracy);
             the Predictor's progress hook (a py_func inside the window loop) must be
             called once per window, in order, on the GPU too.
  two        two replicas (MirroredStrategy: NCCL over two GPUs), batch 1 each, frozen batch
             norm, and with --is-training --sync-batch-norm (one all-reduce per batch norm
             and pass, and one per moving average); skipped with one GPU (virtual GPUs would
             measure rings, not NCCL).
  det        --deterministic (op determinism): two fresh sessions, two updates each, must
             give bitwise the same losses and weights; an op without a deterministic GPU
             kernel is named.
  xla        (--xla) auto-clustering (global_jit_level ON_1) of the fast-precision update at
             --batch: compile time and s/step; offered only as a measured option.

Under 10 minutes on one GPU (mostly graph building: 15-30 s per training graph).
"""
import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)

import deeplab_resnet   # noqa: E402,F401  (TensorFlow's start-up lines held, as the scripts')
import speed   # noqa: E402  (benchmarks/speed.py: timing, FLOP counting, data, child runs)

NUM_CLASSES = speed.NUM_CLASSES
TRAIN_SCALES = speed.TRAIN_SCALES
FULL = dict(size=(321, 321), scales=TRAIN_SCALES, warmup=3, repeats=10, gemm_n=8192,
            pipeline_image=speed.PIPELINE_IMAGE, pipeline_images=200,
            infer_sizes=[(375, 500), (500, 375), (513, 513)], infer_scales=TRAIN_SCALES,
            tile_size=(1024, 2048), tile_scales=TRAIN_SCALES, tile=(513, 513), det_steps=2)
SMOKE = dict(size=(33, 33), scales=(1.0,), warmup=1, repeats=2, gemm_n=256,
             pipeline_image=(45, 60), pipeline_images=4, infer_sizes=[(33, 33), (41, 49)],
             infer_scales=(1.0,), tile_size=(41, 73), tile_scales=(1.0,), tile=(33, 33),
             det_steps=1)
SMOKE_BATCH = 1
DTYPES = {'float32': 'float32', 'bfloat16': 'bfloat16', 'float16': 'float16'}

# ---------------------------------------------------------------------- the fast precision
# float16 (with loss scaling) is the fast precision of GPUs before compute capability 8.0
# (V100, T4), where bfloat16 is float32 plus casts. When --precision float16 lands, list it
# here: fast_precision() then takes precision.choose's answer for it on such GPUs.
FAST_PRECISION_CANDIDATES = ('bfloat16', 'float16')   # in order of preference


def fast_precision(warn=lambda message: None):
    """The first of FAST_PRECISION_CANDIDATES that precision.choose keeps on this machine
    (its public function decides, with its warning), else 'float32'. float16 only on a GPU:
    on a CPU it runs (precision.choose keeps it) but many times slower than float32."""
    from deeplab_resnet.runtime import precision
    on_gpu = precision.gpu_compute_capability() is not None
    for candidate in FAST_PRECISION_CANDIDATES:
        if candidate == 'float16' and not on_gpu:
            continue
        if precision.choose(candidate, warn) == candidate:
            return candidate
    return 'float32'


# ----------------------------------------------------------------------------- helpers

def gpu_memory_peak_mb():
    """The largest peak of the GPUs' allocators (MB) since the process started, or None."""
    import tensorflow as tf
    peaks = []
    for gpu in tf.config.list_logical_devices('GPU'):
        try:
            peaks.append(tf.config.experimental.get_memory_info(gpu.name)['peak'] / 2.0 ** 20)
        except (ValueError, RuntimeError):
            pass
    return max(peaks) if peaks else None


def reset_gpu_memory_peak():
    """Starts the GPUs' peaks afresh (from what is allocated now); nothing without a GPU."""
    import tensorflow as tf
    for gpu in tf.config.list_logical_devices('GPU'):
        tf.config.experimental.reset_memory_stats(gpu.name)


def ops_by_device(graph, run_metadata):
    """From a traced step: {'cpu_op_types': {type: count}, 'gpu_ops': n, 'cpu_ops': n} for
    the graph's own ops (the executor's sends, receives and sources left out)."""
    cpu_types, counts = {}, {'cpu_ops': 0, 'gpu_ops': 0}
    for dev in run_metadata.step_stats.dev_stats:
        name = dev.device.lower()
        if '/stream' in name or ('cpu:' not in name and 'gpu:' not in name):
            continue   # the per-stream copies of a GPU trace repeat its kernels
        kind = 'gpu' if 'gpu:' in name else 'cpu'
        for node in dev.node_stats:
            try:
                op_type = graph.get_operation_by_name(node.node_name.split(':')[0]).type
            except (KeyError, ValueError):
                continue
            counts[kind + '_ops'] += 1
            if kind == 'cpu':
                cpu_types[op_type] = cpu_types.get(op_type, 0) + 1
    return dict(counts, cpu_op_types=cpu_types)


def train_config(spec, cluster_config):
    """The run's Session config: the scripts' (session.session_config via distribute.setup),
    plus XLA auto-clustering with spec['xla']."""
    import tensorflow as tf
    config = tf.compat.v1.ConfigProto()
    config.CopyFrom(cluster_config)
    if spec.get('xla'):
        config.graph_options.optimizer_options.global_jit_level = (
            tf.compat.v1.OptimizerOptions.ON_1)
    return config


# ----------------------------------------------------------------------------- cases

def case_env(spec):
    """Devices line, build facts and the measured GEMM peak per precision."""
    import tensorflow as tf
    from deeplab_resnet.runtime import devices
    lines = []
    gpus = devices.log_devices(lines.append, lambda m: lines.append('warning: ' + m))
    build = {}
    try:
        build = dict((k, str(v)) for k, v in tf.sysconfig.get_build_info().items()
                     if k in ('cuda_version', 'cudnn_version', 'is_cuda_build'))
    except Exception:   # the build info differs between wheels
        pass
    chosen = []
    fast = fast_precision(chosen.append)
    peaks = {}
    for precision in ['float32'] + ([fast] if fast != 'float32' else []):
        peaks[precision] = gemm_tflops(spec['gemm_n'], precision, spec['warmup'])
    return dict(devices_line=lines, gpus=[devices.describe_gpu(g) for g in gpus],
                build=build, tf32=tf.config.experimental.tensor_float_32_execution_enabled(),
                fast_precision=fast, precision_notes=chosen, gemm_tflops=peaks,
                driver=devices.nvidia_driver(), cpu=speed.cpu_model(),
                memory_growth=os.environ.get('TF_FORCE_GPU_ALLOW_GROWTH'))


def gemm_tflops(n, precision, warmup):
    """A [n, n] x [n, n] matmul in `precision` on the default device: TFLOP/s (median)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    dtype = getattr(tf, DTYPES[precision])
    with tf.Graph().as_default() as g:
        a = tf1.Variable(tf.cast(tf1.random_normal([n, n], seed=1), dtype))
        b = tf1.Variable(tf.cast(tf1.random_normal([n, n], seed=2), dtype))
        c = tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32))   # little to copy back
        with tf1.Session(graph=g, config=_plain_config()) as sess:
            sess.run(tf1.global_variables_initializer())
            _, times = speed.time_runs(lambda: sess.run(c), warmup + 1, 5)
    return 2.0 * n ** 3 / statistics.median(times) / 1e12


def _plain_config():
    from deeplab_resnet.runtime.session import session_config
    return session_config()


def case_train(spec):
    """spec: size, scales, batch (per replica), precision, replicas, warmup, repeats; trace,
    det (two fresh sessions compared), xla, sync_batch_norm (with --is-training). One graph;
    with a strategy for replicas > 1."""
    import tensorflow as tf
    from deeplab_resnet.runtime import devices, distribute
    from deeplab_resnet.runtime.session import session_config
    from deeplab_resnet.training.train_step import PAPER, build_train_step
    tf1 = tf.compat.v1
    if spec.get('deterministic'):
        devices.make_deterministic(1234)
    h, w = spec['size']
    n = spec['batch']
    hparams = PAPER._replace(num_classes=NUM_CLASSES, scales=tuple(spec['scales']),
                             grad_update_every=1, learning_rate=speed.TRAIN_BENCH_LR,
                             precision=spec['precision'],
                             is_training=spec.get('sync_batch_norm', False),
                             sync_batch_norm=spec.get('sync_batch_norm', False))
    images_np = speed.random_images([n, h, w, 3])
    labels_np = speed.random_labels([n, h, w, 1])
    t0 = time.perf_counter()
    with tf.Graph().as_default() as g:
        tf1.set_random_seed(1234)
        cluster = distribute.setup(spec['replicas'], session_config(), log=lambda m: None)

        def replica_step():
            images, labels = tf.constant(images_np), tf.constant(labels_np)
            step = build_train_step(images, labels, hparams)
            return step.loss.total, step.ops.apply, speed.calibrate_batch_norm(images)

        scope = cluster.strategy.scope() if cluster.strategy else _null()
        with scope:
            tf1.train.get_or_create_global_step()
            loss, apply_op, calibrate = distribute.per_replica_call(
                cluster, tf.autograph.experimental.do_not_convert(replica_step))
            loss = distribute.reduce_sum(cluster, loss)
            apply_op = distribute.group(cluster, apply_op)
            calibrate = distribute.group(cluster, calibrate)
        flops, unknown = speed.count_flops(g)
        init = tf1.global_variables_initializer()
        variables = tf1.trainable_variables()
        build_s = time.perf_counter() - t0
        config = train_config(spec, cluster.config)
        out = dict(build_s=build_s, flops=flops, flops_unknown_ops=unknown,
                   images_per_step=n * spec['replicas'], graph_ops=len(g.get_operations()))
        with tf1.Session(graph=g, config=config) as sess:
            sess.run(init)
            sess.run(calibrate)
            losses = []
            first, times = speed.time_runs(
                lambda: losses.append(float(sess.run([apply_op, loss])[1])), spec['warmup'],
                spec['repeats'])
            if spec.get('trace'):
                metadata = tf1.RunMetadata()
                sess.run(apply_op, options=tf1.RunOptions(
                    trace_level=tf1.RunOptions.FULL_TRACE), run_metadata=metadata)
                out['placement'] = ops_by_device(g, metadata)
        if spec.get('det'):
            out['det'] = _same_twice(g, config, init, calibrate, apply_op, loss, variables,
                                     spec['det_steps'])
    if not all(math.isfinite(v) for v in losses):
        raise RuntimeError('the training case diverged: losses %s' % losses)
    med = statistics.median(times)
    out.update(median_s=med, times_s=times, first_run_s=first, rate=out['images_per_step'] / med,
               unit='img/s', tflops_per_s=flops / med / 1e12, gpu_peak_mb=gpu_memory_peak_mb(),
               losses=losses)
    return out


def _same_twice(graph, config, init, calibrate, apply_op, loss, variables, steps):
    """Two fresh sessions of one graph (same seeds), `steps` updates each: {'equal': bool,
    'losses': [[...], [...]]}; the variables are compared bitwise too."""
    import numpy as np
    import tensorflow as tf
    tf1 = tf.compat.v1
    runs = []
    for _ in range(2):
        with tf1.Session(graph=graph, config=config) as sess:
            sess.run(init)
            sess.run(calibrate)
            losses = [float(sess.run([apply_op, loss])[1]) for _ in range(steps)]
            runs.append((losses, sess.run(variables)))
    equal = runs[0][0] == runs[1][0] and all(
        np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    return dict(equal=bool(equal), losses=[runs[0][0], runs[1][0]])


class _null(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def case_det(spec):
    """case_train with op determinism; an op without a deterministic kernel is reported."""
    import tensorflow as tf
    try:
        return case_train(dict(spec, deterministic=True, det=True))
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as e:
        return dict(det=dict(equal=False, error=str(e).splitlines()[0][:300]), rate=None)


def case_infer(spec):
    """Latency of the first image of each new size and the median of repeated ones, in the
    scripts' inference graph (dynamic size, batch norm folded) and session."""
    import tensorflow as tf
    from deeplab_resnet.checkpoint import checkpoints
    from deeplab_resnet.network import model, msc
    from deeplab_resnet.runtime.session import session_config
    tf1 = tf.compat.v1
    with tf.Graph().as_default() as g:
        images = tf1.placeholder(tf.float32, [1, None, None, 3])
        _, labels = msc.predict_probs(images, NUM_CLASSES, tuple(spec['scales']),
                                      precision=spec['precision'], fold_batch_norm=True)
        init = tf1.global_variables_initializer()
        fold = model.fold_batch_norm_op(checkpoints.model_variables())
        sizes = []
        with tf1.Session(graph=g, config=session_config(inference=True)) as sess:
            sess.run(init)
            sess.run(fold)
            for h, w in spec['sizes']:
                feed = {images: speed.random_images([1, h, w, 3])}
                first, times = speed.time_runs(lambda: sess.run(labels, feed), 1,
                                               spec['repeats'])
                sizes.append(dict(size=[h, w], new_s=first, repeated_s=statistics.median(times)))
    new = statistics.median(s['new_s'] for s in sizes[1:] or sizes)
    repeated = statistics.median(s['repeated_s'] for s in sizes)
    return dict(sizes=sizes, new_size_s=new, repeated_size_s=repeated, rate=1.0 / repeated,
                unit='img/s', gpu_peak_mb=gpu_memory_peak_mb())


def case_tile(spec):
    """One image of spec['size'] segmented whole (msc.predict_probs, as the Predictor) and in
    windows of spec['tile'] (tiling.tiled_predict, the default stride) in one graph sharing
    the variables (batch norm folded): seconds, peak GPU memory of each (reset between), the
    window count and the share of pixels whose labels agree. A whole image that runs out of
    GPU memory is reported as such; the tiled one still runs."""
    import numpy as np
    import tensorflow as tf
    from deeplab_resnet.checkpoint import checkpoints
    from deeplab_resnet.common.constants import IMG_MEAN_BGR
    from deeplab_resnet.common.windows import num_windows, strides_of
    from deeplab_resnet.data.image_reader import preprocess_image
    from deeplab_resnet.network import model, msc
    from deeplab_resnet.predict import tiling
    from deeplab_resnet.runtime.session import session_config
    tf1 = tf.compat.v1
    h, w = spec['size']
    tile, scales = tuple(spec['tile']), tuple(spec['scales'])
    with tf.Graph().as_default() as g:
        rgb = tf1.placeholder(tf.uint8, [None, None, 3])
        whole = msc.predict_probs(preprocess_image(rgb[None], IMG_MEAN_BGR), NUM_CLASSES,
                                  scales, precision=spec['precision'],
                                  fold_batch_norm=True)[1][0]   # creates the variables
        reports = []   # the Predictor's progress hook (a py_func inside the window loop)
        tiled = tiling.tiled_predict(rgb, NUM_CLASSES, tile, None, scales,
                                     precision=spec['precision'], fold_batch_norm=True,
                                     on_window=lambda done, total: reports.append(done))[0]
        init = tf1.global_variables_initializer()
        fold = model.fold_batch_norm_op(checkpoints.model_variables())
        feed = {rgb: np.random.RandomState(0).randint(0, 256, [h, w, 3]).astype(np.uint8)}
        out = dict(windows=num_windows(h, w, tile), stride=list(strides_of(tile, None)))
        with tf1.Session(graph=g, config=session_config(inference=True)) as sess:
            sess.run(init)
            sess.run(fold)
            for key, labels in (('whole', whole), ('tiled', tiled)):
                reset_gpu_memory_peak()
                got = []
                try:
                    first, times = speed.time_runs(lambda: got.append(sess.run(labels, feed)),
                                                   1, spec['repeats'])
                except tf.errors.ResourceExhaustedError:
                    if key == 'tiled':
                        raise
                    out.update(whole_s=None, whole_first_s=None, whole_gpu_mb=None,
                               whole_error='out of GPU memory')
                    continue
                out.update({key + '_s': statistics.median(times), key + '_first_s': first,
                            key + '_gpu_mb': gpu_memory_peak_mb(), key + '_labels': got[-1]})
    runs = 1 + spec['repeats']
    out['hook_in_order'] = reports == runs * list(range(out['windows'] + 1))
    tiled_labels, whole_labels = out.pop('tiled_labels'), out.pop('whole_labels', None)
    if out['whole_s']:
        out.update(ratio=out['tiled_s'] / out['whole_s'],
                   agreement=float(np.mean(tiled_labels == whole_labels)))
    return dict(out, median_s=out['tiled_s'], first_run_s=out['tiled_first_s'],
                rate=1.0 / out['tiled_s'], unit='img/s', gpu_peak_mb=out['tiled_gpu_mb'])


def case_pipeline(spec):
    """ImageReader's training batches of spec['batch'] from generated images: img/s."""
    import tensorflow as tf
    from deeplab_resnet.data.image_reader import ImageReader
    from deeplab_resnet.runtime.session import session_config
    tf1 = tf.compat.v1
    batches = max(1, spec['pipeline_images'] // spec['batch'])
    with tempfile.TemporaryDirectory() as tmp:
        list_path = speed.write_dataset(tmp, 16, spec['image'])
        with tf.Graph().as_default() as g:
            tf1.set_random_seed(1234)   # as train_msc.py: op determinism needs a seed
            reader = ImageReader(tmp, list_path, tuple(spec['size']), random_scale=True,
                                 random_mirror=True, seed=1234)
            batch = reader.dequeue(spec['batch'])
            with tf1.Session(graph=g, config=session_config()) as sess:
                def run():
                    for _ in range(batches):
                        sess.run(batch)
                first, times = speed.time_runs(run, 1, max(2, spec['repeats'] // 3))
    med = statistics.median(times)
    return dict(rate=batches * spec['batch'] / med, unit='img/s', median_s=med,
                first_run_s=first)


CASES = {'env': case_env, 'train': case_train, 'det': case_det, 'infer': case_infer,
         'tile': case_tile, 'pipeline': case_pipeline}
speed.CASES.update(('gpu_' + k, v) for k, v in CASES.items())


# ----------------------------------------------------------------------------- plan

def plan(args, num_gpus):
    """[(spec or None, why skipped)] in the order they run."""
    sizes = SMOKE if args.smoke else FULL
    batch = SMOKE_BATCH if args.smoke else args.batch
    base = dict(size=list(sizes['size']), scales=list(sizes['scales']), warmup=sizes['warmup'],
                repeats=sizes['repeats'], det_steps=sizes['det_steps'], threads=0)
    fast = args.fast_precision

    def train(name, precision, n, replicas=1, **extra):
        return dict(base, kind='gpu_train', name=name, precision=precision, batch=n,
                    replicas=replicas, **extra)
    steps = [(dict(base, kind='gpu_env', name='env', gemm_n=sizes['gemm_n']), None)]
    if args.smoke:
        # One training graph, traced and run twice under op determinism; one inference graph
        # and one tiling graph (below, as in a full run).
        steps.append((train('train_float32_b1', 'float32', 1, trace=True, det=True,
                            deterministic=True), None))
        for name in ('train_float32_b%d' % args.batch, 'train_%s' % fast, 'two_float32_b1',
                     'det_float32_b1'):
            steps.append((None, (name, '--smoke: one training graph (train_float32_b1, '
                                 'deterministic)')))
    else:
        steps.append((train('train_float32_b1', 'float32', 1, trace=True), None))
        steps.append((train('train_float32_b%d' % batch, 'float32', batch), None))
        if fast != 'float32':
            steps.append((train('train_%s_b1' % fast, fast, 1), None))
            steps.append((train('train_%s_b%d' % (fast, batch), fast, batch), None))
        else:
            steps.append((None, ('train_<fast precision>', 'precision.choose keeps float32 '
                                 'here (see env)')))
        if num_gpus >= 2:
            steps.append((train('two_float32_b1', 'float32', 1, 2), None))
            steps.append((train('two_sync_float32_b1', 'float32', 1, 2, sync_batch_norm=True),
                          None))
        else:
            for name in ('two_float32_b1', 'two_sync_float32_b1'):
                steps.append((None, (name, 'needs two GPUs (%d visible)' % num_gpus)))
        steps.append((dict(train('det_float32_b1', 'float32', 1), kind='gpu_det'), None))
        if args.xla:
            steps.append((train('xla_%s_b%d' % (fast, batch), fast, batch, xla=True), None))
    steps.append((dict(base, kind='gpu_pipeline', name='pipeline_b%d' % batch, batch=batch,
                       image=list(sizes['pipeline_image']),
                       pipeline_images=sizes['pipeline_images']), None))
    steps.append((dict(base, kind='gpu_infer', name='infer_%dscale' % len(sizes['infer_scales']),
                       scales=list(sizes['infer_scales']), precision='float32',
                       sizes=[list(s) for s in sizes['infer_sizes']]), None))
    steps.append((dict(base, kind='gpu_tile', name='tile_%dscale' % len(sizes['tile_scales']),
                       size=list(sizes['tile_size']), scales=list(sizes['tile_scales']),
                       tile=list(sizes['tile']), precision='float32'), None))
    return steps


# ----------------------------------------------------------------------------- report

def table(results, skipped, env):
    head = ('phase', 's/step', 'img/s', 'TFLOP/s', '% GEMM', 'GPU MB', 'first s', 'note')
    rows = []
    peaks = env.get('gemm_tflops', {})
    for r in results:
        if r['kind'] == 'gpu_env':
            continue
        note, frac = '', None
        if 'tflops_per_s' in r and peaks.get(r['precision']):
            frac = r['tflops_per_s'] / peaks[r['precision']]
        if r.get('placement'):
            types = r['placement']['cpu_op_types']
            note = 'on CPU: %d ops (%s)' % (r['placement']['cpu_ops'], ', '.join(
                '%s %d' % kv for kv in sorted(types.items(), key=lambda kv: -kv[1])[:6]))
        if r.get('det'):
            note = (note + '; ' if note else '') + (
                'deterministic: bitwise equal' if r['det']['equal']
                else 'deterministic: NOT equal %s' % r['det'].get('error', r['det']['losses']))
        if r['kind'] == 'gpu_infer':
            note = 'new size %.3f s, repeated %.3f s' % (r['new_size_s'], r['repeated_size_s'])
        if r['kind'] == 'gpu_tile':
            tiled = 'tiled %d windows of %dx%d every %d,%d: %s%s MB' % (
                r['windows'], r['tile'][0], r['tile'][1], r['stride'][0], r['stride'][1],
                '%.1fx, ' % r['ratio'] if r.get('ratio') else '', _fmt(r['tiled_gpu_mb'], '%.0f'))
            note = ('whole: %s; %s' % (r['whole_error'], tiled) if r.get('whole_error') else
                    'whole %.3f s, %s MB; %s; %.1f%% equal' % (
                        r['whole_s'], _fmt(r['whole_gpu_mb'], '%.0f'), tiled,
                        100 * r['agreement']))
            note += ('' if r['hook_in_order'] else
                     '; the progress hook (py_func in the window loop) NOT called in order')
        if r.get('xla'):
            note = 'XLA: first step (compile) %.1f s' % r['first_run_s']
        if r['kind'] == 'gpu_pipeline':
            consume = [x for x in results if x['name'].startswith('train_')
                       and x.get('images_per_step') == r['batch'] and x.get('rate')]
            if consume:
                note = '%.1fx what %s consumes' % (r['rate'] / consume[-1]['rate'],
                                                   consume[-1]['name'])
        rows.append((r['name'], _fmt(r.get('median_s'), '%.3f'), _fmt(r.get('rate'), '%.1f'),
                     _fmt(r.get('tflops_per_s'), '%.2f'), _fmt(frac and 100 * frac, '%.0f%%'),
                     _fmt(r.get('gpu_peak_mb'), '%.0f'), _fmt(r.get('first_run_s'), '%.1f'),
                     note))
    rows += [(name, '-', '-', '-', '-', '-', '-', 'skipped: ' + why) for name, why in skipped]
    return speed.aligned_table(head, rows)


def _fmt(value, pattern):
    return '-' if value is None else pattern % value


def env_lines(env):
    lines = list(env['devices_line'])
    lines.append('TensorFlow build: %s; TF32 %s; GPU memory on demand: '
                 'TF_FORCE_GPU_ALLOW_GROWTH=%s' % (
                     ', '.join('%s %s' % kv for kv in sorted(env['build'].items())) or '?',
                     'on' if env['tf32'] else 'off', env['memory_growth']))
    lines.append('fast precision: %s%s; measured GEMM peak: %s' % (
        env['fast_precision'], ''.join(' (%s)' % n for n in env['precision_notes']),
        ', '.join('%s %.1f TFLOP/s' % kv for kv in sorted(env['gemm_tflops'].items()))))
    lines.append('NVIDIA driver: %s; %s' % (env['driver'] or 'none', env['cpu']))
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--smoke', action='store_true',
                   help='tiny sizes in this process, one training, one inference and one '
                        'tiling graph (runs on a CPU; checks that the script works, measures '
                        'nothing)')
    p.add_argument('--batch', type=int, default=10,
                   help='the larger batch (default %(default)s: the GPU recipe\'s '
                        '--batch-size 10 --grad-update-every 1)')
    p.add_argument('--xla', action='store_true',
                   help='also time the fast-precision update with XLA auto-clustering')
    p.add_argument('--json', help='write every figure here')
    p.add_argument('--run-case', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_case:
        result = speed.run_case(json.loads(args.run_case))
        print(speed.RESULT_PREFIX + json.dumps(result))
        return 0
    started = time.time()
    env_spec = plan(argparse.Namespace(smoke=args.smoke, batch=args.batch, xla=False,
                                       fast_precision='float32'), 0)[0][0]
    env = _run(env_spec, args.smoke)
    for line in env_lines(env):
        print(line, flush=True)
    args.fast_precision = env['fast_precision']
    num_gpus = len(env['gpus'])
    if not num_gpus and not args.smoke:
        print('warning: no GPU visible: this check measures a CPU (slowly); --smoke only '
              'checks that it runs', file=sys.stderr, flush=True)
    results, skipped = [env], []
    for spec, skip in plan(args, num_gpus)[1:]:
        if spec is None:
            skipped.append(skip)
            continue
        print('... %s' % spec['name'], file=sys.stderr, flush=True)
        try:
            results.append(_run(spec, args.smoke))
        except RuntimeError as e:   # one phase failing does not lose the others
            skipped.append((spec['name'], 'FAILED: %s' % str(e).strip().splitlines()[-1]))
    print(table(results, skipped, env))
    print('total %.0f s' % (time.time() - started))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(env=env, results=results[1:], skipped=skipped, smoke=args.smoke,
                           total_s=time.time() - started), f, indent=1)
    failed = [name for name, why in skipped if why.startswith('FAILED')]
    return 1 if failed else 0


def _run(spec, in_process):
    if in_process:
        return speed.run_case(spec)
    return speed.run_case_subprocess(spec, script=__file__)


if __name__ == '__main__':
    sys.exit(main())
