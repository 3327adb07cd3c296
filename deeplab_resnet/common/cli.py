"""argparse pieces the scripts share: typed values and common flags, defined once.

The --dataset flags, which read a descriptor, are in data/dataset_cli.py."""
import argparse

from deeplab_resnet.common.constants import IGNORE_LABEL, IMG_MEAN_BGR, NUM_CLASSES_VOC
from deeplab_resnet.common.windows import AUTO, DEFAULT_WINDOW, default_stride, tile_problem


def _floats(text, count=None, what='numbers'):
    try:
        values = tuple(float(v) for v in text.split(',') if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated %s, got %r' % (what, text))
    if not values or (count and len(values) != count):
        raise argparse.ArgumentTypeError('expected %s comma-separated %s, got %r'
                                         % (count or 'some', what, text))
    return values


def img_mean(text):
    """'104.0,116.7,122.7' -> (B, G, R) floats."""
    return _floats(text, 3, 'B,G,R values')


def input_size(text):
    """'321,321' -> (h, w) positive ints."""
    values = _floats(text, 2, 'integers h,w')
    if any(v <= 0 or v != int(v) for v in values):
        raise argparse.ArgumentTypeError('input size must be two positive integers h,w, got %r'
                                         % text)
    return int(values[0]), int(values[1])


def scales(text):
    """'1.0,0.75,0.5' -> positive floats."""
    values = _floats(text, None, 'scales')
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError('scales must be positive, got %r' % text)
    return values


def _two_ints(text, what):
    values = _floats(text, 2, 'integers h,w')
    if any(v != int(v) for v in values):
        raise argparse.ArgumentTypeError('%s must be two integers h,w, got %r' % (what, text))
    return int(values[0]), int(values[1])


def tile(text):
    """--tile 'H,W' (or one number for a square) -> (h, w), each side 8k + 1 >= 17; 'auto'
    -> 'auto' (memory.resolve_tile chooses from the images' sizes)."""
    if text.strip().lower() == AUTO:
        return AUTO
    parts = [v for v in text.split(',') if v.strip()]
    value = _two_ints(text + ',' + text if len(parts) == 1 else text, '--tile')
    problem = tile_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def tile_stride(text):
    """--tile-stride 'H,W' (or one number) -> (h, w) ints (checked against --tile by
    check_tile_flags)."""
    parts = [v for v in text.split(',') if v.strip()]
    return _two_ints(text + ',' + text if len(parts) == 1 else text, '--tile-stride')


def lr_mults(text):
    """'10,20' -> two non-negative floats."""
    values = _floats(text, 2, 'multipliers W,B')
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError('multipliers must be >= 0, got %r' % text)
    return values


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected a positive integer, got %r' % text)
    if value <= 0:
        raise argparse.ArgumentTypeError('expected a positive integer, got %r' % text)
    return value


def fraction(text):
    """A float in (0, 1] (train_msc.py --top-k-pixels)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError('expected a fraction in (0, 1], got %r' % text)
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected an integer >= 0, got %r' % text)
    if value < 0:
        raise argparse.ArgumentTypeError('expected an integer >= 0, got %r' % text)
    return value


def num_replicas(text):
    """--num-replicas: a positive integer or 'all'."""
    if text.strip().lower() == 'all':
        return 'all'
    return positive_int(text)


def add_data_arguments(parser, default_list):
    parser.add_argument('--data-dir', default='', help='directory the list paths are relative to')
    parser.add_argument('--data-list', default=default_list,
                        help='list file: "image_path label_path" per line (default %(default)s)')
    parser.add_argument('--ignore-label', type=int, default=IGNORE_LABEL,
                        help='label value ignored by the loss and metrics (default %(default)s)')


NUM_CLASSES_FROM_RECORD = ('number of classes, background included (default: the '
                           'checkpoint\'s provenance record, else %d)' % NUM_CLASSES_VOC)
IMG_MEAN_FROM_RECORD = ('B,G,R mean subtracted from images (default: the checkpoint\'s '
                        'provenance record, else the Caffe mean 104.008,116.669,122.679)')


def add_num_classes_argument(parser, default=NUM_CLASSES_VOC, help=None, **kwargs):
    """--num-classes, a positive integer: `default` (None: "not given", resolved later, e.g.
    from a provenance record; say so in `help`)."""
    parser.add_argument('--num-classes', type=positive_int, default=default, help=help or (
        'number of classes, background included (default %(default)s)'), **kwargs)


def add_img_mean_argument(parser, from_record=False):
    """--img-mean B,G,R: the Caffe mean, or with from_record None = the checkpoint's record."""
    parser.add_argument('--img-mean', type=img_mean,
                        default=None if from_record else IMG_MEAN_BGR,
                        help=IMG_MEAN_FROM_RECORD if from_record else (
                            'B,G,R mean subtracted from images (default: the Caffe mean '
                            '104.008,116.669,122.679)'))


def add_threads_argument(parser):
    parser.add_argument('--threads', type=non_negative_int, default=0,
                        help='CPU threads for TensorFlow ops (0: TensorFlow decides)')


def add_model_arguments(parser, from_record=False):
    """--num-classes, --img-mean, --threads. from_record: the first two default to the
    checkpoint's provenance record (evaluation, inference) instead of 21 and the Caffe mean
    (training)."""
    if from_record:
        add_num_classes_argument(parser, None, NUM_CLASSES_FROM_RECORD)
    else:
        add_num_classes_argument(parser)
    add_img_mean_argument(parser, from_record)
    add_threads_argument(parser)


def add_max_side_argument(parser):
    """--max-side N (evaluation, inference; memory.py): an image whose longer side exceeds N
    is segmented brought down to N, its labels brought back to its size."""
    parser.add_argument('--max-side', type=positive_int, default=None, metavar='N',
                        help='segment an image whose longer side exceeds N pixels at that '
                             'side (bilinear), its labels brought back to its size (nearest); '
                             'for images too large for the memory, which is estimated from '
                             'the headers before any work (default: every image whole)')


def add_tile_arguments(parser):
    """--tile H,W and --tile-stride H,W (evaluation, inference, export; predict/tiling.py)."""
    parser.add_argument('--tile', type=tile, default=None, metavar='H,W',
                        help='segment an image that one H x W window does not cover in '
                             'windows, at full resolution, in memory bounded by '
                             'the window (each side 8k+1, e.g. %d,%d; the fused logits of the '
                             'windows are averaged where they meet or overlap); for images too '
                             'large for the memory whole, or to trade time for memory; "auto": '
                             'every image whole when the largest fits the memory, else the '
                             'largest window up to %d that fits (the host\'s memory: on a GPU '
                             'give H,W) (default: every image whole)'
                             % (DEFAULT_WINDOW, DEFAULT_WINDOW, DEFAULT_WINDOW))
    parser.add_argument('--tile-stride', type=tile_stride, default=None, metavar='H,W',
                        help='offset between neighbouring windows, multiples of 8 (default: '
                             'the window\'s side minus 1, e.g. %d for %d: windows that touch; '
                             'a smaller stride overlaps them, e.g. 336 for a third of 513 as '
                             'mmsegmentation does, at about twice the time)'
                        % (default_stride(DEFAULT_WINDOW), DEFAULT_WINDOW))


def check_tile_flags(parser, args, save_probs=False):
    """parser.error (one line, exit status 2) for --tile-stride without --tile or not fitting
    it (or with --tile auto), --tile auto with --export-savedmodel, --tile with --max-side,
    --save-probs or --crf-search."""
    if args.tile_stride and not args.tile:
        parser.error('--tile-stride needs --tile')
    if args.tile == AUTO:
        if args.tile_stride:
            parser.error('--tile-stride needs a window, --tile H,W: --tile auto chooses its '
                         'window, and windows that touch')
        if getattr(args, 'export_savedmodel', None):
            parser.error('--tile auto chooses a window from the images\' sizes; an exported '
                         'model has none: give --tile H,W with --export-savedmodel')
    elif args.tile:
        problem = tile_problem(args.tile, args.tile_stride)
        if problem:
            parser.error(problem)
    if args.tile:
        if getattr(args, 'max_side', None):
            parser.error('--tile and --max-side are two ways for large images (full '
                         'resolution in windows, or the image brought down): choose one')
        if save_probs:
            parser.error('--save-probs with --tile: the full-size probabilities are what '
                         '--tile avoids making (use --save-labels, or no --tile)')
        if getattr(args, 'crf_search', None):
            parser.error('--crf-search keeps each image\'s whole-image logits: it cannot be '
                         'combined with --tile')


def add_precision_argument(parser):
    parser.add_argument('--precision', choices=('float32', 'bfloat16', 'float16'),
                        default='float32',
                        help='arithmetic of the network: bfloat16 is about 1.5x faster on CPUs '
                             'with AVX512_BF16 or AMX and on GPUs of compute capability 8.0 or '
                             'more; float16 (training scales the loss) is for GPUs of 7.0 or '
                             'more (V100, T4); both change a few pixels\' labels; elsewhere '
                             'they run float32, saying so (float16 without a GPU runs, slowly; '
                             'default %(default)s)')


def add_deterministic_argument(parser):
    parser.add_argument('--deterministic', action='store_true',
                        help='TensorFlow\'s op determinism: the same inputs give bitwise the '
                             'same results on the same hardware and software, also on GPUs '
                             '(slower; an op without a deterministic kernel stops the run '
                             'naming it); see docs/gpu.md')
