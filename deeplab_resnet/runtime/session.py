"""The tf.compat.v1 Session configuration every script uses (threads, GPU memory on demand,
the Grappler passes of inference graphs)."""
import tensorflow as tf

tf1 = tf.compat.v1


INFERENCE_GRAPPLER_PASSES = ('pruning', 'remap')
"""Grappler passes of inference sessions (session_config(inference=True)): pruning drops the
IdentityN of the dilated convolutions' custom gradient, the remapper then fuses every
convolution with its bias (the folded batch norm), residual add and ReLU into one kernel
(oneDNN's post-ops on CPU). Measured (benchmarks/speed.py, 2 cores of a Zen 4): 375x500
single scale 1.25 s instead of 1.30 s; the first run takes 0.1-0.5 s more."""


def session_config(threads=0, optimize_graph=False, inference=False):
    """Session config: soft placement, GPU memory on demand, and `threads` intra-op CPU
    threads (0: TensorFlow's default) with 2 inter-op threads.

    optimize_graph: run all of Grappler. For these graphs it costs 30-45 s per new fetch
    signature on 2 CPU cores and was measured to bring no steady-state speed-up
    (benchmarks/speed.py).
    inference: for an inference graph (Predictor): only INFERENCE_GRAPPLER_PASSES, and one
    inter-op thread (the fused network is a chain; measured 2-5% faster single-scale, the
    same at 3 scales, 40 MB less). The training step was measured no faster with those
    passes (4.15 vs 4.05 s), and its first step 2.3 s slower.
    """
    config = tf1.ConfigProto(allow_soft_placement=True)
    options = config.graph_options.rewrite_options
    options.disable_meta_optimizer = not (optimize_graph or inference)
    if inference and not optimize_graph:
        options.optimizers[:] = INFERENCE_GRAPPLER_PASSES
    config.gpu_options.allow_growth = True
    if threads:
        config.intra_op_parallelism_threads = threads
        config.inter_op_parallelism_threads = 2
    if inference:
        config.inter_op_parallelism_threads = 1
    return config
