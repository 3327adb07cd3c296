"""TensorFlow's start-up messages, held to TensorFlow's own TF_CPP_MIN_LOG_LEVEL.

TensorFlow 2.21 logs through absl. While `import tensorflow` loads its shared libraries, their
static initialisers log before anything has read TF_CPP_MIN_LOG_LEVEL, so no setting hides
these lines (twice: libtensorflow_framework and the profiler plugin each carry a copy):

  WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
  I0000 00:00:1795789063.260739    9231 port.cc:153] oneDNN custom operations are on. ...
  I0000 00:00:1795789063.261102    9231 cudart_stub.cc:31] Could not find cuda drivers on ...

and without a CUDA driver the first device listing logs an ERROR that only repeats that:

  E0000 00:00:1795789065.861647    9231 cuda_platform.cc:52] failed call to cuInit: ...

`install()` (deeplab_resnet/__init__.py calls it) sets TF_CPP_MIN_LOG_LEVEL to 2 unless the
user's environment has it, and runs the first `import tensorflow`, whichever module makes it,
and TensorFlow's device listing with file descriptor 2 going through `keep_line`: absl lines
below the level are dropped, like TensorFlow drops its later ones, and so is the cuInit line
after TensorFlow has said that it found no CUDA driver. Every other line reaches stderr
unchanged and in order: Python warnings and tracebacks, TensorFlow's warnings and errors at
or above the level, and at any level the warnings that say why CUDA did not load
(GPU_LIBRARY_WARNINGS) when they come before TensorFlow reads the level (once it has, it drops
them itself below level 2: the scripts' devices line then says that no GPU is used, and
TF_CPP_MIN_LOG_LEVEL=0 shows why). The filter is this file run as a separate process, so what was written
before a crash inside the import still gets out. TF_CPP_MIN_LOG_LEVEL=0 shows everything.
"""
import os
import re
import sys

DEFAULT_MIN_LOG_LEVEL = '2'   # TensorFlow's INFO and WARNING lines hidden, errors shown
ENV_DEFAULTS = (
    ('TF_CPP_MIN_LOG_LEVEL', DEFAULT_MIN_LOG_LEVEL),
    # GPU memory on demand: a tf.distribute strategy lists the GPUs, and so creates their
    # allocators, before any Session's gpu_options.allow_growth is seen; TensorFlow reads this
    # variable whenever it creates a GPU allocator, so an evaluation can share a GPU with a
    # training run, and two processes one GPU. A value the user set wins.
    ('TF_FORCE_GPU_ALLOW_GROWTH', 'true'),
)
GPU_LIBRARY_WARNINGS = (b'Cannot dlopen some GPU libraries', b'Could not load dynamic library',
                        b'not built with CUDA kernel binaries compatible',
                        b'CUDA driver version is insufficient')
"""TensorFlow's WARNING lines that say why a GPU is not used: kept by the filter whatever the
level (the scripts' devices line says that no GPU is used, these say why)."""
SEVERITY_LEVEL = {b'I': 0, b'W': 1, b'E': 2, b'F': 3}
ABSL_LINE = re.compile(rb'([IWEF])\d{4} [\d:.]+ +\d+ [^\]\s]+:\d+\] ')
ABSL_BANNER = b'WARNING: All log messages before absl::InitializeLog() is called'
NO_CUDA_DRIVER = b'] Could not find cuda drivers on your machine'
CUINIT_FAILED = b'] failed call to cuInit: '


def min_log_level(environ=None):
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it: an integer, 0 when unset or not one."""
    text = (os.environ if environ is None else environ).get('TF_CPP_MIN_LOG_LEVEL', '')
    try:
        return max(0, int(text.strip()))
    except ValueError:
        return 0


def keep_line(line, level, seen_no_driver):
    """Whether one stderr line (bytes) is shown at TF_CPP_MIN_LOG_LEVEL `level` (>= 1).

    seen_no_driver: TensorFlow logged earlier that it found no CUDA driver. Lines that are not
    absl log lines (continuations included) are always kept.
    """
    if line.startswith(ABSL_BANNER):
        return False
    match = ABSL_LINE.match(line)
    if not match:
        return True
    if SEVERITY_LEVEL[match.group(1)] < level:
        return match.group(1) == b'W' and any(text in line for text in GPU_LIBRARY_WARNINGS)
    return not (seen_no_driver and CUINIT_FAILED in line)


def filter_stream(source, sink, level):
    """Copies the lines of `source` that `keep_line` keeps to `sink` (binary files)."""
    seen_no_driver = False
    for line in source:
        seen_no_driver = seen_no_driver or NO_CUDA_DRIVER in line
        if keep_line(line, level, seen_no_driver):
            sink.write(line)
            sink.flush()


def _flush_stderr():
    try:
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


class _FilteredStderr:
    """Context: file descriptor 2 goes through `filter_stream` in a child process (this file
    run as a script); on exit it is restored once the child has written everything."""

    def __init__(self, level):
        self.level = level
        self.saved_fd = self.child = None

    def __enter__(self):
        import subprocess
        _flush_stderr()
        try:
            self.saved_fd = os.dup(2)
        except OSError:   # no stderr at all
            return self
        try:
            self.child = subprocess.Popen(
                [sys.executable, '-I', '-S', os.path.abspath(__file__), str(self.level)],
                stdin=subprocess.PIPE, stdout=self.saved_fd)
        except (OSError, ValueError):   # no interpreter to run the filter: stderr unfiltered
            os.close(self.saved_fd)
            return self
        os.dup2(self.child.stdin.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        if self.child is None:
            return False
        import subprocess
        _flush_stderr()
        os.dup2(self.saved_fd, 2)
        os.close(self.saved_fd)
        self.child.stdin.close()
        try:
            self.child.wait(timeout=10)
        except subprocess.TimeoutExpired:   # a process started meanwhile holds the pipe
            pass
        return False


class _TensorFlowLoader:
    """Runs TensorFlow's own loader, and a first device listing, inside `_FilteredStderr`."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader
        level = min_log_level()
        if level == 0:
            self.loader.exec_module(module)
            return
        with _FilteredStderr(level):
            self.loader.exec_module(module)
            try:   # the cuInit line comes from here, not from the import
                module.config.list_physical_devices()
            except Exception:   # TensorFlow raises it again where the devices are used
                pass


class _TensorFlowFinder:
    """sys.meta_path entry: hands out TensorFlow's spec with `_TensorFlowLoader`, once."""

    def find_spec(self, name, path=None, target=None):
        if name != 'tensorflow':
            return None
        sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]
        for finder in sys.meta_path:
            find_spec = getattr(finder, 'find_spec', None)
            spec = find_spec(name, path, target) if find_spec else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = _TensorFlowLoader(spec.loader)
                return spec
        return None


def set_env_defaults(environ=None):
    """ENV_DEFAULTS into `environ` (os.environ), each unless it is set already."""
    environ = os.environ if environ is None else environ
    for name, value in ENV_DEFAULTS:
        environ.setdefault(name, value)


def install():
    """ENV_DEFAULTS (TF_CPP_MIN_LOG_LEVEL 2, GPU memory on demand); the first
    `import tensorflow` is filtered."""
    set_env_defaults()
    if 'tensorflow' in sys.modules:
        return
    if not any(isinstance(finder, _TensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowFinder())


if __name__ == '__main__':
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is for the importing process
    filter_stream(sys.stdin.buffer, sys.stdout.buffer, int(sys.argv[1]))
