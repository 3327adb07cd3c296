"""Segmenting image files (the logic of inference.py): inputs, settings, outputs.

Inputs are image files, directories (their images, sorted) and list files in the dataset
format (.txt; labels ignored), checked and expanded before any work; two inputs that would
write the same output names are refused. One Predictor (graph built once, weights restored
once) segments every image. Per image, in the save directory:

  <stem>_mask.png      colour mask (VOC palette, extended past 21 classes), the image's size
  <stem>_label.png     --save-labels: palette PNG holding the class indices
  <stem>_overlay.jpg   --overlay: the mask blended over the image (OVERLAY_ALPHA)
  <stem>_probs.npy     --save-probs: float16 probabilities [H, W, C] (after the CRF with --crf)

An image that cannot be read is reported (one line naming it) and skipped; run() then
returns 1. Fatal problems (a missing input or checkpoint, another class count) raise
InputError before any image is processed.
"""
import os
import sys
import time

import numpy as np
from PIL import Image

from deeplab_resnet import datalist, imageio
from deeplab_resnet.colormap import colourise
from deeplab_resnet.errors import InputError
from deeplab_resnet.settings import mean_text, resolve

OVERLAY_ALPHA = 0.5
OVERLAY_JPEG_QUALITY = 90
LIST_EXTENSIONS = ('.txt',)
SUFFIXES = {'mask': '_mask.png', 'label': '_label.png', 'overlay': '_overlay.jpg',
            'probs': '_probs.npy'}
MAX_LISTED = 3


def collect_images(paths, data_dir=''):
    """Image files, directories and .txt list files -> image paths, in the given order.

    Raises: InputError for a missing path, a directory without images, a bad list file or
      a listed image that does not exist.
    """
    images = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, name) for name in os.listdir(path)
                           if name.lower().endswith(imageio.IMAGE_EXTENSIONS)
                           and os.path.isfile(os.path.join(path, name)))
            if not found:
                raise InputError('%s: no images (%s) in this directory'
                                 % (path, ', '.join(imageio.IMAGE_EXTENSIONS)))
            images.extend(found)
        elif path.lower().endswith(LIST_EXTENSIONS):
            examples = datalist.parse_list(path, data_dir, need_labels=False)
            datalist.check_files_exist([ex._replace(label=None) for ex in examples], path)
            images.extend(ex.image for ex in examples)
        elif os.path.isfile(path):
            images.append(path)
        else:
            raise InputError('%s: image not found' % path)
    return images


def output_stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def check_output_names(images):
    """Raises InputError when two inputs have the same stem (their outputs would collide)."""
    by_stem = {}
    for path in images:
        by_stem.setdefault(output_stem(path), []).append(path)
    clashes = [(stem, paths) for stem, paths in by_stem.items() if len(paths) > 1]
    if clashes:
        stem, paths = clashes[0]
        raise InputError(
            '%d output name(s) would collide, e.g. %s all write %s%s (rename the inputs or '
            'run them separately with different --save-dir)'
            % (len(clashes), ' and '.join(paths[:MAX_LISTED]) + (' ...' if len(paths) >
                                                                 MAX_LISTED else ''),
               stem, SUFFIXES['mask']))


def resolve_settings(prefix, num_classes=None, img_mean=None, warn=None):
    """Class count, image mean and class names (settings.resolve) and the start-up line.

    Returns: (num_classes, img_mean, class_names or None, num_classes source, start-up line).
    """
    from deeplab_resnet import provenance
    record = provenance.read_record(prefix)
    s = resolve(prefix, record, num_classes, img_mean, warn=warn)
    num_classes, img_mean, sources = s['num_classes'], s['img_mean'], s['sources']
    names = s['class_names'] if s['names_known'] else None
    if record is None:
        line = ('checkpoint %s (no provenance record): %d classes (%s), image mean B,G,R %s '
                '(%s)' % (prefix, num_classes, sources['num_classes'], mean_text(img_mean),
                          sources['img_mean']))
        return num_classes, img_mean, None, sources['num_classes'], line
    shown = ''
    if names:
        shown = ', class names %s%s' % (', '.join(names[:4]), ', ...' if len(names) > 4 else '')
    origin = record.get('created_by', 'unknown tool')
    if record.get('step') is not None:
        origin += ', step %s' % record['step']
    line = ('checkpoint %s with provenance record %s (%s): using %d classes (%s), image mean '
            'B,G,R %s (%s)%s' % (prefix, provenance.record_path(prefix), origin, num_classes,
                                 sources['num_classes'], mean_text(img_mean),
                                 sources['img_mean'], shown))
    return num_classes, img_mean, names, sources['num_classes'], line


def overlay(rgb, mask, alpha=OVERLAY_ALPHA):
    """The colour mask blended over the image: (1 - alpha) * image + alpha * mask, uint8."""
    blend = (1.0 - alpha) * rgb.astype(np.float32) + alpha * mask.astype(np.float32)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def save_outputs(save_dir, stem, rgb, labels, probs, num_classes, args):
    """Writes the outputs of one image. Returns the mask's path."""
    mask = colourise(labels, num_classes)
    mask_path = os.path.join(save_dir, stem + SUFFIXES['mask'])
    imageio.write_rgb_png(mask_path, mask)
    if args.save_labels:
        imageio.write_index_png(os.path.join(save_dir, stem + SUFFIXES['label']), labels)
    if args.overlay:
        Image.fromarray(overlay(rgb, mask)).save(
            os.path.join(save_dir, stem + SUFFIXES['overlay']), quality=OVERLAY_JPEG_QUALITY)
    if args.save_probs:
        np.save(os.path.join(save_dir, stem + SUFFIXES['probs']), probs.astype(np.float16))
    return mask_path


def run(args, start=None, out=None, err=None):
    """Runs inference.py with parsed arguments (see inference.py for their meaning).

    Args:
      start: the time the command started (time.time()), for the time to the first mask.
    Returns: 0, or 1 when some images could not be read (each reported on `err`).
    Raises: InputError for fatal problems, before any image is processed.
    """
    start = time.time() if start is None else start
    out = out or sys.stdout
    err = err or sys.stderr

    def log(text):
        print(text, file=out)
        out.flush()

    images = collect_images(args.images, args.data_dir)
    check_output_names(images)
    if args.export_savedmodel:
        from deeplab_resnet.export import check_export_dir
        check_export_dir(args.export_savedmodel)
    if images and os.path.exists(args.save_dir) and not os.path.isdir(args.save_dir):
        raise InputError('%s: --save-dir is a file, not a directory' % args.save_dir)

    from deeplab_resnet import checkpoints
    prefix = checkpoints.resolve_checkpoint(args.model_weights)
    def warn(message):
        print('warning: %s' % message, file=err)
        err.flush()

    pending = []   # contradiction warnings, shown once the checkpoint is known to fit
    num_classes, img_mean, names, source, line = resolve_settings(prefix, args.num_classes,
                                                                  args.img_mean, pending.append)
    if num_classes > 256:
        raise InputError('%d classes: masks and label PNGs hold at most 256' % num_classes)
    checkpoints.check_class_count(prefix, num_classes, source)
    for message in pending:
        warn(message)
    log(line)

    if args.export_savedmodel:
        from deeplab_resnet.export import export_savedmodel
        t = time.time()
        export_savedmodel(prefix, args.export_savedmodel, num_classes, args.scales, args.flip,
                          img_mean, names)
        log('SavedModel written to %s in %.1f s (scales %s%s); call it with '
            'tf.saved_model.load(DIR).signatures["serving_default"](image=<uint8 RGB [H, W, 3]>)'
            % (args.export_savedmodel, time.time() - t, ','.join('%g' % s for s in args.scales),
               ', flip' if args.flip else ''))
    if not images:
        return 0

    os.makedirs(args.save_dir, exist_ok=True)
    return _segment(images, prefix, num_classes, img_mean, args, start, log, err)


def _segment(images, prefix, num_classes, img_mean, args, start, log, err):
    import tensorflow as tf
    from deeplab_resnet.crf import CRFPool, crf_params_from_args
    from deeplab_resnet.predictor import Predictor
    from deeplab_resnet.progress import Progress

    failures = []
    state = {'written': 0, 'first': None}
    progress = Progress(len(images), 'inference', stream=err) if len(images) > 1 else None

    def fail(path, message):
        failures.append(path)
        print('error: %s' % message, file=err)
        err.flush()
        if progress:
            progress.update()

    def save(key, result):
        path, stem, rgb, labels, probs = key
        if args.crf:   # result: CRF labels, or CRF probabilities with --save-probs
            if args.save_probs:
                probs, labels = result, np.argmax(result, axis=-1).astype(np.int32)
            else:
                labels = result
        mask_path = save_outputs(args.save_dir, stem, rgb, labels, probs, num_classes, args)
        state['written'] += 1
        now = time.time()
        if state['first'] is None:
            state['first'] = now
            log('first mask after %.2f s (from start): %s' % (now - start, mask_path))
        if progress:
            progress.update()

    t_build = time.time()
    crf_workers = args.crf_workers if args.crf else 0
    with Predictor(prefix, num_classes, scales=tuple(args.scales), flip=args.flip,
                   img_mean=img_mean, threads=args.threads) as predictor, \
            CRFPool(num_workers=crf_workers, params=crf_params_from_args(args),
                    return_probs=args.save_probs) as pool:
        log('graph built and weights restored in %.1f s (scales %s%s%s, %s)'
            % (time.time() - t_build, ','.join('%g' % s for s in args.scales),
               ', flip' if args.flip else '', ', CRF' if args.crf else '',
               '%d threads' % args.threads if args.threads else "TensorFlow's threads"))
        t_loop = time.time()
        if progress:
            progress.start = t_loop
        want_probs = args.save_probs or args.crf
        for path in images:
            stem = output_stem(path)
            try:
                rgb = imageio.read_image(path)
            except InputError as e:
                fail(path, str(e))
                continue
            except Exception as e:   # PIL conversions can raise other types
                fail(path, '%s: cannot read image (%s: %s)' % (path, e.__class__.__name__, e))
                continue
            try:
                labels, probs = predictor.predict(rgb, want_probs)
            except tf.errors.OpError as e:   # e.g. out of memory for a huge image
                fail(path, '%s: inference failed (%s)' % (path, e.__class__.__name__))
                continue
            key = (path, stem, rgb, labels, None if args.crf else probs)
            if args.crf:
                pool.submit(key, rgb, probs)
                for done in pool.ready():
                    save(*done)
            else:
                save(key, None)
        for done in pool.results():
            save(*done)
    if progress:
        progress.close()
    t_end = time.time()
    written = state['written']
    rate = written / (t_end - t_loop) if t_end > t_loop else 0.0
    steady = ''
    if written > 1 and t_end > state['first']:
        steady = ', %.2f img/s after the first' % ((written - 1) / (t_end - state['first']))
    log('%d mask(s) written to %s: %.2f img/s%s, %.1f s in all'
        % (written, args.save_dir, rate, steady, t_end - start))
    if failures:
        print('error: %d of %d image(s) failed (reported above); the other %d were written'
              % (len(failures), len(images), written), file=err)
        return 1
    return 0
