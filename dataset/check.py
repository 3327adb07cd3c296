"""Validates a data directory and list before training: every listed file exists and decodes,
each mask is an index mask of its image's size holding classes 0..N-1 or the ignore label
(the checks of deeplab_resnet.data.labels); a summary with the label histogram follows.

Run it as `python -m dataset.tools check --data-dir D --data-list L --num-classes N`.
"""
import collections
import os

import numpy as np

from deeplab_resnet.checkpoint.provenance import read_class_names
from deeplab_resnet.common.constants import IGNORE_LABEL, IMG_MEAN_BGR
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.common.names import class_names
from deeplab_resnet.common.progress import Progress
from deeplab_resnet.data import datalist
from deeplab_resnet.data.imageio import read_image, read_label
from deeplab_resnet.data.labels import bad_values_text, size_mismatch
from deeplab_resnet.data.labels import out_of_range_values

MAX_VALUES_SHOWN = 5   # bad label values named in one problem line
NUM_VALUES = 256       # label values an 8-bit mask can hold

CheckReport = collections.namedtuple('CheckReport', [
    'examples',          # Example tuples parsed from the list (well-formed lines)
    'problems',          # one line each: 'LIST:LINE: PATH: what is wrong'
    'histogram',         # [256] int64 pixel count per label value over all masks
    'num_classes', 'ignore_label',
    'image_sizes',       # [(H, W)] of the images that decoded
    'duplicates',        # number of lines repeating an earlier (image, label) pair
    'images_per_value',  # [256] int64: masks holding each label value
    'pixel_sum',         # [3] float64: R, G, B summed over every decoded image
    'pixel_count',       # pixels summed into pixel_sum
    'image_pixels_per_value',  # [256] int64: for each value, the class pixels (values
                               # 0..num_classes-1: not ignored) of the masks holding it
])


def _value_problem(where, label_path, counts, num_classes, ignore_label):
    """None when the mask's values ([256] pixel counts) are classes or the ignore label, else
    the problem line naming the bad values and their pixel counts."""
    bad = out_of_range_values(np.flatnonzero(counts), num_classes, ignore_label)
    if not bad:
        return None
    return ('%s: %s: label values outside 0..%d (ignore %d): %s'
            % (where, label_path, num_classes - 1, ignore_label,
               bad_values_text(['%d (%d px)' % (v, counts[v]) for v in bad], MAX_VALUES_SHOWN)))


def check_example(example, where, num_classes, ignore_label):
    """One list line's files.

    Args: example: datalist.Example; where: 'LIST:LINE', the prefix of each problem line.
    Returns: (image [H, W, 3] uint8 RGB or None when it does not decode, [256] int64 pixel
      count per label value or None when there is no readable mask, list of problem lines).
    """
    problems = []
    image = counts = None
    try:
        image = read_image(example.image)
    except InputError as e:
        problems.append('%s: %s' % (where, e))
    image_hw = None if image is None else image.shape[:2]
    if example.label is None:
        return image, counts, problems
    try:
        labels = read_label(example.label)
    except InputError as e:
        problems.append('%s: %s' % (where, e))
        return image, counts, problems
    counts = np.bincount(labels.ravel(), minlength=NUM_VALUES)
    if image_hw is not None:
        mismatch = size_mismatch(example, image_hw, labels.shape)
        if mismatch:
            problems.append('%s: %s' % (where, mismatch))
    bad_values = _value_problem(where, example.label, counts, num_classes, ignore_label)
    if bad_values:
        problems.append(bad_values)
    return image, counts, problems


def check_dataset(data_dir, data_list, num_classes, ignore_label=IGNORE_LABEL,
                  need_labels=True, progress=True, on_problem=None):
    """Checks every listed file: exists, decodes, image and mask sizes agree, the mask is an
    index mask, its values are classes 0..num_classes-1 or the ignore label.

    Args:
      on_problem: called with each problem line as it is found (e.g. to print it).
    Returns: CheckReport.
    """
    if num_classes < 1 or num_classes > NUM_VALUES:
        raise InputError('--num-classes must be in 1..256, got %d' % num_classes)
    if data_dir and not os.path.isdir(data_dir):
        raise InputError('%s: data directory not found' % data_dir)
    examples, problems = datalist.parse_list_collecting(data_list, data_dir, need_labels)
    if on_problem:
        for message in problems:
            on_problem(message)
    histogram = np.zeros(NUM_VALUES, dtype=np.int64)
    images_per_value = np.zeros(NUM_VALUES, dtype=np.int64)
    image_pixels = np.zeros(NUM_VALUES, dtype=np.int64)
    pixel_sum = np.zeros(3, dtype=np.float64)
    pixel_count = 0
    sizes = []
    seen = set()
    duplicates = 0
    bar = Progress(len(examples), label='check', unit='img') if progress else None
    for ex in examples:
        duplicates += (ex.image, ex.label) in seen
        seen.add((ex.image, ex.label))
        image, counts, found = check_example(ex, '%s:%d' % (data_list, ex.line),
                                             num_classes, ignore_label)
        if image is not None:
            sizes.append(image.shape[:2])
            pixel_sum += image.reshape(-1, 3).sum(axis=0, dtype=np.float64)
            pixel_count += image.shape[0] * image.shape[1]
        if counts is not None:
            histogram += counts
            images_per_value += counts > 0
            image_pixels += (counts > 0) * counts[:num_classes].sum()
        for message in found:
            problems.append(message)
            if on_problem:
                on_problem(message)
        if bar:
            bar.update(extra='%d problem(s)' % len(problems) if problems else '')
    if bar:
        bar.close()
    return CheckReport(examples, problems, histogram, num_classes, ignore_label, sizes,
                       duplicates, images_per_value, pixel_sum, pixel_count, image_pixels)


def data_mean_bgr(report):
    """The mean colour of the checked images, [B, G, R] floats (the network's order), or None
    when no image decoded."""
    if not report.pixel_count:
        return None
    return [float(v) for v in (report.pixel_sum / report.pixel_count)[::-1]]


def class_names_for(data_dir, num_classes, names_file=None):
    """The names the summary shows: names_file (--class-names; it must hold num_classes
    names), else DATA_DIR/class_names.txt when it holds num_classes names, else the defaults
    (names.class_names: the VOC names for 21 classes, 'class_<i>' otherwise).

    Raises: InputError naming names_file when it cannot be read or has the wrong count.
    """
    if names_file:
        return read_class_names(names_file, num_classes, '--num-classes')
    in_data_dir = os.path.join(data_dir, 'class_names.txt') if data_dir else None
    if in_data_dir and os.path.isfile(in_data_dir):
        names = read_class_names(in_data_dir)
        if len(names) == num_classes:
            return names
    return class_names(num_classes)


def format_check_summary(report, names, data_list):
    """The summary lines of a check."""
    lines = ['checked %d example(s) of %s' % (len(report.examples), data_list)]
    if report.image_sizes:
        hs = [s[0] for s in report.image_sizes]
        ws = [s[1] for s in report.image_sizes]
        lines.append('image sizes: H %d..%d, W %d..%d' % (min(hs), max(hs), min(ws), max(ws)))
    h = report.histogram
    total = int(h.sum())
    if total:
        valid = np.zeros(NUM_VALUES, dtype=bool)
        valid[:report.num_classes] = True
        per_image = report.images_per_value
        lines.append('label histogram (%d px; images: masks holding the class, of %d):'
                     % (total, len(report.examples)))
        for c in range(report.num_classes):
            lines.append('  %3d %-16s %12d  %6.2f%%  %6d images'
                         % (c, names[c], h[c], 100.0 * h[c] / total, per_image[c]))
        if 0 <= report.ignore_label < NUM_VALUES and not valid[report.ignore_label]:
            n = h[report.ignore_label]
            lines.append('  %3d %-16s %12d  %6.2f%%  %6d images'
                         % (report.ignore_label, 'ignore', n, 100.0 * n / total,
                            per_image[report.ignore_label]))
            valid[report.ignore_label] = True
        outside = int(h[~valid].sum())
        lines.append('      %-16s %12d  %6.2f%%' % ('outside classes', outside,
                                                    100.0 * outside / total))
        absent = ['%d %s' % (c, names[c]) for c in range(report.num_classes) if h[c] == 0]
        if absent:
            lines.append('warning: %d of %d class(es) never occur: %s'
                         % (len(absent), report.num_classes, ', '.join(absent)))
    mean = data_mean_bgr(report)
    if mean is not None:
        lines.append('mean colour of these images (B,G,R): %.3f,%.3f,%.3f' % tuple(mean))
        lines.append('the network\'s mean (B,G,R):      %.3f,%.3f,%.3f (Caffe ImageNet, the '
                     '--img-mean default)' % IMG_MEAN_BGR)
        lines.append('  keep the network\'s when fine-tuning from init.caffemodel or a converted '
                     'checkpoint; the data\'s only when training from scratch')
    if report.duplicates:
        lines.append('warning: %d duplicate line(s)' % report.duplicates)
    lines.append('problems: %d%s' % (len(report.problems),
                                     '' if not report.problems else '  (exit status 2)'))
    return lines


CheckSettings = collections.namedtuple('CheckSettings', [
    'data_dir', 'data_list', 'num_classes', 'ignore_label', 'class_names', 'palette_file',
    'descriptor'])


def resolve_settings(args):
    """The check's settings from its parsed flags (dataset.tools.parse_arguments has made the
    descriptor's values, --dataset FILE, the flags' defaults and checked that the data dir,
    list and class count are known). Names: --class-names, else the descriptor's when its
    class count is the one checked, else DATA_DIR/class_names.txt or the defaults."""
    d = getattr(args, 'descriptor', None)
    if args.class_names or not d or d.num_classes != args.num_classes:
        names = class_names_for(args.data_dir, args.num_classes, args.class_names)
    else:
        names = list(d.class_names)
    return CheckSettings(args.data_dir, args.data_list, args.num_classes, args.ignore_label,
                         names, args.palette, d)


def _palette(settings):
    """Class colours for a descriptor: the palette file, the descriptor's, or VOC's."""
    from deeplab_resnet.data.colormap import class_palette, label_colours, read_palette_file
    d = settings.descriptor
    if settings.palette_file:
        colours, indices = read_palette_file(settings.palette_file)
        return class_palette(colours, indices, settings.num_classes, settings.palette_file)
    if d and d.num_classes == settings.num_classes:
        return d.palette
    return label_colours(settings.num_classes)


def write_class_weights(path, method, settings, report):
    """Writes the class weights of the checked list (deeplab_resnet.data.class_weights: `method`
    from the class pixels and the class pixels of the images holding each class).

    Returns: (weights [C] float64, indices of the classes without pixels: weight 0).
    """
    from deeplab_resnet.data import class_weights
    c = settings.num_classes
    d = settings.descriptor
    dataset = d.name if d else os.path.basename(os.path.abspath(settings.data_dir))
    return class_weights.write(path, method, report.histogram[:c],
                               report.image_pixels_per_value[:c], settings.class_names,
                               dataset, os.path.abspath(settings.data_list))


def write_descriptor(path, settings, report, use_data_mean=False):
    """A dataset.json for the checked data: data_dir, the list as a split (named after the
    list file; the descriptor's other splits kept), names, colours, the measured mean as
    data_mean and, only when asked, as img_mean (else the descriptor's img_mean or none: the
    network's mean). Returns the Descriptor as read back."""
    from deeplab_resnet.data import descriptor
    d = settings.descriptor
    splits = collections.OrderedDict(d.splits if d else ())
    name = os.path.splitext(os.path.basename(settings.data_list))[0]
    splits[name] = os.path.abspath(settings.data_list)
    mean = data_mean_bgr(report)
    img_mean = mean if use_data_mean else (d.img_mean if d else None)
    return descriptor.write(path, d.name if d else os.path.basename(
        os.path.abspath(settings.data_dir)), os.path.abspath(settings.data_dir),
        settings.num_classes, settings.class_names, _palette(settings), splits,
        settings.ignore_label, d.server_ids if d else None, img_mean, mean)
