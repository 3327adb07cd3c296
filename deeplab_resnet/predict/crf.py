"""Fully connected (dense) CRF post-processing, as in DeepLab-v2, and a process pool for it.

The CRF is Kraehenbuehl & Koltun's mean-field inference through pydensecrf (the
``pydensecrf2`` package). The unary is -log of the network's softmax probabilities; the
pairwise term is a positional Gaussian kernel (weight ``pos_w``, std ``pos_xy_std`` pixels)
plus a bilateral kernel (weight ``bi_w``, std ``bi_xy_std`` pixels and ``bi_rgb_std`` colour
levels). Defaults are DeepLab-v2's ResNet-101 VOC values (``constants.CRF_*``).

Colour order: the image is given as loaded, [H, W, 3] uint8 RGB (``imageio.read_image``).
The bilateral kernel exp(-|p_i - p_j|^2 / 2 sxy^2 - |I_i - I_j|^2 / 2 srgb^2) uses the same
std for all three channels, so in exact arithmetic it is the same for RGB and BGR, but pydensecrf's
permutohedral-lattice approximation is not symmetric in the feature order: on a 500x375,
21-class test the refined probabilities differed by up to 0.07 between RGB and BGR (the
labels did not change). We always pass RGB as loaded (what pydensecrf's examples do), never
the mean-subtracted BGR network input.

No TensorFlow here: ``CRFPool`` workers import only this module, NumPy and pydensecrf.
"""
import collections
import contextlib
import multiprocessing
import multiprocessing.context
import os
import sys
import threading
import types
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import numpy as np

from deeplab_resnet.common import cli, constants

CRFParams = collections.namedtuple(
    'CRFParams', ['iterations', 'pos_w', 'pos_xy_std', 'bi_w', 'bi_xy_std', 'bi_rgb_std'])
CRFParams.__new__.__defaults__ = (constants.CRF_ITERATIONS, constants.CRF_POS_W,
                                  constants.CRF_POS_XY_STD, constants.CRF_BI_W,
                                  constants.CRF_BI_XY_STD, constants.CRF_BI_RGB_STD)
CRFParams.__doc__ = """Dense CRF settings; every field defaults to its ``constants.CRF_*``.

  iterations: int, mean-field iterations.
  pos_w, pos_xy_std: positional Gaussian kernel weight and spatial std (pixels).
  bi_w, bi_xy_std, bi_rgb_std: bilateral kernel weight, spatial std (pixels), colour std.
"""

_FLAGS = (  # (flag, field, type, help)
    ('--crf-iterations', 'iterations', int, 'mean-field iterations'),
    ('--crf-pos-w', 'pos_w', float, 'positional (Gaussian) kernel weight'),
    ('--crf-pos-xy-std', 'pos_xy_std', float, 'positional kernel spatial std, pixels'),
    ('--crf-bi-w', 'bi_w', float, 'bilateral kernel weight'),
    ('--crf-bi-xy-std', 'bi_xy_std', float, 'bilateral kernel spatial std, pixels'),
    ('--crf-bi-rgb-std', 'bi_rgb_std', float, 'bilateral kernel colour std, 0..255 levels'),
)

PROB_CLIP = 1e-5   # probabilities are clipped to [PROB_CLIP, 1] before -log


def add_crf_arguments(parser):
    """Adds the --crf-* flags (defaults: DeepLab-v2 VOC values) and --crf-params FILE to an
    argparse parser. The flags default to None ("not given"): resolve_crf_arguments fills
    them from --crf-params' file, else from CRFParams' defaults; a flag given wins."""
    defaults = CRFParams()
    group = parser.add_argument_group('dense CRF')
    for flag, field, typ, text in _FLAGS:
        default = getattr(defaults, field)
        group.add_argument(flag, dest='crf_' + field, type=typ, default=None,
                           help='%s (default %s, or --crf-params\' value)' % (text, default))
    group.add_argument('--crf-params', default=None, metavar='FILE',
                       help='take the CRF parameters from FILE, the best.json that '
                            'evaluate_msc_with_CRF.py --crf-search writes (a --crf-* flag '
                            'given wins)')
    return parser


def read_crf_params(path):
    """The CRFParams of a --crf-params file: a JSON object whose 'params' (or itself) holds
    the six CRFParams fields (crf_search writes such a best.json).
    Raises: InputError naming the file when it cannot be read or a field is missing or not a
      positive number (iterations: a positive integer)."""
    import json
    from deeplab_resnet.common.errors import InputError
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError('%s: --crf-params file not readable as JSON (%s)'
                         % (path, getattr(e, 'strerror', None) or e))
    values = data.get('params', data) if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise InputError('%s: --crf-params file holds no CRF parameters (a JSON object with '
                         '"params")' % path)
    fields = {}
    for field in CRFParams._fields:
        value = values.get(field)
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and np.isfinite(value) and value > 0)
        if field == 'iterations':
            ok = ok and float(value) == int(value)
        if not ok:
            raise InputError('%s: --crf-params file: %s is %s, not a positive %s'
                             % (path, field, 'missing' if value is None else repr(value),
                                'integer' if field == 'iterations' else 'number'))
        fields[field] = int(value) if field == 'iterations' else float(value)
    return CRFParams(**fields)


def resolve_crf_arguments(args):
    """Fills the --crf-* flags left out (None) from --crf-params' file, else the defaults, in
    `args` itself. Returns the CRFParams. Raises InputError for an unreadable file."""
    base = read_crf_params(args.crf_params) if getattr(args, 'crf_params', None) else CRFParams()
    for _, field, _, _ in _FLAGS:
        if getattr(args, 'crf_' + field, None) is None:
            setattr(args, 'crf_' + field, getattr(base, field))
    return crf_params_from_args(args)


MAX_DEFAULT_WORKERS = 32
"""The default --crf-workers is capped: a 200-thread node would otherwise start 200 worker
interpreters and hold up to 400 pending probability maps (16 MB each for VOC), where 32
workers at 2-3 CPU-seconds per 500x375 image (docs/speed.md) already refine 10-15 images/s."""


def default_workers(affinity=None, cap=MAX_DEFAULT_WORKERS):
    """The CPUs this process may run on (its affinity: Slurm's and cgroups' allocation, not
    the node's count), at most `cap`, at least 1. affinity: a set of CPU ids (None: ask the
    OS)."""
    if affinity is None:
        try:
            affinity = os.sched_getaffinity(0)
        except (AttributeError, OSError):   # not Linux
            affinity = range(os.cpu_count() or 1)
    return max(1, min(len(affinity), cap))


def add_workers_argument(parser, *aliases):
    """Adds --crf-workers (args.crf_workers; `aliases` are further option strings for it, e.g.
    '--num-workers'): CRF worker processes, default_workers(), 0 = inline. The help names the
    rule, not this machine's number (docs/flags.md is generated from it)."""
    parser.add_argument('--crf-workers', *aliases, dest='crf_workers', type=cli.non_negative_int,
                        default=default_workers(),
                        help='CRF worker processes, overlapping with the network (default: the '
                             'CPUs this process may use, at most %d; 0: the CRF runs in the '
                             'main process)' % MAX_DEFAULT_WORKERS)
    return parser


def crf_params_from_args(args):
    """CRFParams from an argparse namespace made by a parser with ``add_crf_arguments``
    (after resolve_crf_arguments; a field still None takes its default)."""
    defaults = CRFParams()
    return CRFParams(**{field: (getattr(defaults, field) if getattr(args, 'crf_' + field)
                                is None else getattr(args, 'crf_' + field))
                        for _, field, _, _ in _FLAGS})


def dense_crf(image, probs, params=None):
    """Refines softmax probabilities with a dense CRF.

    Args:
      image: [H, W, 3] uint8 RGB, the image as loaded (not mean-subtracted).
      probs: [H, W, C] float softmax probabilities (any float dtype; used as float32).
      params: CRFParams (default: DeepLab-v2 values).
    Returns: [H, W, C] float32 refined probabilities (each pixel sums to 1).
    """
    import pydensecrf.densecrf as dcrf   # imported here: optional dependency
    params = params or CRFParams()
    image = np.asarray(image)
    probs = np.asarray(probs, dtype=np.float32)
    h, w, c = probs.shape
    if image.shape != (h, w, 3):
        raise ValueError('image shape %s does not match probabilities %s'
                         % (image.shape, probs.shape))
    unary = -np.log(np.clip(probs, PROB_CLIP, 1.0))
    unary = np.ascontiguousarray(unary.reshape(h * w, c).T)   # [C, H*W] float32
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(unary)
    d.addPairwiseGaussian(sxy=params.pos_xy_std, compat=params.pos_w)
    d.addPairwiseBilateral(sxy=params.bi_xy_std, srgb=params.bi_rgb_std,
                           rgbim=np.require(image, np.uint8, ['C', 'W']),   # writable: Cython
                           compat=params.bi_w)
    q = np.asarray(d.inference(int(params.iterations)), dtype=np.float32)   # [C, H*W]
    return np.ascontiguousarray(q.T.reshape(h, w, c))


_MAIN_SWAP_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_module_hidden():
    """Shows multiprocessing an empty ``__main__`` while a worker process starts.

    A 'spawn' or 'forkserver' child normally re-imports the parent's main script so that
    functions defined there can be unpickled. Our workers only run ``_crf_task`` (importable
    from this module), and re-importing a script that imports TensorFlow at the top would
    cost every worker seconds and hundreds of MB (and recurse without a main guard).
    """
    with _MAIN_SWAP_LOCK:
        main = sys.modules.get('__main__')
        sys.modules['__main__'] = types.ModuleType('__main__')
        try:
            yield
        finally:
            sys.modules['__main__'] = main


class _SpawnProcess(multiprocessing.context.SpawnProcess):
    def start(self):
        with _main_module_hidden():
            super().start()


class _SpawnContext(multiprocessing.context.SpawnContext):
    Process = _SpawnProcess


_CONTEXTS = {'spawn': _SpawnContext}
if hasattr(multiprocessing.context, 'ForkServerContext'):   # POSIX only
    class _ForkServerProcess(multiprocessing.context.ForkServerProcess):
        def start(self):
            with _main_module_hidden():
                super().start()

    class _ForkServerContext(multiprocessing.context.ForkServerContext):
        Process = _ForkServerProcess

    _CONTEXTS['forkserver'] = _ForkServerContext


def _crf_task(image, probs, params, return_probs):
    """Worker body: dense_crf, then argmax unless probabilities are wanted."""
    q = dense_crf(image, probs, params)
    return q if return_probs else np.argmax(q, axis=-1).astype(np.int32)


def _settings_task(image, probs, settings, truth, num_classes, ignore_label):
    """Worker body of a CRF search (crf_search): the CRF of one image with each of
    `settings` (CRFParams), scored against `truth` ([H, W] integer labels).
    Returns: int64 [len(settings), C, C] confusion matrices (rows = ground truth)."""
    truth = np.asarray(truth)
    valid = truth != ignore_label
    rows = truth[valid].astype(np.int64) * num_classes
    out = np.zeros((len(settings), num_classes, num_classes), np.int64)
    for i, params in enumerate(settings):
        labels = np.argmax(dense_crf(image, probs, params), axis=-1)[valid]
        out[i] = np.bincount(rows + labels, minlength=num_classes * num_classes).reshape(
            num_classes, num_classes)
    return out


class _Done(object):
    """A finished inline task, with the two methods of a Future that CRFPool uses."""

    def __init__(self, value):
        self.value = value

    def done(self):
        return True

    def result(self):
        return self.value


class CRFPool(object):
    """Runs ``dense_crf`` in worker processes, results in submission order.

    Usage (the network's forward passes overlap with the CRF of earlier images)::

        with CRFPool(num_workers=2, params=params) as pool:
            for key, image in items:
                pool.submit(key, image, net_probs(image))   # returns at once
                for key, labels in pool.ready():            # finished, in order
                    save(key, labels)
            for key, labels in pool.results():              # the rest, in order
                save(key, labels)

    Args:
      num_workers: worker processes; 0 runs the CRF inline in ``submit`` (tests, debugging).
      params: CRFParams (default: DeepLab-v2 values).
      return_probs: yield [H, W, C] float32 probabilities instead of [H, W] int32 labels.
      max_pending: most unfinished tasks at once (default 2 * num_workers); ``submit``
        blocks while that many are queued or running. Finished results are held until
        ``ready()`` or ``results()`` yields them, so drain ``ready()`` after each submit to
        keep memory bounded (about max_pending images' probabilities).
      start_method: 'spawn' (default) or 'forkserver'; never 'fork', which is unsafe in a
        parent that runs TensorFlow threads. Workers start fresh interpreters that import
        only this module, NumPy and pydensecrf, not the caller's main script (so they do not
        import TensorFlow, and scripts need no main guard for the pool's sake).
    Results do not depend on num_workers: every task runs the same deterministic code.
    """

    def __init__(self, num_workers=0, params=None, return_probs=False, max_pending=None,
                 start_method=None):
        self.params = params or CRFParams()
        self.return_probs = return_probs
        self.num_workers = int(num_workers)
        self.max_pending = max(1, max_pending or 2 * self.num_workers)
        self._queue = collections.deque()   # (key, future) in submission order
        self._executor = None
        self._closed = False
        if self.num_workers > 0:
            start_method = start_method or 'spawn'
            if start_method not in _CONTEXTS:
                raise ValueError('CRFPool start_method must be one of %s, got %r'
                                 % (sorted(_CONTEXTS), start_method))
            self._executor = ProcessPoolExecutor(self.num_workers,
                                                 mp_context=_CONTEXTS[start_method]())

    def submit(self, key, image, probs):
        """Queues one image: image [H, W, 3] uint8 RGB, probs [H, W, C] float32.

        Returns at once unless ``max_pending`` tasks are still running (then waits for one).
        With num_workers=0 the CRF runs here, before returning.
        """
        self._submit(key, _crf_task, np.asarray(image), np.asarray(probs), self.params,
                     self.return_probs)

    def submit_settings(self, key, image, probs, settings, truth, num_classes, ignore_label):
        """Queues the CRF of one image with several settings (a CRF search's task): image
        [H, W, 3] uint8 RGB, probs [H, W, C] float32, settings a list of CRFParams, truth
        [H, W] integer labels. Its result: int64 [len(settings), C, C] confusion matrices
        (the pool's params and return_probs play no part)."""
        self._submit(key, _settings_task, np.asarray(image), np.asarray(probs),
                     list(settings), np.asarray(truth), num_classes, ignore_label)

    def _submit(self, key, task, *task_args):
        if self._closed:
            raise ValueError('submit on a closed CRFPool')
        if self._executor is None:
            self._queue.append((key, _Done(task(*task_args))))
            return
        self._wait_below(self.max_pending)
        self._queue.append((key, self._executor.submit(task, *task_args)))

    def _wait_below(self, limit):
        running = [f for _, f in self._queue if not f.done()]
        while len(running) >= limit:
            wait(running, return_when=FIRST_COMPLETED)
            running = [f for f in running if not f.done()]

    def ready(self):
        """Yields (key, result) for finished tasks at the head of the queue; never blocks."""
        while self._queue and self._queue[0][1].done():
            key, future = self._queue.popleft()
            yield key, future.result()   # re-raises a worker's exception

    def results(self):
        """Yields (key, result) for every submitted task, in submission order, waiting.

        result: [H, W] int32 labels, or [H, W, C] float32 probabilities with return_probs.
        """
        while self._queue:
            key, future = self._queue.popleft()
            yield key, future.result()

    def __iter__(self):
        return self.results()

    def __len__(self):
        """Tasks submitted and not yet yielded."""
        return len(self._queue)

    def close(self, cancel=False):
        """Shuts the workers down (after finishing queued tasks unless cancel=True).

        Finished results not yet yielded stay available to ``results()``.
        """
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None
        if cancel:
            self._queue.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(cancel=exc_type is not None)
        return False
