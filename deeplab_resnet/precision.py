"""Which precision the network computes in: float32, or bfloat16 where the hardware has fast
bfloat16 arithmetic (a GPU, or a CPU with AVX512_BF16 or AMX: oneDNN then runs bfloat16
convolutions at about twice the float32 rate). Elsewhere bfloat16 falls back to slow
emulated kernels, so a bfloat16 request runs float32 with one line saying why.
"""
FAST_BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')


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


def choose(requested, warn, flags=None, gpu=None):
    """The precision to run: `requested`, or 'float32' (with a warning) for 'bfloat16' on a
    machine without a GPU and without fast CPU bfloat16 (gpu None: ask TensorFlow)."""
    if requested != 'bfloat16':
        return requested
    if gpu is None:
        import tensorflow as tf
        gpu = bool(tf.config.list_physical_devices('GPU'))
    if gpu or fast_bfloat16_cpu(flags):
        return requested
    warn('--precision bfloat16: this CPU has neither %s (no fast bfloat16 arithmetic) and '
         'there is no GPU; running float32' % ' nor '.join(FAST_BF16_CPU_FLAGS))
    return 'float32'
