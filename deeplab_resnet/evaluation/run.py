"""Evaluation of a restored network on a labelled list, with or without a dense CRF: the loop
behind evaluate_msc.py and evaluate_msc_with_CRF.py, written once, in three steps:
`prepare` (input checks, the checkpoint and its settings), `confusion_matrices` (the loop,
callable on its own with any predictor, e.g. one sharing a training session) and `report`.

Every image is segmented at full resolution (no cropping): the multi-scale logits (fused by
max, optionally averaged with the mirrored image's) are upsampled bilinearly to the image
size before the argmax (``predictor.Predictor``); with --tile in windows whose logits are
averaged (``tiling``), with --max-side brought down first. One int64 confusion matrix is
accumulated over the whole set (ignore-label pixels skipped; 4 M pixels at a time) and the
metrics are computed from it
(``metrics.compute_metrics``). With ``args.crf`` the softmax probabilities also go through a
fully connected CRF in worker processes (``crf.CRFPool``) while the network runs on the next
images (``predictor.predictions``); both the network's and the CRF's figures are reported.

Bad input is found before the network is built, each as one ``InputError`` line naming the
file(s), cheapest first: the list and its files (``datalist``); the checkpoint, its record
and its class count (``settings.restore_settings``: a --num-classes the checkpoint does not
have is named as such, before any label is read) and a class-names file of the wrong length;
then every label (``labels``): of its image's size, holding only classes and the ignore label
(unless ``--ignore-out-of-range``).

Provenance: a flag that contradicts the checkpoint's record is used, with a warning naming
both values. Images of the list that the record says the checkpoint was trained on (by name,
the basename without extension: the record's `train_images`; or every VOC-style id
YYYY_NNNNNN when it says VOC 2012 train+val, as for the authors' release) are counted in a
warning and in the JSON's "overlap"; --strict makes them an error.
"""
import argparse
import collections
import contextlib
import json
import os
import time

from deeplab_resnet.checkpoint import provenance
from deeplab_resnet.common import cli
from deeplab_resnet.common.constants import TRAIN_SCALES
from deeplab_resnet.common.windows import strides_of, tile_text
from deeplab_resnet.data import datalist, dataset_cli, imageio, labels, server_ids
from deeplab_resnet.evaluation import metrics, per_image
from deeplab_resnet.predict import memory
from deeplab_resnet.runtime import precision
from deeplab_resnet.predict.crf import (CRFPool, add_crf_arguments, add_workers_argument,
                                        crf_params_from_args, resolve_crf_arguments)
from deeplab_resnet.checkpoint.settings import followed, restore_settings, summary_line
from deeplab_resnet.common.errors import InputError, warn as warn_line
from deeplab_resnet.common.progress import Progress, WindowProgress
from deeplab_resnet.predict.segment import SUFFIXES, check_save_dir, output_stem, save_outputs

DEFAULT_LIST = './dataset/val.txt'
DEFAULT_SPLITS = ('val', 'test')   # with --dataset: the list evaluated without --data-list
DEFAULT_CHECKPOINT = './deeplab_resnet.ckpt'
SAVED_KINDS = ('label', 'mask')   # <stem>.png (index PNG), <stem>_mask.png (colour)


# ----------------------------------------------------------------------------- arguments

def build_parser(description=None, crf=False, more=()):
    """The argument parser both evaluation scripts share; crf=True adds the CRF flags.

    --num-classes and --img-mean default to None ("not given"): the checkpoint's provenance
    record supplies them when it has them, else 21 and the Caffe mean (see settings.resolve).
    """
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_data_arguments(p, DEFAULT_LIST)
    dataset_cli.add_dataset_arguments(
        p, 'with --dataset: evaluate this split\'s list (default: "%s", '
           'else "%s")' % DEFAULT_SPLITS)
    cli.add_model_arguments(p, from_record=True)
    cli.add_precision_argument(p)
    cli.add_deterministic_argument(p)
    cli.add_max_side_argument(p)
    cli.add_tile_arguments(p)
    p.add_argument('--num-steps', type=cli.positive_int, default=None,
                   help='evaluate only the first N images of the list (default: all)')
    p.add_argument('--restore-from', default=DEFAULT_CHECKPOINT,
                   help='checkpoint prefix, or a directory (its latest checkpoint); '
                        'default %(default)s')
    p.add_argument('--scales', type=cli.scales, default=TRAIN_SCALES,
                   help='input scales, logits fused by max (default 1.0,0.75,0.5; '
                        '--scales 1.0 is single-scale)')
    p.add_argument('--flip', action='store_true',
                   help='average the logits with those of the mirrored image')
    p.add_argument('--save-dir', default=None,
                   help='write each prediction as <stem>%s (index PNG) and <stem>%s (colour '
                        'mask), in the colours of --palette, --dataset or the checkpoint\'s '
                        'record (else VOC\'s)%s'
                        % (SUFFIXES['label'], SUFFIXES['mask'],
                           '; these are the CRF\'s predictions' if crf else ''))
    p.add_argument('--output-json', default=None,
                   help='write every figure (metrics, confusion matrix, settings) to this '
                        'JSON file')
    p.add_argument('--plot-dir', default=None, metavar='DIR',
                   help='draw confusion.png (rows normalised to the ground truth%s), iou.png '
                        '(per-class IoU%s) and per_class.csv in DIR (docs/evaluation.md)'
                        % ((', after the CRF', ', before and after the CRF') if crf
                           else ('', '')))
    dataset_cli.add_record_class_arguments(p)
    p.add_argument('--ignore-out-of-range', action='store_true',
                   help='treat label values outside [0, num_classes) as the ignore label '
                        'instead of stopping with an error')
    p.add_argument('--strict', action='store_true',
                   help='stop with an error (instead of a warning) when images of the list '
                        'are among the checkpoint\'s training images (by name, from its '
                        'provenance record)')
    per_image.add_arguments(p)
    if crf:
        add_workers_argument(p, '--num-workers')
        add_crf_arguments(p)
    for add in more:   # e.g. crf_search.add_arguments
        add(p)
    p.set_defaults(crf=crf)
    return p


def parse_arguments(argv=None, description=None, crf=False, more=()):
    p = build_parser(description, crf, more)
    args = dataset_cli.parse_with_dataset(p, argv, DEFAULT_SPLITS)
    conflict = memory.max_side_conflict(args.max_side, args.crf, False)
    if conflict:
        p.error(conflict)
    cli.check_tile_flags(p, args)
    per_image.check_arguments(args)   # InputError: one line
    if crf:
        resolve_crf_arguments(args)   # --crf-params' file (InputError: one line)
    return args


# ----------------------------------------------------------------------------- prepare

Prepared = collections.namedtuple('Prepared', ['examples', 'total', 'restored', 'overlap'])
Prepared.__doc__ = """What `prepare` found: the examples to evaluate (datalist.Example), the
list's length, the settings.Restored checkpoint and the training-overlap count."""


def _check_stems(examples, list_path):
    seen = {}
    for ex in examples:
        stem = output_stem(ex.image)
        if stem in seen:
            raise InputError('%s: lines %d and %d are both saved as %s%s in --save-dir '
                             '(%s, %s)' % (list_path, seen[stem].line, ex.line, stem,
                                           SUFFIXES['label'], seen[stem].image, ex.image))
        seen[stem] = ex


def check_outputs(args, examples):
    """--save-dir (a directory; one name per image, none overwriting an input) and
    --output-json (not a directory). Raises InputError."""
    if args.save_dir:
        check_save_dir(args.save_dir, [ex.image for ex in examples], SAVED_KINDS,
                       [ex.label for ex in examples])
        _check_stems(examples, args.data_list)
    if getattr(args, 'save_server_ids', None):
        server_ids.check_dir(args.save_server_ids, [output_stem(ex.image) for ex in examples],
                             [p for ex in examples for p in (ex.image, ex.label)],
                             args.save_dir)
    if args.output_json and os.path.isdir(args.output_json):
        raise InputError('%s: --output-json is a directory, not a file' % args.output_json)
    if args.plot_dir and os.path.exists(args.plot_dir) and not os.path.isdir(args.plot_dir):
        raise InputError('%s: --plot-dir is a file, not a directory' % args.plot_dir)


def scan_labels(examples, num_classes, ignore_label, check_values=True, image_sizes=None):
    """Reads every label once: of its image's size (image header only; image_sizes: the
    (h, w) of each example's image when the caller has read them) and, with check_values,
    holding only classes 0..num_classes-1 and the ignore label.
    Raises: InputError naming the first bad label (labels.check_sizes / check_values)."""
    if image_sizes is None:
        image_sizes = [labels.image_size(ex.image) for ex in examples]
    for ex, image_hw in zip(examples, image_sizes):
        mask = imageio.read_label(ex.label)
        labels.check_sizes(ex, image_hw, mask.shape)
        if check_values:
            labels.check_values(ex.label, mask, num_classes, ignore_label)


def check_overlap(prefix, record, examples, strict, warn=warn_line):
    """How many evaluated images the checkpoint was trained on (provenance.training_overlap):
    a warning, or with `strict` an InputError. Returns the count (0 without a record)."""
    ids = [provenance.image_id(ex.image) for ex in examples]
    overlap, basis = provenance.training_overlap(record, ids)
    if not overlap:
        return 0
    shown = ', '.join(overlap[:3]) + (', ...' if len(overlap) > 3 else '')
    message = ('%d of the %d evaluated images are among the training images of %s (%s: %s); '
               'this is not a held-out score' % (len(overlap), len(set(ids)), prefix, basis,
                                                  shown))
    if strict:
        raise InputError(message + ' (--strict)')
    warn(message + ' (--strict makes this an error)')
    return len(overlap)


def prepare(args, warn=warn_line, log=print):
    """Every check before the network is built, cheapest first (see the module docstring);
    shows the settings' warnings once the input is known to fit; --tile auto becomes the
    window it chose in args.tile (memory.check_fits), said by `log`. Returns Prepared."""
    examples = datalist.load_examples(args.data_list, args.data_dir, need_labels=True)
    total = len(examples)
    if args.num_steps is not None:
        examples = examples[:args.num_steps]
    check_outputs(args, examples)
    restored = restore_settings(args.restore_from, args.num_classes, args.img_mean,
                                args.class_names, **dataset_cli.dataset_settings(args))
    image_sizes = [labels.image_size(ex.image) for ex in examples]   # headers, read once
    sized = [(ex.image,) + hw for ex, hw in zip(examples, image_sizes)]
    args.tile, chose = memory.check_fits(sized, args.scales, args.flip,
                                         restored.settings['num_classes'], args.max_side,
                                         tile=args.tile, probs=args.crf)
    if chose:
        log(chose)
    scan_labels(examples, restored.settings['num_classes'], args.ignore_label,
                check_values=not args.ignore_out_of_range, image_sizes=image_sizes)
    for message in restored.warnings:
        warn(message)
    overlap = check_overlap(restored.prefix, restored.record, examples, args.strict, warn)
    return Prepared(examples, total, restored, overlap)


# ----------------------------------------------------------------------------- the loop

def read_example_image(example):
    return imageio.read_image(example.image)


def read_ground_truth(example, image_hw, num_classes, ignore_label, ignore_out_of_range=False):
    """An example's label mask, checked again (the files may have changed since the scan):
    [H, W] integer class indices; out-of-range values become the ignore label with
    ignore_out_of_range, else they are an InputError naming the file."""
    mask = imageio.read_label(example.label)
    labels.check_sizes(example, image_hw, mask.shape)
    if ignore_out_of_range:
        return labels.mark_out_of_range(mask, num_classes, ignore_label)
    labels.check_values(example.label, mask, num_classes, ignore_label)
    return mask


def confusion_matrices(predictor, examples, num_classes, ignore_label, crf_pool=None,
                       ignore_out_of_range=False, on_prediction=None, on_truth=None):
    """The network's (and the CRF's) confusion matrices over `examples`.

    Args:
      predictor: any object with predict(rgb, want_probs) -> (labels [H, W] int32, probs
        [H, W, C] float32 or None): a predictor.Predictor, or one on a training graph.
      examples: datalist.Example list (image and label paths).
      num_classes, ignore_label: the metrics' class count and void value.
      crf_pool: an entered crf.CRFPool (labels, not probabilities), or None for no CRF.
      ignore_out_of_range: label values outside the classes count as the ignore label
        (else they are an InputError naming the file).
      on_prediction: called with each predictor.Prediction, in the order of `examples`
        (e.g. to save it or count progress).
      on_truth: called with each predictor.Prediction and its ground truth [H, W], in order,
        before on_prediction (per_image.Collector.add).
    Returns: (network metrics.ConfusionMatrix, the CRF's or None without crf_pool).
    """
    from deeplab_resnet.predict.predictor import predictions   # TensorFlow
    net_cm = metrics.ConfusionMatrix(num_classes, ignore_label)
    crf_cm = (metrics.ConfusionMatrix(num_classes, ignore_label) if crf_pool is not None
              else None)
    for result in predictions(predictor, examples, read_example_image, crf_pool):
        truth = read_ground_truth(result.item, result.image.shape[:2], num_classes,
                                  ignore_label, ignore_out_of_range)
        net_cm.update(truth, result.labels)
        if crf_cm is not None:
            crf_cm.update(truth, result.crf)
        if on_truth:
            on_truth(result, truth)
        if on_prediction:
            on_prediction(result)
    return net_cm, crf_cm


def _run_text(args, num_images, total, arithmetic):
    """'3 of 5 images, scales 1,0.75,0.5, flip off, float32, CRF with 2 workers' for the
    summary."""
    text = ('%d%s images, scales %s, flip %s, %s'
            % (num_images, '' if num_images == total else ' of %d' % total,
               ','.join('%g' % v for v in args.scales), 'on' if args.flip else 'off',
               arithmetic))
    text += tile_text(args.tile, args.tile_stride)
    if args.crf:
        text += ', CRF with %d worker%s' % (args.crf_workers,
                                           '' if args.crf_workers == 1 else 's')
    return text


def run_network(args, prepared, log=print, warn=warn_line, collector=None):
    """Builds the Predictor (and the CRF pool), logs the summary line and runs
    confusion_matrices with a progress line (and --save-dir's files).
    Returns (network ConfusionMatrix, the CRF's or None, seconds, the settings.Restored of
    the checkpoint restored: another than prepared's when a running training rotated that
    one away meanwhile). collector: a per_image.Collector fed with every image, or None."""
    from deeplab_resnet.runtime import devices
    from deeplab_resnet.predict.predictor import Predictor   # TensorFlow: after the input checks
    if args.deterministic:
        devices.make_deterministic()
    examples, settings = prepared.examples, prepared.restored.settings
    num_classes = settings['num_classes']
    arithmetic = precision.choose(args.precision, warn)
    predictor = Predictor(prepared.restored.prefix, num_classes, tuple(args.scales),
                          args.flip, settings['img_mean'], args.threads, arithmetic,
                          found_in=prepared.restored.found_in, max_side=args.max_side,
                          tile=args.tile, tile_stride=args.tile_stride,
                          on_window=WindowProgress())
    restored = followed(prepared.restored, predictor.prefix)
    log(summary_line(restored, _run_text(args, len(examples), prepared.total,
                                                  arithmetic)))
    devices.log_devices(log, warn)
    pool = (CRFPool(args.crf_workers, crf_params_from_args(args)) if args.crf
            else contextlib.nullcontext())
    save_ids = getattr(args, 'save_server_ids', None)
    for directory in (args.save_dir, save_ids):
        if directory:
            os.makedirs(directory, exist_ok=True)
    with predictor, pool as crf_pool:
        progress = Progress(len(examples), label='evaluating' + (' (CRF)' if args.crf else ''))

        def finish(result):   # the final prediction: the CRF's with --crf
            final = result.labels if result.crf is None else result.crf
            stem = output_stem(result.item.image)
            if args.save_dir:
                save_outputs(args.save_dir, stem, None, final, None, num_classes, SAVED_KINDS,
                             settings['palette'])
            if save_ids:
                server_ids.write(save_ids, stem, final, settings['server_ids'], num_classes)
            progress.update()

        start = time.time()
        net_cm, crf_cm = confusion_matrices(predictor, examples, num_classes,
                                            args.ignore_label, crf_pool,
                                            args.ignore_out_of_range, finish,
                                            collector.add if collector else None)
        seconds = time.time() - start
        progress.close()
    return net_cm, crf_cm, seconds, restored


# ----------------------------------------------------------------------------- report

def results_dict(args, prepared, net_metrics, seconds):
    """The results without the CRF's part (see evaluate)."""
    restored, n = prepared.restored, len(prepared.examples)
    settings, record = restored.settings, restored.record or {}
    return {
        'mean_iou': net_metrics['mean_iou'],
        'mean_iou_gt_classes': net_metrics['mean_iou_gt_classes'],
        'metrics': net_metrics,
        'overlap': prepared.overlap,
        'settings': {
            'checkpoint': restored.prefix, 'data_list': args.data_list,
            'data_dir': args.data_dir, 'num_images': n,
            'num_classes': settings['num_classes'], 'class_names': settings['class_names'],
            'img_mean': list(settings['img_mean']), 'scales': list(args.scales),
            'flip': bool(args.flip), 'ignore_label': args.ignore_label,
            'tile': list(args.tile) if getattr(args, 'tile', None) else None,
            'tile_stride': (list(strides_of(args.tile, args.tile_stride))
                            if getattr(args, 'tile', None) else None),
            'ignore_out_of_range': bool(args.ignore_out_of_range),
            'sources': settings['sources'],
            'dataset': getattr(args, 'dataset', None),
            'palette': settings['palette'], 'server_ids': settings['server_ids'],
            'checkpoint_step': record.get('step'),
            'checkpoint_trained_on': record.get('trained_on'),
        },
        'timing': {'seconds': seconds, 'images_per_second': n / seconds if seconds > 0 else None},
    }


def report(args, prepared, net_cm, crf_cm, seconds, log=print, collector=None):
    """Logs the timing and the table(s), writes --output-json, ends with 'mIoU: 0.xxxx'.
    Returns the results dict (see evaluate)."""
    names = prepared.restored.settings['class_names']
    net_metrics = net_cm.metrics(names)
    results = results_dict(args, prepared, net_metrics, seconds)
    n = len(prepared.examples)
    log('evaluated %d image%s in %.1f s (%.2f img/s)' % (n, '' if n == 1 else 's', seconds,
                                                        n / seconds if seconds > 0 else 0.0))
    if crf_cm is not None:
        crf_metrics = crf_cm.metrics(names)
        results['crf'] = {'params': dict(crf_params_from_args(args)._asdict()),
                          'num_workers': args.crf_workers, 'metrics': crf_metrics}
        results['mean_iou'] = crf_metrics['mean_iou']
        results['mean_iou_gt_classes'] = crf_metrics['mean_iou_gt_classes']
        results['mean_iou_before_crf'] = net_metrics['mean_iou']
        results['mean_iou_after_crf'] = crf_metrics['mean_iou']
        log('before CRF:\n%s\n\nafter CRF:\n%s' % (metrics.format_table(net_metrics),
                                                   metrics.format_table(crf_metrics)))
        log('mIoU before CRF: %s  after CRF: %s'
            % (metrics.format_ratio(net_metrics['mean_iou']),
               metrics.format_ratio(crf_metrics['mean_iou'])))
    else:
        log(metrics.format_table(net_metrics))
    if collector is not None:
        results.update(collector.results())
    if args.output_json:
        write_json(args.output_json, results)
    if args.plot_dir:
        from deeplab_resnet.evaluation import plots   # matplotlib
        pictures = plots.write_plots(args.plot_dir, results)
        if collector is not None and collector.worst is not None:
            pictures.append(plots.write_worst(args.plot_dir, collector.worst.rows(), results))
        log('pictures: %s' % ', '.join(pictures))
    log('mIoU: %s' % metrics.format_ratio(results['mean_iou']))
    return results


def evaluate(args, log=print, warn=warn_line):
    """Runs the evaluation described by `args` (from build_parser): prepare, run_network,
    report. With args.crf, the CRF stage too. Logs a summary line, the timing and the final
    table(s), ending with a line 'mIoU: 0.xxxx' (after the CRF when there is one); a progress
    line goes to stderr.

    Returns: the results dict (also written to args.output_json when given):
      'mean_iou': the final predictions' mean IoU (after the CRF with args.crf), over the
        classes in the ground truth or the predictions; 'mean_iou_gt_classes': the same over
        the classes in the ground truth only (metrics.compute_metrics);
      'metrics': compute_metrics of the network's predictions;
      with args.crf, 'crf': {'params', 'num_workers', 'metrics'} and 'mean_iou_before_crf',
      'mean_iou_after_crf'; 'overlap': how many evaluated images the checkpoint's record
      says it was trained on (check_overlap; 0 without a record); plus 'settings' and
      'timing'; with args.per_image, 'per_image' and 'worst' (per_image.Collector).
    Raises: InputError for bad input (see the module docstring), and with args.strict for
      an overlap with the training images.
    """
    prepared = prepare(args, warn, log)
    collector = None
    if getattr(args, 'per_image', False):
        collector = per_image.Collector(
            prepared.restored.settings['num_classes'], args.ignore_label,
            (per_image.DEFAULT_WORST if args.worst is None else args.worst)
            if args.plot_dir else None, args.save_dir, output_stem)
    net_cm, crf_cm, seconds, restored = run_network(args, prepared, log, warn, collector)
    return report(args, prepared._replace(restored=restored), net_cm, crf_cm, seconds, log,
                  collector)


def write_json(path, results):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(results, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)
