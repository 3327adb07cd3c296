"""Evaluation of a restored network on a labelled list, with or without a dense CRF: the loop
behind evaluate_msc.py and evaluate_msc_with_CRF.py, written once.

Every image is segmented at full resolution (no cropping): the multi-scale logits (fused by
max, optionally averaged with the mirrored image's) are upsampled bilinearly to the image
size before the argmax (``predictor.Predictor``). One int64 confusion matrix is accumulated
over the whole set (ignore-label pixels skipped) and the metrics are computed from it
(``metrics.compute_metrics``). With ``args.crf`` the softmax probabilities also go through a
fully connected CRF in worker processes (``crf.CRFPool``) while the network runs on the next
images; both the network's and the CRF's figures are reported.

Bad input is found before the network is built, each as one ``InputError`` line naming the
file(s): the list and its files (``datalist``), an image and label of different sizes, label
values that are neither a class nor the ignore label (unless ``--ignore-out-of-range``), a
class-names file of the wrong length, a missing checkpoint or one with another class count.
The checks that need no checkpoint come first, so they fail without loading TensorFlow.

Provenance: a flag that contradicts the checkpoint's record is used, with a warning naming
both values. Images of the list that the record says the checkpoint was trained on (by name,
the basename without extension: the record's `train_images`; or every VOC-style id
YYYY_NNNNNN when it says VOC 2012 train+val, as for the authors' release) are counted in a
warning and in the JSON's "overlap"; --strict makes them an error.
"""
import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np
from PIL import Image

from deeplab_resnet import cli, datalist, imageio, metrics, provenance
from deeplab_resnet.colormap import colourise
from deeplab_resnet.constants import NUM_CLASSES_VOC, TRAIN_SCALES
from deeplab_resnet.crf import CRFPool, add_crf_arguments, crf_params_from_args
from deeplab_resnet.errors import InputError
from deeplab_resnet.settings import resolve
from deeplab_resnet.progress import Progress

DEFAULT_LIST = './dataset/val.txt'
DEFAULT_CHECKPOINT = './deeplab_resnet.ckpt'
DEFAULT_SCALES = TRAIN_SCALES
MAX_VALUES_SHOWN = 10


# ----------------------------------------------------------------------------- arguments

def build_parser(description=None, crf=False):
    """The argument parser both evaluation scripts share; crf=True adds the CRF flags.

    --num-classes and --img-mean default to None ("not given"): the checkpoint's provenance
    record supplies them when it has them, else 21 and the Caffe mean (see settings.resolve).
    """
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_data_arguments(p, DEFAULT_LIST)
    p.add_argument('--num-classes', type=cli.positive_int, default=None,
                   help='number of classes, background included (default: the checkpoint\'s '
                        'provenance record, else %d)' % NUM_CLASSES_VOC)
    p.add_argument('--img-mean', type=cli.img_mean, default=None,
                   help='B,G,R mean subtracted from images (default: the checkpoint\'s '
                        'provenance record, else the Caffe mean 104.008,116.669,122.679)')
    p.add_argument('--threads', type=cli.non_negative_int, default=0,
                   help='CPU threads for TensorFlow ops (0: TensorFlow decides)')
    p.add_argument('--num-steps', type=cli.positive_int, default=None,
                   help='evaluate only the first N images of the list (default: all)')
    p.add_argument('--restore-from', default=DEFAULT_CHECKPOINT,
                   help='checkpoint prefix, or a directory (its latest checkpoint); '
                        'default %(default)s')
    p.add_argument('--scales', type=cli.scales, default=DEFAULT_SCALES,
                   help='input scales, logits fused by max (default 1.0,0.75,0.5; '
                        '--scales 1.0 is single-scale)')
    p.add_argument('--flip', action='store_true',
                   help='average the logits with those of the mirrored image')
    p.add_argument('--save-dir', default=None,
                   help='write each prediction as <stem>.png (index PNG, VOC palette) and '
                        '<stem>_color.png (colour PNG)%s'
                        % ('; these are the CRF\'s predictions' if crf else ''))
    p.add_argument('--output-json', default=None,
                   help='write every figure (metrics, confusion matrix, settings) to this '
                        'JSON file')
    p.add_argument('--class-names', default=None, metavar='FILE',
                   help='class names, one per line (default: the provenance record\'s, the '
                        'VOC names for 21 classes, else class_<i>)')
    p.add_argument('--ignore-out-of-range', action='store_true',
                   help='treat label values outside [0, num_classes) as the ignore label '
                        'instead of stopping with an error')
    p.add_argument('--strict', action='store_true',
                   help='stop with an error (instead of a warning) when images of the list '
                        'are among the checkpoint\'s training images (by name, from its '
                        'provenance record)')
    if crf:
        p.add_argument('--num-workers', type=cli.non_negative_int, default=os.cpu_count() or 1,
                       help='CRF worker processes (default: the CPU count, %(default)s; '
                            '0: the CRF runs in the main process)')
        add_crf_arguments(p)
    p.set_defaults(crf=crf)
    return p


def parse_arguments(argv=None, description=None, crf=False):
    return build_parser(description, crf).parse_args(argv)


# ----------------------------------------------------------------------------- input checks

def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def _image_size(path):
    """(height, width) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception as e:   # PIL raises many types for corrupt files
        raise InputError('%s: cannot decode image (%s)' % (path, e.__class__.__name__))
    return h, w


def _check_sizes(example, image_hw, label_hw):
    if tuple(image_hw) != tuple(label_hw):
        raise InputError('%s, %s: image is %dx%d but its label is %dx%d (width x height; '
                         'list line %d)' % (example.image, example.label, image_hw[1],
                                            image_hw[0], label_hw[1], label_hw[0],
                                            example.line))


def _check_stems(examples, list_path):
    seen = {}
    for ex in examples:
        stem = _stem(ex.image)
        if stem in seen:
            raise InputError('%s: lines %d and %d are both saved as %s.png in --save-dir '
                             '(%s, %s)' % (list_path, seen[stem].line, ex.line, stem,
                                           seen[stem].image, ex.image))
        seen[stem] = ex


def scan_labels(examples):
    """Reads every label once, checks it against its image's size (image header only).
    Returns: list of the distinct label values of each example (for the range check)."""
    values = []
    for ex in examples:
        label = imageio.read_label(ex.label)
        _check_sizes(ex, _image_size(ex.image), label.shape)
        values.append(np.unique(label))
    return values


def _bad_values_error(path, bad, num_classes, ignore_label):
    shown = ', '.join(str(v) for v in bad[:MAX_VALUES_SHOWN])
    more = ', ...' if len(bad) > MAX_VALUES_SHOWN else ''
    return InputError('%s: label values %s%s are neither classes 0..%d nor the ignore label %d '
                      '(pass --ignore-out-of-range to ignore them, or check --num-classes)'
                      % (path, shown, more, num_classes - 1, ignore_label))


def check_label_values(examples, values, num_classes, ignore_label):
    for ex, v in zip(examples, values):
        bad = metrics.out_of_range_values(v, num_classes, ignore_label)
        if bad:
            raise _bad_values_error(ex.label, bad, num_classes, ignore_label)


# ----------------------------------------------------------------------------- settings

def _warn(message):
    print('warning: %s' % message, file=sys.stderr)
    sys.stderr.flush()


def record_summary(record):
    """', step N (record by train_msc.py)' / ', no provenance record' for the summary line."""
    if record is None:
        return '; no provenance record'
    parts = []
    if record.get('step') is not None:
        parts.append('step %s' % record['step'])
    parts.append('record by %s' % record.get('created_by', 'an unknown tool'))
    source = record.get('source')
    if isinstance(source, dict) and source.get('file'):
        parts.append('from %s' % source['file'])
    if record.get('trained_on'):
        parts.append('trained on %s' % record['trained_on'])
    return '; checkpoint ' + ', '.join(parts)


def check_overlap(prefix, record, examples, strict, warn=_warn):
    """How many evaluated images the checkpoint was trained on (provenance.training_overlap):
    a warning, or with `strict` an InputError. Returns the count (0 without a record)."""
    ids = [_stem(ex.image) for ex in examples]
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


def summary_line(prefix, settings, args, num_images, total, record=False):
    s = settings['sources']
    mean = ','.join('%.3f' % v for v in settings['img_mean'])
    text = ('restored %s: %d classes (%s), image mean B,G,R %s (%s), class names: %s; '
            '%d%s images, scales %s, flip %s'
            % (prefix, settings['num_classes'], s['num_classes'], mean, s['img_mean'],
               s['class_names'], num_images, '' if num_images == total else ' of %d' % total,
               ','.join('%g' % v for v in args.scales), 'on' if args.flip else 'off'))
    if args.crf:
        text += ', CRF with %d worker%s' % (args.num_workers,
                                           '' if args.num_workers == 1 else 's')
    if record is not False:
        text += record_summary(record)
    return text


# ----------------------------------------------------------------------------- the loop

def _mark_out_of_range(label, num_classes, ignore_label):
    """Label values outside [0, num_classes) other than the ignore label -> ignore label."""
    label = label.astype(np.int32)
    bad = ((label < 0) | (label >= num_classes)) & (label != ignore_label)
    label[bad] = ignore_label
    return label


def _format_miou(value):
    return 'n/a' if value is None else '%.4f' % value


def evaluate(args, log=print, warn=_warn):
    """Runs the evaluation described by `args` (from build_parser); with args.crf, the CRF
    stage too. Logs a summary line, the timing and the final table(s), ending with a line
    'mIoU: 0.xxxx' (after the CRF when there is one); a progress line goes to stderr.

    Returns: the results dict (also written to args.output_json when given):
      'mean_iou': the final predictions' mean IoU (after the CRF with args.crf);
      'metrics': compute_metrics of the network's predictions;
      with args.crf, 'crf': {'params', 'num_workers', 'metrics'} and 'mean_iou_before_crf',
      'mean_iou_after_crf'; 'overlap': how many evaluated images the checkpoint's record
      says it was trained on (check_overlap; 0 without a record); plus 'settings' and
      'timing'.
    Raises: InputError for bad input (see the module docstring), and with args.strict for
      an overlap with the training images.
    """
    use_crf = bool(getattr(args, 'crf', False))
    # Checks that need no TensorFlow.
    examples = datalist.load_examples(args.data_list, args.data_dir, need_labels=True)
    total = len(examples)
    if args.num_steps is not None:
        examples = examples[:args.num_steps]
    if args.save_dir:
        if os.path.exists(args.save_dir) and not os.path.isdir(args.save_dir):
            raise InputError('%s: --save-dir is a file, not a directory' % args.save_dir)
        _check_stems(examples, args.data_list)
    if args.output_json and os.path.isdir(args.output_json):
        raise InputError('%s: --output-json is a directory, not a file' % args.output_json)
    names_from_file = (provenance.read_class_names(args.class_names) if args.class_names
                       else None)
    label_values = scan_labels(examples)

    # The checkpoint and what it says about itself.
    from deeplab_resnet import checkpoints
    prefix = checkpoints.resolve_checkpoint(args.restore_from)
    record = provenance.read_record(prefix)
    pending = []   # contradiction warnings, shown once the input is known to be usable
    settings = resolve(prefix, record, args.num_classes, args.img_mean, names_from_file,
                       args.class_names, pending.append)
    num_classes, ignore = settings['num_classes'], args.ignore_label
    if not args.ignore_out_of_range:
        check_label_values(examples, label_values, num_classes, ignore)
    checkpoints.check_class_count(prefix, num_classes, settings['sources']['num_classes'])
    for message in pending:
        warn(message)
    overlap = check_overlap(prefix, record, examples, getattr(args, 'strict', False), warn)

    params = crf_params_from_args(args) if use_crf else None
    net_cm = metrics.ConfusionMatrix(num_classes, ignore)
    crf_cm = metrics.ConfusionMatrix(num_classes, ignore) if use_crf else None
    if args.save_dir:
        os.makedirs(args.save_dir, exist_ok=True)

    def finish(example, label, prediction, cm):
        cm.update(label, prediction)
        if args.save_dir:
            base = os.path.join(args.save_dir, _stem(example.image))
            imageio.write_index_png(base + '.png', prediction)
            imageio.write_rgb_png(base + '_color.png', colourise(prediction, num_classes))

    from deeplab_resnet.predictor import Predictor   # TensorFlow: after the input checks
    predictor = Predictor(prefix, num_classes, tuple(args.scales), args.flip,
                          settings['img_mean'], args.threads)
    log(summary_line(prefix, settings, args, len(examples), total, record))
    pool = (CRFPool(args.num_workers, params) if use_crf else contextlib.nullcontext())
    with predictor, pool:
        progress = Progress(len(examples), label='evaluating' + (' (CRF)' if use_crf else ''))
        start = time.time()
        for ex in examples:
            image = imageio.read_image(ex.image)
            label = imageio.read_label(ex.label)
            _check_sizes(ex, image.shape[:2], label.shape)   # the files may have changed
            if args.ignore_out_of_range:
                label = _mark_out_of_range(label, num_classes, ignore)
            prediction, probs = predictor.predict(image, want_probs=use_crf)
            if not use_crf:
                finish(ex, label, prediction, net_cm)
                progress.update()
                continue
            net_cm.update(label, prediction)
            pool.submit((ex, label), image, probs)   # the CRF overlaps the next forward pass
            done = 0
            for (done_ex, done_label), refined in pool.ready():
                finish(done_ex, done_label, refined, crf_cm)
                done += 1
            if done:
                progress.update(done)
        if use_crf:
            for (done_ex, done_label), refined in pool.results():
                finish(done_ex, done_label, refined, crf_cm)
                progress.update()
        seconds = time.time() - start
        progress.close()

    names = settings['class_names']
    net_metrics = net_cm.metrics(names)
    results = {
        'mean_iou': net_metrics['mean_iou'],
        'metrics': net_metrics,
        'overlap': overlap,
        'settings': {
            'checkpoint': prefix, 'data_list': args.data_list, 'data_dir': args.data_dir,
            'num_images': len(examples), 'num_classes': num_classes, 'class_names': names,
            'img_mean': list(settings['img_mean']), 'scales': list(args.scales),
            'flip': bool(args.flip), 'ignore_label': ignore,
            'ignore_out_of_range': bool(args.ignore_out_of_range),
            'sources': settings['sources'],
            'checkpoint_step': (record or {}).get('step'),
            'checkpoint_trained_on': (record or {}).get('trained_on'),
        },
        'timing': {'seconds': seconds,
                   'images_per_second': len(examples) / seconds if seconds > 0 else None},
    }
    n = len(examples)
    log('evaluated %d image%s in %.1f s (%.2f img/s)' % (n, '' if n == 1 else 's', seconds,
                                                        n / seconds if seconds > 0 else 0.0))
    if use_crf:
        crf_metrics = crf_cm.metrics(names)
        results['crf'] = {'params': dict(params._asdict()), 'num_workers': args.num_workers,
                          'metrics': crf_metrics}
        results['mean_iou'] = crf_metrics['mean_iou']
        results['mean_iou_before_crf'] = net_metrics['mean_iou']
        results['mean_iou_after_crf'] = crf_metrics['mean_iou']
        log('before CRF:\n%s\n\nafter CRF:\n%s' % (metrics.format_table(net_metrics),
                                                   metrics.format_table(crf_metrics)))
        log('mIoU before CRF: %s  after CRF: %s' % (_format_miou(net_metrics['mean_iou']),
                                                    _format_miou(crf_metrics['mean_iou'])))
    else:
        log(metrics.format_table(net_metrics))
    if args.output_json:
        write_json(args.output_json, results)
    log('mIoU: %s' % _format_miou(results['mean_iou']))
    return results


def write_json(path, results):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(results, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)
