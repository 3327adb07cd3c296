"""Which precision the network computes in: float32, or a 16-bit float where the hardware does
16-bit arithmetic fast. Elsewhere a 16-bit request runs float32 with one line saying why.

- bfloat16: GPUs of compute capability 8.0 or more (Ampere, Hopper: bfloat16 tensor cores;
  before 8.0 TensorFlow's bfloat16 convolutions cast to float32 and back, slower than float32),
  or, without a GPU, a CPU with AVX512_BF16 or AMX (oneDNN then runs bfloat16 convolutions at
  about twice the float32 rate). Needs no loss scaling (float32's exponent range).
- float16: GPUs of compute capability 7.0 or more (float16 tensor cores: V100 7.0, T4 7.5,
  and every later GPU). Training scales the loss (optim.LossScale). Below 7.0 it runs float32:
  no tensor cores, and float16 convolutions are either no faster than float32 (P100, 6.0: its
  double-rate half arithmetic is not used, TensorFlow accumulating convolutions in float32) or
  a small fraction of its rate (6.1 cards such as the GTX 10x0 and P4/P40: 1/64). Without a GPU
  it runs float16 as asked (the tests do), saying that it is slow there: TensorFlow has no fast
  CPU kernel for float16 convolution gradients (measured on a 2-core Xeon with AVX512_FP16: the
  forward pass as fast as float32, a training step 34x slower).
"""
PRECISIONS = ('float32', 'bfloat16', 'float16')
FAST_BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)   # Ampere: bfloat16 tensor cores
FP16_MIN_COMPUTE_CAPABILITY = (7, 0)   # Volta: float16 tensor cores


def cpu_flags(path='/proc/cpuinfo'):
    """The CPU's feature flags (a set of str; empty where /proc/cpuinfo is not there)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def fast_bfloat16_cpu(flags=None):
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in FAST_BF16_CPU_FLAGS)


def gpu_compute_capability():
    """The first visible GPU's compute capability as (major, minor), or None without a GPU
    (or when TensorFlow does not report it). Imports TensorFlow."""
    from deeplab_resnet.runtime import devices
    gpus = devices.list_gpus()
    return gpus[0].compute_capability if gpus else None


def _cc(capability):
    return '%d.%d' % tuple(capability)


def choose(requested, warn, flags=None, compute_capability=None):
    """The precision to run: `requested` ('float32', 'bfloat16' or 'float16'), or 'float32'
    (with one line through `warn`) where the hardware would run it slowly (module docstring).

    Args:
      warn: callable taking one line.
      flags: the CPU's feature flags (default: /proc/cpuinfo's).
      compute_capability: (major, minor) of the GPU the network runs on; None: the first
        visible GPU's (gpu_compute_capability(), None without a GPU).
    """
    if requested == 'float32':
        return requested
    if compute_capability is None:
        compute_capability = gpu_compute_capability()
    if requested == 'bfloat16':
        if compute_capability is not None:
            if tuple(compute_capability) >= BF16_MIN_COMPUTE_CAPABILITY:
                return requested
            warn('--precision bfloat16: the GPU (compute capability %s) has no bfloat16 '
                 'tensor cores (%s or later); running float32 (--precision float16 is the fast '
                 'one on this GPU)' % (_cc(compute_capability),
                                       _cc(BF16_MIN_COMPUTE_CAPABILITY)))
            return 'float32'
        if fast_bfloat16_cpu(flags):
            return requested
        warn('--precision bfloat16: this CPU has neither %s (no fast bfloat16 arithmetic) and '
             'there is no GPU; running float32' % ' nor '.join(FAST_BF16_CPU_FLAGS))
        return 'float32'
    if requested == 'float16':
        if compute_capability is None:
            warn('--precision float16: there is no GPU (float16 is fast on GPUs of compute '
                 'capability %s or more); running float16 anyway, training far slower than in '
                 'float32 (no fast float16 convolution gradients on a CPU)'
                 % _cc(FP16_MIN_COMPUTE_CAPABILITY))
            return requested
        if tuple(compute_capability) >= FP16_MIN_COMPUTE_CAPABILITY:
            return requested
        warn('--precision float16: the GPU (compute capability %s) has no float16 tensor '
             'cores (%s or later): float16 would be no faster than float32 there, or far '
             'slower; running float32' % (_cc(compute_capability),
                                          _cc(FP16_MIN_COMPUTE_CAPABILITY)))
        return 'float32'
    raise ValueError('unknown precision %r (one of %s)' % (requested, ', '.join(PRECISIONS)))
