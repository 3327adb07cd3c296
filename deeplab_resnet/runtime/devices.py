"""Which devices a run computes on, said in one line, and the switches that make a run
reproducible on them.

TensorFlow says that CUDA failed to load only in WARNING lines, which TF_CPP_MIN_LOG_LEVEL=2
(tf_startup) hides, and then runs on the CPU at about 1% of a GPU's speed. Every script that
builds a network therefore prints `devices_line()` (never --help, which loads no TensorFlow),
and a warning when an NVIDIA driver is installed but TensorFlow lists no GPU.

The readings (TensorFlow's GPU list, the driver file) are arguments so that a test can
simulate a GPU host or a broken CUDA install on a CPU.
"""
import collections
import os
import random

NVIDIA_DRIVER_FILE = '/proc/driver/nvidia/version'
"""Present when the NVIDIA kernel driver is loaded (its first line names the version)."""

Gpu = collections.namedtuple('Gpu', ['name', 'device', 'compute_capability'])
"""name: 'GPU:0'; device: the card's name ('NVIDIA H200'), or '' when TensorFlow does not
say; compute_capability: (major, minor) ints, or None when TensorFlow does not say."""


def list_gpus():
    """TensorFlow's visible GPUs as a list of Gpu (empty without one)."""
    import tensorflow as tf
    gpus = []
    for device in tf.config.list_physical_devices('GPU'):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        capability = details.get('compute_capability')
        gpus.append(Gpu(device.name.replace('/physical_device:', ''),
                        details.get('device_name', ''),
                        tuple(capability) if capability else None))
    return gpus


def nvidia_driver(path=NVIDIA_DRIVER_FILE):
    """The NVIDIA driver's version line (str), or None when no NVIDIA driver is loaded."""
    try:
        with open(path) as f:
            return f.readline().strip() or 'unknown version'
    except OSError:
        return None


def describe_gpu(gpu):
    """'GPU:0 NVIDIA H200 (compute capability 9.0)'."""
    text = gpu.name + (' ' + gpu.device if gpu.device else '')
    if gpu.compute_capability:
        text += ' (compute capability %d.%d)' % gpu.compute_capability
    return text


def devices_line(gpus, driver, environ=None):
    """The one line a script prints before it builds a network.

    Args:
      gpus: list of Gpu (list_gpus()).
      driver: nvidia_driver()'s value: the driver's version line or None.
      environ: the environment (os.environ by default), for CUDA_VISIBLE_DEVICES.
    Returns: (line, warning): the warning (str) is None unless a driver is installed and
      TensorFlow lists no GPU (CUDA's libraries missing or not matching the driver).
    """
    if gpus:
        return 'devices: ' + ', '.join(describe_gpu(g) for g in gpus), None
    line = 'devices: CPU only (no GPU visible)'
    if driver is None:
        return line, None
    hidden = (os.environ if environ is None else environ).get('CUDA_VISIBLE_DEVICES')
    if hidden is not None and hidden.strip() in ('', '-1'):
        return line + ' (CUDA_VISIBLE_DEVICES=%r hides them)' % hidden, None
    return line, (
        'an NVIDIA driver is installed (%s) but TensorFlow lists no GPU: this run computes '
        'on the CPU, about 100x slower. Install the CUDA build (pip install '
        '"tensorflow[and-cuda]") that matches the driver; TF_CPP_MIN_LOG_LEVEL=0 shows '
        'TensorFlow\'s reason (see docs/gpu.md)' % driver)


def log_devices(log, warn, gpus=None, driver=None, driver_path=NVIDIA_DRIVER_FILE,
                environ=None):
    """Prints devices_line() through `log` and its warning through `warn`. gpus None: ask
    TensorFlow; driver None: read driver_path; environ: os.environ by default. Returns the
    list of Gpu."""
    gpus = list_gpus() if gpus is None else gpus
    driver = nvidia_driver(driver_path) if driver is None else driver
    line, warning = devices_line(gpus, driver, environ)
    log(line)
    if warning:
        warn(warning)
    return gpus


def make_deterministic(seed=None):
    """--deterministic: TensorFlow's op determinism (for the whole process: kernels without a
    deterministic GPU version then raise an error naming the op instead of running; tf.data
    runs stateful map functions, such as the reader's decoding, one at a time) and, with a
    seed, the seeds of Python, NumPy and the default graph. Call before building the graph,
    inside it (the graph seed)."""
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    if seed is not None:
        import numpy as np
        random.seed(seed)
        np.random.seed(seed)
        tf.compat.v1.set_random_seed(seed)
