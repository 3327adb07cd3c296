"""DeepLab-v2's CRF parameter search: `evaluate_msc_with_CRF.py --crf-search DIR`.

The Gaussian kernel (w2 = --crf-pos-w, sigma_gamma = --crf-pos-xy-std) and the iterations
are held at the run's values; the bilateral kernel's w1 (--crf-bi-w), sigma_alpha
(--crf-bi-xy-std) and sigma_beta (--crf-bi-rgb-std) are searched on the first
--crf-search-images images of the list (default 100): a coarse grid (--crf-search-grid,
default DeepLab-v2's 4 x 8 x 4 = 128 settings), then, with --crf-search-rounds 2 (the
default), a finer round of 3 x 3 x 3 settings around the coarse best (each axis: the best and
the best +- half the axis' smallest step; an axis of one value stays; the centre, already
scored, is not run again).

The network runs once per image: its fused logits at their own resolution
(Predictor.predict_fused: [1 or 2, h, w, C] float32, about 1/64 of the full-size
probabilities) and its confusion matrix go to DIR/logits/<index>.npz. Each setting's CRF input
is rebuilt from them with the evaluation's own operations (predictor.ProbsFromFused,
msc.probs_from_fused), so a setting's mIoU equals the CRF script's with that setting to the
last digit. The CRF runs in the evaluation's worker pool (crf.CRFPool.submit_settings): a
task is one image with --crf-search-per-task settings, scored in the worker (confusion
matrices, no labels sent back). Once every image of a group of settings is done, one line
per setting is appended to DIR/results.jsonl.

Stopping: SIGTERM or Ctrl-C stops the search (the running tasks finish, queued ones are
dropped); the same command continues from DIR, keeping every stored image and completed
setting. DIR/search.json records what the stored figures depend on (checkpoint, images,
scales, flip, precision, classes, the fixed CRF values); another run's DIR is refused in one
line.

The output: one table (rank, round, w1, sigma_alpha, sigma_beta, mIoU; the network without
CRF as a row of its own), then DIR/best.json (the best setting's six CRF parameters under
"params", which --crf-params FILE takes in the evaluation scripts and inference.py, and every
setting's mIoU), whose path is the output's last line: `crf-params: DIR/best.json`.
"""
import itertools
import json
import os
import signal
import time

import numpy as np

from deeplab_resnet.checkpoint.settings import followed, summary_line
from deeplab_resnet.common import cli, constants
from deeplab_resnet.common.errors import InputError, warn as warn_line
from deeplab_resnet.common.progress import Progress, format_seconds
from deeplab_resnet.data import imageio
from deeplab_resnet.evaluation import metrics
from deeplab_resnet.evaluation import run as evaluation
from deeplab_resnet.predict.crf import CRFPool, crf_params_from_args
from deeplab_resnet.runtime import precision

DEFAULT_GRID = (constants.CRF_SEARCH_BI_W, constants.CRF_SEARCH_BI_XY_STD,
                constants.CRF_SEARCH_BI_RGB_STD)
AXES = ('bi_w', 'bi_xy_std', 'bi_rgb_std')
AXIS_NAMES = ('w1', 'sigma_alpha', 'sigma_beta')
DEFAULT_PER_TASK = 4
RESULTS, SEARCH, BEST, LOGITS = 'results.jsonl', 'search.json', 'best.json', 'logits'


# ----------------------------------------------------------------------------- arguments

def grid(text):
    """argparse type of --crf-search-grid: 'W1S:SAS:SBS', each a comma-separated list of
    positive numbers, e.g. '3,4,5,6:30,40,50,60,70,80,90,100:3,4,5,6'. Returns three sorted
    tuples of floats."""
    import argparse
    parts = text.split(':')
    if len(parts) != 3:
        raise argparse.ArgumentTypeError('expected three lists W1S:SIGMA_ALPHAS:SIGMA_BETAS, '
                                         'got %r' % text)
    axes = []
    for part in parts:
        try:
            values = sorted({float(v) for v in part.split(',')})
        except ValueError:
            raise argparse.ArgumentTypeError('not a list of numbers: %r' % part)
        if not values or not all(np.isfinite(v) and v > 0 for v in values):
            raise argparse.ArgumentTypeError('values must be positive numbers: %r' % part)
        axes.append(tuple(values))
    return tuple(axes)


def _grid_text(axes):
    return ':'.join(','.join('%g' % v for v in axis) for axis in axes)


def add_arguments(parser):
    """The --crf-search flags (evaluate_msc_with_CRF.py)."""
    g = parser.add_argument_group('CRF parameter search (DeepLab-v2\'s; docs/evaluation.md)')
    g.add_argument('--crf-search', default=None, metavar='DIR',
                   help='search w1, sigma_alpha, sigma_beta (--crf-bi-*) with w2 and '
                        'sigma_gamma held at --crf-pos-*, on the first --crf-search-images '
                        'images of the list, instead of evaluating; keeps its files in DIR '
                        '(the same command continues a stopped search) and writes '
                        'DIR/best.json for --crf-params')
    g.add_argument('--crf-search-images', type=cli.positive_int,
                   default=constants.CRF_SEARCH_IMAGES, metavar='N',
                   help='images searched on: the first N of the list (default %(default)s)')
    g.add_argument('--crf-search-grid', type=grid, default=DEFAULT_GRID,
                   metavar='W1S:SIGMA_ALPHAS:SIGMA_BETAS',
                   help='the coarse grid, three comma-separated lists (default %s: 128 '
                        'settings)' % _grid_text(DEFAULT_GRID))
    g.add_argument('--crf-search-rounds', type=int, choices=(1, 2), default=2,
                   help='2 (default): then a finer round around the coarse best (best and '
                        'best +- half a step on each axis, 27 settings); 1: the grid only')
    g.add_argument('--crf-search-per-task', type=cli.positive_int, default=DEFAULT_PER_TASK,
                   metavar='K', help='settings per worker task (one image each; default '
                                     '%(default)s): results are kept once a group of K '
                                     'settings has run on every image')
    return parser


# ----------------------------------------------------------------------------- the grid

def coarse_settings(axes):
    """Every (w1, sigma_alpha, sigma_beta) of the grid, w1 slowest."""
    return [tuple(float(v) for v in s) for s in itertools.product(*axes)]


def fine_axis(values, best):
    """One axis of the finer round: best - step/2, best, best + step/2 with the axis'
    smallest step (values not above 0 dropped); [best] for an axis of one value."""
    values = sorted(values)
    if len(values) < 2:
        return [best]
    half = min(b - a for a, b in zip(values, values[1:])) / 2.0
    return [v for v in (best - half, best, best + half) if v > 0]


def fine_settings(axes, best):
    return coarse_settings([fine_axis(axis, b) for axis, b in zip(axes, best)])


def params_of(base, setting):
    """CRFParams: base's iterations and Gaussian kernel, the setting's bilateral kernel."""
    return base._replace(**dict(zip(AXES, setting)))


# ----------------------------------------------------------------------------- DIR

def _identity(args, prepared, arithmetic, base):
    restored = prepared.restored
    return {'checkpoint': os.path.abspath(restored.prefix),
            'images': [[os.path.abspath(ex.image), os.path.abspath(ex.label)]
                       for ex in prepared.examples],
            'scales': [float(s) for s in args.scales], 'flip': bool(args.flip),
            'precision': arithmetic, 'num_classes': restored.settings['num_classes'],
            'img_mean': [float(v) for v in restored.settings['img_mean']],
            'ignore_label': args.ignore_label,
            'ignore_out_of_range': bool(args.ignore_out_of_range),
            'iterations': base.iterations, 'pos_w': base.pos_w,
            'pos_xy_std': base.pos_xy_std}


def check_dir(directory, identity):
    """Creates DIR/search.json, or checks that DIR holds a search of the same run.
    Raises InputError naming the first difference."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise InputError('%s: --crf-search DIR is a file, not a directory' % directory)
    path = os.path.join(directory, SEARCH)
    if os.path.exists(path):
        try:
            with open(path) as f:
                stored = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError('%s: not readable (%s); remove DIR or give another' % (path, e))
        for key in sorted(set(stored) | set(identity)):
            if stored.get(key) != identity.get(key):
                raise InputError('%s holds a search of another run (%s: %s there, %s now); '
                                 'give another --crf-search DIR'
                                 % (directory, key, _short(stored.get(key)),
                                    _short(identity.get(key))))
        return
    os.makedirs(os.path.join(directory, LOGITS), exist_ok=True)
    evaluation.write_json(path, identity)


def _short(value):
    text = json.dumps(value)
    return text if len(text) < 60 else text[:57] + '...'


def logits_path(directory, index):
    return os.path.join(directory, LOGITS, '%05d.npz' % index)


def read_results(directory):
    """The completed settings of DIR/results.jsonl: {(w1, sa, sb): row}. A line cut short
    by a stop is dropped from the file."""
    path = os.path.join(directory, RESULTS)
    done = {}
    if not os.path.exists(path):
        return done
    with open(path, 'rb') as f:
        data = f.read()
    keep = data[:data.rfind(b'\n') + 1]
    if len(keep) != len(data):
        with open(path, 'r+b') as f:
            f.truncate(len(keep))
    for line in keep.decode().splitlines():
        row = json.loads(line)
        done[tuple(row[a] for a in AXES)] = row
    return done


def append_results(directory, rows):
    with open(os.path.join(directory, RESULTS), 'a') as f:
        for row in rows:
            f.write(json.dumps(row) + '\n')
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- the search

class _Stop(object):
    """SIGTERM raises SystemExit(143) in the main thread while the search runs (Ctrl-C:
    KeyboardInterrupt); what is stored in DIR stays."""

    def __enter__(self):
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        raise SystemExit(143)

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._previous)
        return False


def store_logits(args, prepared, directory, todo, arithmetic, log, warn):
    """Runs the network on the examples of `todo` (indices) and stores each one's fused
    logits and confusion matrix. Returns the settings.Restored used."""
    from deeplab_resnet.predict.predictor import Predictor   # TensorFlow
    from deeplab_resnet.runtime import devices
    if args.deterministic:
        devices.make_deterministic()
    settings = prepared.restored.settings
    num_classes = settings['num_classes']
    predictor = Predictor(prepared.restored.prefix, num_classes, tuple(args.scales), args.flip,
                          settings['img_mean'], args.threads, arithmetic,
                          found_in=prepared.restored.found_in)
    restored = followed(prepared.restored, predictor.prefix)
    log(summary_line(restored, '%d images for the CRF search, scales %s, flip %s, %s'
                     % (len(prepared.examples), ','.join('%g' % v for v in args.scales),
                        'on' if args.flip else 'off', arithmetic)))
    devices.log_devices(log, warn)
    with predictor:
        progress = Progress(len(todo), label='network (logits kept in %s)' % directory)
        for i in todo:
            ex = prepared.examples[i]
            rgb = imageio.read_image(ex.image)
            fused, labels = predictor.predict_fused(rgb)
            truth = evaluation.read_ground_truth(ex, rgb.shape[:2], num_classes,
                                                 args.ignore_label, args.ignore_out_of_range)
            cm = metrics.confusion_matrix(truth, labels, num_classes, args.ignore_label)
            path = logits_path(directory, i)
            with open(path + '.tmp', 'wb') as f:
                np.savez(f, fused=fused, confusion=cm, image_hw=np.array(rgb.shape[:2]))
            os.replace(path + '.tmp', path)
            progress.update()
        progress.close()
    return restored


def run_settings(args, prepared, directory, settings, round_number, base):
    """Scores `settings` ((w1, sa, sb) tuples) on every stored image in the worker pool, K
    settings per task; appends each group's rows to DIR/results.jsonl once every image is
    done. Returns the rows {(w1, sa, sb): row}."""
    from deeplab_resnet.predict.predictor import ProbsFromFused   # TensorFlow
    num_classes = prepared.restored.settings['num_classes']
    names = prepared.restored.settings['class_names']
    k = args.crf_search_per_task
    groups = [settings[i:i + k] for i in range(0, len(settings), k)]
    examples = prepared.examples
    n = len(examples)
    rows = {}
    pending = {}   # group index -> [images done, [K, C, C] sums]

    def finish(key, cms):
        g, _ = key
        entry = pending.setdefault(g, [0, np.zeros_like(cms)])
        entry[0] += 1
        entry[1] += cms
        if entry[0] == n:
            done = []
            for setting, cm in zip(groups[g], entry[1]):
                m = metrics.compute_metrics(cm, names)
                row = dict(zip(AXES, setting), round=round_number, mean_iou=m['mean_iou'],
                           mean_iou_gt_classes=m['mean_iou_gt_classes'],
                           confusion_matrix=cm.tolist())
                rows[setting] = row
                done.append(row)
            append_results(directory, done)
            del pending[g]
        progress.update()

    progress = Progress(len(groups) * n, label='CRF search round %d (%d settings, %d per task)'
                        % (round_number, len(settings), k), unit='task')
    with ProbsFromFused(args.threads) as rebuild, \
            CRFPool(args.crf_workers, base) as pool:
        for g, group in enumerate(groups):
            group_params = [params_of(base, s) for s in group]
            for i, ex in enumerate(examples):
                with np.load(logits_path(directory, i)) as stored:
                    fused, image_hw = stored['fused'], tuple(stored['image_hw'])
                rgb = imageio.read_image(ex.image)
                truth = evaluation.read_ground_truth(ex, rgb.shape[:2], num_classes,
                                                     args.ignore_label, args.ignore_out_of_range)
                probs = rebuild(fused, image_hw)
                pool.submit_settings((g, i), rgb, probs, group_params, truth, num_classes,
                                     args.ignore_label)
                for key, cms in pool.ready():
                    finish(key, cms)
        for key, cms in pool.results():
            finish(key, cms)
    progress.close()
    return rows


def ranked(rows, network_miou):
    """Table rows, best first: dicts with 'rank', 'round' (None for the network), the three
    values (None for the network) and 'mean_iou'. Ties: the coarse round first, then grid
    order."""
    table = [dict(row, order=i) for i, row in enumerate(rows)]
    table.append({'round': None, 'bi_w': None, 'bi_xy_std': None, 'bi_rgb_std': None,
                  'mean_iou': network_miou, 'order': len(table)})
    table.sort(key=lambda r: (-(r['mean_iou'] if r['mean_iou'] is not None else -1),
                              r['order']))
    return [dict({k: v for k, v in r.items() if k not in ('order', 'confusion_matrix')},
                 rank=i + 1) for i, r in enumerate(table)]


def format_table(table):
    """The printed table: rank, round, w1, sigma_alpha, sigma_beta, mIoU."""
    head = '%4s  %5s  %6s  %11s  %10s  %7s' % ('rank', 'round', 'w1', 'sigma_alpha',
                                                'sigma_beta', 'mIoU')
    lines = [head, '-' * len(head)]
    for r in table:
        if r['round'] is None:
            lines.append('%4d  %5s  %-30s  %7s' % (r['rank'], '-', 'the network without CRF',
                                                   metrics.format_ratio(r['mean_iou'])))
        else:
            lines.append('%4d  %5d  %6g  %11g  %10g  %7s'
                         % (r['rank'], r['round'], r['bi_w'], r['bi_xy_std'], r['bi_rgb_std'],
                            metrics.format_ratio(r['mean_iou'])))
    return '\n'.join(lines)


def search(args, log=print, warn=warn_line):
    """The search described in the module docstring. Returns the best.json dict.
    Raises: InputError for bad input (evaluation.prepare's checks; another run's DIR)."""
    for flag, value in (('--save-dir', args.save_dir), ('--output-json', args.output_json),
                        ('--plot-dir', args.plot_dir), ('--per-image', args.per_image),
                        ('--num-steps', args.num_steps)):
        if value:
            raise InputError('%s does not go with --crf-search (the search writes its own '
                             'files in %s; --crf-search-images N picks the images)'
                             % (flag, args.crf_search))
    directory = args.crf_search
    args.num_steps = args.crf_search_images
    prepared = evaluation.prepare(args, warn)
    arithmetic = precision.choose(args.precision, warn)
    base = crf_params_from_args(args)
    check_dir(directory, _identity(args, prepared, arithmetic, base))
    start = time.time()
    log('CRF search in %s on %d images of %s: w2 %g and sigma_gamma %g held (--crf-pos-w, '
        '--crf-pos-xy-std), %d mean-field iterations, %d CRF worker%s'
        % (directory, len(prepared.examples), args.data_list, base.pos_w, base.pos_xy_std,
           base.iterations, args.crf_workers, '' if args.crf_workers == 1 else 's'))
    with _Stop():
        try:
            todo = [i for i in range(len(prepared.examples))
                    if not os.path.exists(logits_path(directory, i))]
            if todo:
                restored = store_logits(args, prepared, directory, todo, arithmetic, log, warn)
                prepared = prepared._replace(restored=restored)
            network_cm = np.zeros((prepared.restored.settings['num_classes'],) * 2, np.int64)
            for i in range(len(prepared.examples)):
                with np.load(logits_path(directory, i)) as stored:
                    network_cm += stored['confusion']
            names = prepared.restored.settings['class_names']
            network_miou = metrics.compute_metrics(network_cm, names)['mean_iou']
            done = read_results(directory)
            before = set(done)   # scored before this command
            axes = args.crf_search_grid
            rounds = [(1, coarse_settings(axes))]
            results, listed = [], set()
            r = 0
            while r < len(rounds):
                number, settings = rounds[r]
                todo = [s for s in settings if s not in done]
                kept = sum(s in before for s in settings)
                if kept:
                    log('round %d: %d of its %d settings kept from %s'
                        % (number, kept, len(settings), directory))
                if todo:
                    done.update(run_settings(args, prepared, directory, todo, number, base))
                for s in settings:
                    if s not in listed:   # the fine round's centre is the coarse best
                        listed.add(s)
                        results.append(dict(done[s], round=number))
                if number == 1 and args.crf_search_rounds == 2:
                    best = max(settings, key=lambda s: (done[s]['mean_iou'] or 0.0,
                                                        -settings.index(s)))
                    rounds.append((2, fine_settings(axes, best)))
                r += 1
        except SystemExit as e:
            if e.code == 143:
                log('stopped (SIGTERM): %d settings and %d images\' logits are kept in %s; '
                    'the same command continues'
                    % (len(read_results(directory)),
                       sum(n.endswith('.npz') for n in os.listdir(os.path.join(directory,
                                                                               LOGITS))),
                       directory))
            raise
        except KeyboardInterrupt:
            log('stopped (Ctrl-C): what is done is kept in %s; the same command continues'
                % directory)
            raise SystemExit(130)
    seconds = time.time() - start
    table = ranked(results, network_miou)
    log(format_table(table))
    best_row = next(r for r in table if r['round'] is not None)
    best = {'params': dict(params_of(base, tuple(best_row[a] for a in AXES))._asdict()),
            'mean_iou': best_row['mean_iou'], 'mean_iou_without_crf': network_miou,
            'num_images': len(prepared.examples), 'data_list': args.data_list,
            'checkpoint': prepared.restored.prefix, 'scales': list(args.scales),
            'flip': bool(args.flip), 'seconds': seconds, 'settings': table}
    path = os.path.join(directory, BEST)
    evaluation.write_json(path, best)
    log('best: w1 %g, sigma_alpha %g, sigma_beta %g (w2 %g, sigma_gamma %g): mIoU %s, %s '
        'without the CRF; %d settings on %d images, %s this run'
        % (best_row['bi_w'], best_row['bi_xy_std'], best_row['bi_rgb_std'], base.pos_w,
           base.pos_xy_std, metrics.format_ratio(best_row['mean_iou']),
           metrics.format_ratio(network_miou), len(results), len(prepared.examples),
           format_seconds(seconds)))
    log('crf-params: %s' % path)
    return best

