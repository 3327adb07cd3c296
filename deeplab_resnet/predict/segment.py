"""Segmenting image files (the logic of inference.py): inputs, settings, outputs.

Inputs are image files, directories (their images, sorted) and list files in the dataset
format (.txt; labels ignored), checked and expanded before any work; two inputs that would
write the same output names are refused, and so is a --save-dir where an output would
overwrite an input. The checkpoint and its settings come from settings.restore_settings (the
step evaluation shares); one Predictor (graph built once, weights restored once) segments
every image through predictor.predictions (the loop evaluation shares, with the CRF pool
behind it). Per image, in the save directory (the names evaluation writes too):

  <stem>_mask.png      colour mask (the dataset's colours: --palette, --dataset or the
                       checkpoint's record; else the VOC palette, extended past 21 classes)
  <stem>.png           --save-labels: palette PNG holding the class indices (VOC's format)

and with --save-server-ids DIR, <stem>.png in DIR: the test server's ids (server_ids module).
  <stem>_overlay.jpg   --overlay: the mask blended over the image (OVERLAY_ALPHA)
  <stem>_probs.npy     --save-probs: float16 probabilities [H, W, C] (after the CRF with --crf)

Every input is read as viewers display it: its EXIF orientation (a phone photo's) is applied,
said once in a line, and every output is written in that displayed orientation.

An image that cannot be read is reported (one line naming it) and skipped; run() then
returns 1. Fatal problems (a missing input or checkpoint, another class count) raise
InputError before any image is processed.
"""
import contextlib
import os
import sys
import time

import numpy as np
from PIL import Image

from deeplab_resnet.checkpoint.settings import restore_settings, summary_line
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.common.windows import tile_text
from deeplab_resnet.data import datalist, dataset_cli, imageio, labels, server_ids
from deeplab_resnet.data.colormap import colourise
from deeplab_resnet.predict import memory
from deeplab_resnet.runtime import precision

OVERLAY_ALPHA = 0.5
OVERLAY_JPEG_QUALITY = 90
LIST_EXTENSIONS = ('.txt',)
SUFFIXES = {'mask': '_mask.png', 'label': '.png', 'overlay': '_overlay.jpg',
            'probs': '_probs.npy'}
MAX_LISTED = 3
MAX_CLASSES_IN_PNG = 256
OUTPUT_STRIP_ROWS = 512   # rows coloured / blended at a time (huge images: bounded temporaries)


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


def header_sizes(images):
    """(path, h, w) of the images whose header can be read (the others are reported when
    their turn comes)."""
    sized = []
    for path in images:
        try:
            sized.append((path,) + tuple(labels.image_size(path)))
        except InputError:
            pass
    return sized


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


def overlay(rgb, mask, alpha=OVERLAY_ALPHA):
    """The colour mask blended over the image: (1 - alpha) * image + alpha * mask, uint8."""
    blend = (1.0 - alpha) * rgb.astype(np.float32) + alpha * mask.astype(np.float32)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def _strips(height, rows=OUTPUT_STRIP_ROWS):
    return [slice(top, min(top + rows, height)) for top in range(0, height, rows)]


def colour_mask(labels, num_classes, palette=None):
    """colourise(labels) [H, W, 3] uint8, made OUTPUT_STRIP_ROWS rows at a time (colourise's
    int64 index copies of a 9000x9000 label map would be 1.3 GB)."""
    mask = np.empty(labels.shape + (3,), np.uint8)
    for rows in _strips(len(labels)):
        mask[rows] = colourise(labels[rows], num_classes, palette)
    return mask


def check_save_dir(save_dir, images, kinds, others=()):
    """Raises InputError when save_dir is a file, or when an output of the kinds in `kinds`
    (keys of SUFFIXES), named after one of `images`, would overwrite one of `images` or
    `others` (e.g. <stem>.png written into the labels' directory)."""
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise InputError('%s: --save-dir is a file, not a directory' % save_dir)
    inputs = {os.path.realpath(path): path for path in list(images) + list(others)}
    for path in images:
        for kind in kinds:
            target = os.path.join(save_dir, output_stem(path) + SUFFIXES[kind])
            if os.path.realpath(target) in inputs:
                raise InputError('%s: --save-dir %s would overwrite it with %s (choose another '
                                 '--save-dir)' % (inputs[os.path.realpath(target)], save_dir,
                                                  target))


def save_outputs(save_dir, stem, rgb, labels, probs, num_classes, kinds, palette=None):
    """Writes one image's outputs of the kinds in `kinds` (keys of SUFFIXES; 'overlay' needs
    rgb, 'probs' needs probs) in `palette`'s colours (None: VOC's). Returns {kind: path
    written}."""
    paths = {kind: os.path.join(save_dir, stem + SUFFIXES[kind]) for kind in kinds}
    mask = (colour_mask(labels, num_classes, palette) if 'mask' in kinds or 'overlay' in kinds
            else None)
    if 'mask' in kinds:
        imageio.write_rgb_png(paths['mask'], mask)
    if 'label' in kinds:
        imageio.write_index_png(paths['label'], labels, palette)
    if 'overlay' in kinds:
        blend = np.empty_like(mask)
        for rows in _strips(len(mask)):
            blend[rows] = overlay(rgb[rows], mask[rows])
        Image.fromarray(blend).save(paths['overlay'], quality=OVERLAY_JPEG_QUALITY)
    if 'probs' in kinds:
        np.save(paths['probs'], probs.astype(np.float16))
    return paths


def output_kinds(args):
    """The kinds of output inference.py writes with these flags: the mask, and the others
    asked for."""
    return ['mask'] + [kind for kind, wanted in (('label', args.save_labels),
                                                 ('overlay', args.overlay),
                                                 ('probs', args.save_probs)) if wanted]


def _printer(stream, prefix=''):
    def emit(text):
        print(prefix + text, file=stream)
        stream.flush()
    return emit


def run(args, start=None, out=None, err=None):
    """Runs inference.py with parsed arguments (see inference.py for their meaning).

    Args:
      start: the time the command started (time.time()), for the time to the first mask.
    Returns: 0, or 1 when some images could not be read (each reported on `err`).
    Raises: InputError for fatal problems, before any image is processed.
    """
    start = time.time() if start is None else start
    log, warn = _printer(out or sys.stdout), _printer(err or sys.stderr, 'warning: ')
    images = collect_images(args.images, args.data_dir)
    check_output_names(images)
    if args.export_savedmodel:
        from deeplab_resnet.predict.export import check_export_dir
        check_export_dir(args.export_savedmodel)
    if getattr(args, 'export_tflite', None):
        from deeplab_resnet.predict.litert import check_tflite_path
        check_tflite_path(args.export_tflite)
    if images:
        check_save_dir(args.save_dir, images, output_kinds(args))
        if getattr(args, 'save_server_ids', None):
            server_ids.check_dir(args.save_server_ids, [output_stem(p) for p in images],
                                 images, args.save_dir)
    restored = restore_settings(args.model_weights, args.num_classes, args.img_mean,
                                getattr(args, 'class_names', None), **dataset_cli.dataset_settings(args))
    if restored.settings['num_classes'] > MAX_CLASSES_IN_PNG:
        raise InputError('%d classes: masks and label PNGs hold at most %d'
                         % (restored.settings['num_classes'], MAX_CLASSES_IN_PNG))
    args.tile, chose = memory.check_fits(header_sizes(images), args.scales, args.flip,
                                         restored.settings['num_classes'],
                                         getattr(args, 'max_side', None),
                                         tile=getattr(args, 'tile', None), probs=args.crf)
    if chose:
        log(chose)
    for message in restored.warnings:
        warn(message)
    log(summary_line(restored))
    from deeplab_resnet.runtime import devices
    if args.deterministic:
        devices.make_deterministic()
    devices.log_devices(log, warn)
    if args.export_savedmodel:
        _export(restored, args, log)
    if getattr(args, 'export_tflite', None):
        _export_tflite(restored, args, log)
    if not images:
        return 0
    os.makedirs(args.save_dir, exist_ok=True)
    if getattr(args, 'save_server_ids', None):
        os.makedirs(args.save_server_ids, exist_ok=True)
    return _segment(images, restored, args, start, log, err or sys.stderr)


def _export(restored, args, log):
    from deeplab_resnet.predict.export import export_savedmodel
    settings = restored.settings
    t = time.time()
    tile = getattr(args, 'tile', None)
    export_savedmodel(restored.prefix, args.export_savedmodel, settings['num_classes'],
                      args.scales, args.flip, settings['img_mean'],
                      settings['class_names'] if settings['names_known'] else None,
                      tile=tile, tile_stride=getattr(args, 'tile_stride', None))
    log('SavedModel written to %s in %.1f s (scales %s%s%s); call it with '
        'tf.saved_model.load(DIR).signatures["serving_default"](image=<uint8 RGB [H, W, 3]>)'
        % (args.export_savedmodel, time.time() - t, ','.join('%g' % s for s in args.scales),
           ', flip' if args.flip else '',
           ', windows of %dx%d, labels only' % (tile[1], tile[0]) if tile else ''))


def _export_tflite(restored, args, log):
    from deeplab_resnet.predict.litert import export_tflite, settings_path
    settings = restored.settings
    t = time.time()
    export_tflite(restored.prefix, args.export_tflite, settings['num_classes'], args.scales,
                  args.flip, settings['img_mean'],
                  settings['class_names'] if settings['names_known'] else None)
    log('LiteRT model written to %s (%.1f MB, float32; settings in %s) in %.1f s (scales %s%s); '
        'call it with ai_edge_litert.interpreter.Interpreter(model_path=FILE)'
        '.get_signature_runner("serving_default")(image=<uint8 RGB [H, W, 3]>)'
        % (args.export_tflite, os.path.getsize(args.export_tflite) / 1e6,
           settings_path(args.export_tflite), time.time() - t,
           ','.join('%g' % s for s in args.scales), ', flip' if args.flip else ''))


def read_image(path):
    """imageio.read_image as displayed (EXIF orientation applied), with any failure as an
    InputError naming the file."""
    try:
        return imageio.read_image(path, exif_orientation=True)
    except InputError:
        raise
    except Exception as e:   # PIL conversions can raise other types
        raise InputError('%s: cannot read image (%s: %s)' % (path, e.__class__.__name__, e))


class DisplayedImages(object):
    """read(path) -> read_image(path); logs one line the first time an image's EXIF
    orientation turns it, and counts them (`rotated`)."""

    def __init__(self, log):
        self.log, self.rotated = log, 0

    def __call__(self, path):
        with contextlib.suppress(Exception), Image.open(path) as img:
            orientation = imageio.orientation_of(img)
            if orientation != 1:
                if not self.rotated:
                    self.log('%s: EXIF orientation %d applied; every input is segmented and '
                             'written as viewers display it' % (path, orientation))
                self.rotated += 1
        return read_image(path)


def _saved(prediction, args):
    """(labels, probs) to write for a predictor.Prediction: the CRF's with --crf."""
    if not args.crf:
        return prediction.labels, prediction.probs
    if args.save_probs:   # the pool returns the CRF's probabilities
        return np.argmax(prediction.crf, axis=-1).astype(np.int32), prediction.crf
    return prediction.crf, None


def _segment(images, restored, args, start, log, err):
    """Segments and writes every image; returns 0, or 1 when some could not be read."""
    import tensorflow as tf
    from deeplab_resnet.common.progress import Progress, WindowProgress
    from deeplab_resnet.predict.crf import CRFPool, crf_params_from_args
    from deeplab_resnet.predict.predictor import Predictor, predictions

    failures = []
    progress = Progress(len(images), 'inference', stream=err) if len(images) > 1 else None

    def fail(path, error):
        failures.append(path)
        message = (str(error) if isinstance(error, InputError) else
                   '%s: inference failed (%s)' % (path, error.__class__.__name__))
        _printer(err, 'error: ')(message)
        if progress:
            progress.update()

    settings, t_build = restored.settings, time.time()
    pool = (CRFPool(args.crf_workers, crf_params_from_args(args), return_probs=args.save_probs)
            if args.crf else contextlib.nullcontext())
    arithmetic = precision.choose(args.precision, _printer(err, 'warning: '))
    with Predictor(restored.prefix, settings['num_classes'], scales=tuple(args.scales),
                   flip=args.flip, img_mean=settings['img_mean'], threads=args.threads,
                   precision=arithmetic, found_in=restored.found_in,
                   max_side=getattr(args, 'max_side', None), tile=getattr(args, 'tile', None),
                   tile_stride=getattr(args, 'tile_stride', None),
                   on_window=WindowProgress(err)) as predictor, \
            pool as crf_pool:
        log('graph built and weights restored in %.1f s (scales %s%s%s%s, %s, %s)'
            % (time.time() - t_build, ','.join('%g' % s for s in args.scales),
               ', flip' if args.flip else '',
               tile_text(getattr(args, 'tile', None), getattr(args, 'tile_stride', None)),
               ', CRF' if args.crf else '', arithmetic,
               '%d threads' % args.threads if args.threads else "TensorFlow's threads"))
        t_loop = time.time()
        if progress:
            progress.start = t_loop
        results = predictions(predictor, images, DisplayedImages(log), crf_pool,
                              want_probs=args.save_probs and not args.crf, on_error=fail,
                              errors=(InputError, tf.errors.OpError))
        written, t_first = _write_all(results, settings, args, start, log, progress)
    if progress:
        progress.close()
    _log_rate(written, args.save_dir, start, t_loop, t_first, log)
    if failures:
        _printer(err, 'error: ')('%d of %d image(s) failed (reported above); the other %d were '
                                 'written' % (len(failures), len(images), written))
        return 1
    return 0


def _write_all(results, settings, args, start, log, progress):
    """Writes the outputs of each predictor.Prediction (in the settings' colours; the server's
    ids too with --save-server-ids). Returns (count, time of the first)."""
    written, t_first, kinds = 0, None, output_kinds(args)
    num_classes = settings['num_classes']
    for prediction in results:
        labels, probs = _saved(prediction, args)
        stem = output_stem(prediction.item)
        paths = save_outputs(args.save_dir, stem, prediction.image, labels, probs,
                             num_classes, kinds, settings['palette'])
        if getattr(args, 'save_server_ids', None):
            server_ids.write(args.save_server_ids, stem, labels, settings['server_ids'],
                             num_classes)
        written += 1
        if t_first is None:
            t_first = time.time()
            log('first mask after %.2f s (from start): %s' % (t_first - start, paths['mask']))
        if progress:
            progress.update()
    return written, t_first


def _log_rate(written, save_dir, start, t_loop, t_first, log):
    t_end = time.time()
    rate = written / (t_end - t_loop) if t_end > t_loop else 0.0
    steady = ''
    if written > 1 and t_end > t_first:
        steady = ', %.2f img/s after the first' % ((written - 1) / (t_end - t_first))
    log('%d mask(s) written to %s: %.2f img/s%s, %.1f s in all'
        % (written, save_dir, rate, steady, t_end - start))
