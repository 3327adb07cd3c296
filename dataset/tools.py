"""Dataset preparation and checking.

  python -m dataset.tools voc --voc-root VOCdevkit/VOC2012 --sbd-root benchmark_RELEASE [--out DIR]
      Builds PASCAL VOC 2012 + SBD 'SegmentationClassAug' index PNGs and the lists
      train_aug.txt (10,582 on the real data), train.txt (1,464), val.txt (1,449) and, when VOC
      has ImageSets/Segmentation/test.txt, test.txt (image-only lines).

  python -m dataset.tools rgb2index --in DIR_OR_FILE --out DIR [--palette FILE]
      Converts RGB colour masks to index PNGs (VOC palette by default; void -> 255).

  python -m dataset.tools check --data-dir D --data-list L --num-classes N [--ignore-label 255]
      Validates a data directory and list before training; exit status 2 on any problem.

Every list is in the format of deeplab_resnet.datalist: 'image_path label_path' per line,
paths relative to the data directory (a leading '/' does not make them absolute).
"""
import argparse
import collections
import os
import shutil
import sys

import numpy as np
from PIL import Image

from deeplab_resnet.colormap import IGNORE_COLOUR, class_names, make_palette
from deeplab_resnet.constants import IGNORE_LABEL, NUM_CLASSES_VOC
from deeplab_resnet import datalist
from deeplab_resnet.errors import InputError
from deeplab_resnet.imageio import read_image, read_label, write_index_png
from deeplab_resnet.progress import Progress

MAX_SHOWN = 5   # files named in one error message


def _ellipsis(items, limit=MAX_SHOWN):
    items = list(items)
    text = ', '.join(str(x) for x in items[:limit])
    return text + (', ...' if len(items) > limit else '')


# =========================================================================== voc

VOC_HINT = 'expected the VOC2012 folder of VOCtrainval_11-May-2012.tar (VOCdevkit/VOC2012)'
SBD_HINT = 'expected the benchmark_RELEASE folder of SBD (benchmark.tgz)'

VocAugResult = collections.namedtuple(
    'VocAugResult', ['out_dir', 'lists', 'counts'])
"""out_dir: the data directory; lists: {'train_aug': path, 'train': ..., 'val': ...,
'test': path or None}; counts: {name: number}."""


def read_id_list(path, what):
    """A VOC/SBD id list (one id per line; blank lines skipped) -> list of ids, in order."""
    if not os.path.isfile(path):
        raise InputError('%s: %s not found' % (path, what))
    ids = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for line in f:
            fields = line.split()
            if fields:
                ids.append(fields[0])
    return ids


def _require_dir(path, what, hint):
    if not os.path.isdir(path):
        raise InputError('%s: %s not found (%s)' % (path, what, hint))


def sbd_dataset_dir(sbd_root):
    """benchmark_RELEASE or benchmark_RELEASE/dataset -> the folder holding cls/ and lists."""
    if os.path.isdir(os.path.join(sbd_root, 'dataset', 'cls')):
        return os.path.join(sbd_root, 'dataset')
    if os.path.isdir(os.path.join(sbd_root, 'cls')):
        return sbd_root
    _require_dir(sbd_root, 'SBD root', SBD_HINT)
    raise InputError('%s: dataset/cls/ not found (%s)'
                     % (os.path.join(sbd_root, 'dataset', 'cls'), SBD_HINT))


def load_sbd_cls(path):
    """SBD dataset/cls/<id>.mat -> [H, W] uint8 class indices (struct GTcls, field Segmentation).

    Raises: InputError naming the file when it is unreadable or not in that layout.
    """
    import scipy.io   # only the voc command needs SciPy
    if not os.path.isfile(path):
        raise InputError('%s: SBD .mat not found' % path)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises several types for corrupt files
        raise InputError('%s: cannot read .mat file (%s: %s)' % (path, e.__class__.__name__, e))
    if 'GTcls' not in mat:
        raise InputError('%s: no GTcls struct (an SBD dataset/cls/ file is expected; '
                         'dataset/inst/ files hold GTinst)' % path)
    seg = getattr(mat['GTcls'], 'Segmentation', None)
    if seg is None:
        raise InputError('%s: GTcls has no Segmentation field' % path)
    seg = np.asarray(seg)
    if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.integer):
        raise InputError('%s: GTcls.Segmentation is not a 2-D integer map (shape %s, %s)'
                         % (path, seg.shape, seg.dtype))
    if seg.size and (seg.min() < 0 or seg.max() > 255):
        raise InputError('%s: GTcls.Segmentation has values outside 0..255' % path)
    return seg.astype(np.uint8)


def _image_size(path):
    """(H, W) from the file header, without decoding."""
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except Exception as e:
        raise InputError('%s: cannot decode image (%s)' % (path, e.__class__.__name__))


def _write_list(path, ids, with_labels=True):
    with open(path, 'w') as f:
        for i in ids:
            if with_labels:
                f.write('/JPEGImages/%s.jpg /SegmentationClassAug/%s.png\n' % (i, i))
            else:
                f.write('/JPEGImages/%s.jpg\n' % i)


def _dedup(ids):
    return list(collections.OrderedDict.fromkeys(ids))


def build_voc_aug(voc_root, sbd_root, out_dir=None, copy_images=False, progress=True,
                  log=print):
    """Builds SegmentationClassAug (VOC 2012 + SBD) and its lists.

    Labels: VOC's own SegmentationClass mask (palette indices, 255 boundaries kept) for every
    image of the VOC segmentation train/val sets, SBD's GTcls.Segmentation (no 255
    boundaries) for the others. train_aug = (SBD train + SBD val + VOC train) - VOC val,
    de-duplicated and sorted; train = VOC train; val = VOC val; test = VOC test (image only)
    when VOC has that list.

    Args:
      out_dir: the data directory to write (default voc_root). SegmentationClassAug/ and the
        lists go there; when it is not voc_root, out_dir/JPEGImages is made a symlink to VOC's
        JPEGImages (or the listed images are copied when copy_images).
    Returns: VocAugResult.
    Raises: InputError naming what is missing or wrong, before anything is written when a
      folder, list or listed file is missing.
    """
    out_dir = out_dir or voc_root
    _require_dir(voc_root, 'VOC root', VOC_HINT)
    voc_images = os.path.join(voc_root, 'JPEGImages')
    voc_masks = os.path.join(voc_root, 'SegmentationClass')
    voc_sets = os.path.join(voc_root, 'ImageSets', 'Segmentation')
    for d in (voc_images, voc_masks, voc_sets):
        _require_dir(d, os.path.relpath(d, voc_root) + '/', VOC_HINT)
    sbd_dir = sbd_dataset_dir(sbd_root)
    sbd_cls = os.path.join(sbd_dir, 'cls')

    voc_train = _dedup(read_id_list(os.path.join(voc_sets, 'train.txt'), 'VOC train list'))
    voc_val = _dedup(read_id_list(os.path.join(voc_sets, 'val.txt'), 'VOC val list'))
    sbd_train = read_id_list(os.path.join(sbd_dir, 'train.txt'), 'SBD train list')
    sbd_val = read_id_list(os.path.join(sbd_dir, 'val.txt'), 'SBD val list')
    test_list = os.path.join(voc_sets, 'test.txt')
    voc_test = _dedup(read_id_list(test_list, 'VOC test list')) if os.path.isfile(test_list) \
        else None

    val_set = set(voc_val)
    voc_seg = set(voc_train) | val_set                 # ids with a VOC SegmentationClass mask
    train_aug = sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - val_set)
    needed = sorted(set(train_aug) | val_set)

    def label_source(i):
        if i in voc_seg:
            return 'voc', os.path.join(voc_masks, i + '.png')
        return 'sbd', os.path.join(sbd_cls, i + '.mat')

    missing = [p for i in needed
               for p in (os.path.join(voc_images, i + '.jpg'), label_source(i)[1])
               if not os.path.isfile(p)]
    if missing:
        raise InputError('%d listed file(s) missing: %s' % (len(missing), _ellipsis(missing)))

    label_dir = os.path.join(out_dir, 'SegmentationClassAug')
    os.makedirs(label_dir, exist_ok=True)
    out_images = os.path.join(out_dir, 'JPEGImages')
    same_root = os.path.realpath(out_dir) == os.path.realpath(voc_root)
    if not same_root and not copy_images and not os.path.exists(out_images):
        os.symlink(os.path.abspath(voc_images), out_images)
    elif not same_root and copy_images:
        os.makedirs(out_images, exist_ok=True)

    bar = Progress(len(needed), label='voc', unit='mask') if progress else None
    problems = []
    from_voc = from_sbd = 0
    for i in needed:
        image_path = os.path.join(voc_images, i + '.jpg')
        kind, src = label_source(i)
        try:
            labels = read_label(src) if kind == 'voc' else load_sbd_cls(src)
            size = _image_size(image_path)
            if labels.shape != size:
                raise InputError('%s: label is %dx%d but image %s is %dx%d'
                                 % (src, labels.shape[0], labels.shape[1], image_path,
                                    size[0], size[1]))
        except InputError as e:
            problems.append(str(e))
        else:
            write_index_png(os.path.join(label_dir, i + '.png'), labels)
            if kind == 'voc':
                from_voc += 1
            else:
                from_sbd += 1
            if not same_root and copy_images:
                dst = os.path.join(out_images, i + '.jpg')
                if not (os.path.isfile(dst)
                        and os.path.getsize(dst) == os.path.getsize(image_path)):
                    shutil.copyfile(image_path, dst)
        if bar:
            bar.update()
    if bar:
        bar.close()
    if problems:
        raise InputError('%d label(s) could not be converted: %s'
                         % (len(problems), '; '.join(problems[:MAX_SHOWN])
                            + ('; ...' if len(problems) > MAX_SHOWN else '')))

    lists = {'train_aug': os.path.join(out_dir, 'train_aug.txt'),
             'train': os.path.join(out_dir, 'train.txt'),
             'val': os.path.join(out_dir, 'val.txt'),
             'test': None}
    _write_list(lists['train_aug'], train_aug)
    _write_list(lists['train'], voc_train)
    _write_list(lists['val'], voc_val)
    counts = collections.OrderedDict([
        ('sbd_train', len(sbd_train)), ('sbd_val', len(sbd_val)),
        ('voc_train', len(voc_train)), ('voc_val', len(voc_val)),
        ('val_removed_from_train_aug',
         len((set(sbd_train) | set(sbd_val) | set(voc_train)) & val_set)),
        ('train_aug', len(train_aug)), ('train', len(voc_train)), ('val', len(voc_val)),
        ('masks_from_voc', from_voc), ('masks_from_sbd', from_sbd),
    ])
    if voc_test is not None:
        lists['test'] = os.path.join(out_dir, 'test.txt')
        _write_list(lists['test'], voc_test, with_labels=False)
        counts['test'] = len(voc_test)
        present = sum(os.path.isfile(os.path.join(voc_images, i + '.jpg')) for i in voc_test)
        counts['test_images_present'] = present
        if present < len(voc_test) and log:
            log('note: %d of %d test images are not in %s (they come with the separate '
                'VOC2012 test download)' % (len(voc_test) - present, len(voc_test), voc_images))
    return VocAugResult(out_dir, lists, counts)


def _cmd_voc(args):
    result = build_voc_aug(args.voc_root, args.sbd_root, args.out, copy_images=args.copy_images,
                           progress=not args.quiet)
    c = result.counts
    print('SBD train %d + SBD val %d + VOC train %d, minus %d in VOC val -> train_aug %d'
          % (c['sbd_train'], c['sbd_val'], c['voc_train'], c['val_removed_from_train_aug'],
             c['train_aug']))
    print('masks written: %d from VOC SegmentationClass, %d from SBD cls -> %s'
          % (c['masks_from_voc'], c['masks_from_sbd'],
             os.path.join(result.out_dir, 'SegmentationClassAug')))
    for name in ('train_aug', 'train', 'val', 'test'):
        if result.lists[name]:
            print('%-9s %6d  %s' % (name, c[name], result.lists[name]))
    print('data dir: %s' % result.out_dir)
    return 0


# =========================================================================== rgb2index

def default_palette(num_classes=NUM_CLASSES_VOC):
    """VOC colours for classes 0..num_classes-1 plus the void colour -> IGNORE_LABEL.

    Returns: (colours [K, 3] uint8, indices [K] uint8).
    """
    colours = np.concatenate([make_palette(256)[:num_classes],
                              np.array([IGNORE_COLOUR], dtype=np.uint8)])
    indices = np.concatenate([np.arange(num_classes), [IGNORE_LABEL]]).astype(np.uint8)
    return colours, indices


def read_palette_file(path):
    """A palette file: one 'R G B' line per class, in class order ('R G B INDEX' gives the
    index explicitly, e.g. '224 224 192 255' for void). Commas are allowed, '#' starts a
    comment.

    Returns: (colours [K, 3] uint8, indices [K] uint8).
    """
    if not os.path.isfile(path):
        raise InputError('%s: palette file not found' % path)
    colours, indices = [], []
    with open(path, encoding='utf-8', errors='replace') as f:
        for number, raw in enumerate(f, 1):
            line = raw.split('#', 1)[0].replace(',', ' ').strip()
            if not line:
                continue
            try:
                values = [int(x) for x in line.split()]
            except ValueError:
                values = []
            if len(values) not in (3, 4) or not all(0 <= x <= 255 for x in values):
                raise InputError('%s:%d: expected "R G B" or "R G B INDEX" with values in '
                                 '0..255, got %r' % (path, number, raw.strip()))
            colours.append(values[:3])
            indices.append(values[3] if len(values) == 4 else len(indices))
    if not colours:
        raise InputError('%s: the palette is empty' % path)
    colours = np.array(colours, dtype=np.uint8)
    packed = _pack(colours)
    if len(np.unique(packed)) != len(packed):
        dup = [tuple(int(x) for x in c) for c, n in
               zip(*np.unique(colours, axis=0, return_counts=True)) if n > 1]
        raise InputError('%s: colour(s) listed more than once: %s' % (path, _ellipsis(dup)))
    return colours, np.array(indices, dtype=np.uint8)


def _pack(rgb):
    rgb = np.asarray(rgb).astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def rgb_to_index(rgb, colours, indices, unknown_to_ignore=False):
    """[H, W, 3] colour mask -> [H, W] uint8 indices, by packing RGB to int24 and looking up.

    Returns: (labels, unknown) where unknown lists ((r, g, b), pixel_count) for colours not in
      the palette, most frequent first; those pixels are IGNORE_LABEL when unknown_to_ignore,
      else the labels returned are None.
    """
    packed = _pack(rgb)
    keys = _pack(colours)
    order = np.argsort(keys)
    keys, values = keys[order], np.asarray(indices, dtype=np.uint8)[order]
    pos = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    found = keys[pos] == packed
    unknown = []
    if not found.all():
        vals, counts = np.unique(packed[~found], return_counts=True)
        for k in np.argsort(-counts, kind='stable'):
            v = int(vals[k])
            unknown.append(((v >> 16, (v >> 8) & 255, v & 255), int(counts[k])))
        if not unknown_to_ignore:
            return None, unknown
    labels = np.where(found, values[pos], IGNORE_LABEL).astype(np.uint8)
    return labels, unknown


def _read_colour_mask(path):
    if not os.path.isfile(path):
        raise InputError('%s: colour mask not found' % path)
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:
        raise InputError('%s: cannot decode colour mask (%s)' % (path, e.__class__.__name__))
    if img.mode in ('RGB', 'RGBA', 'P'):
        return np.asarray(img.convert('RGB'))
    raise InputError('%s: mode %s is not a colour mask (a single-channel image is already an '
                     'index mask; nothing to convert)' % (path, img.mode))


def convert_rgb_mask(src, dst, colours, indices, unknown_to_ignore=False):
    """One colour mask file -> index PNG. Returns the number of unknown-colour pixels.

    Raises: InputError naming the file and its unknown colours (unless unknown_to_ignore).
    """
    labels, unknown = rgb_to_index(_read_colour_mask(src), colours, indices, unknown_to_ignore)
    if labels is None:
        hint = ''
        if os.path.splitext(src)[1].lower() in ('.jpg', '.jpeg'):
            hint = '; JPEG compression changes colours, colour masks must be lossless (PNG)'
        raise InputError('%s: %d colour(s) not in the palette: %s (use --unknown-to-ignore to '
                         'map them to %d)%s'
                         % (src, len(unknown),
                            _ellipsis('(%d, %d, %d) x %d px' % (c + (n,)) for c, n in unknown),
                            IGNORE_LABEL, hint))
    write_index_png(dst, labels)
    return sum(n for _, n in unknown)


MASK_EXTENSIONS = ('.png', '.bmp', '.gif', '.tif', '.tiff', '.jpg', '.jpeg')


def convert_rgb_masks(inp, out_dir, colours, indices, unknown_to_ignore=False,
                      progress=False):
    """A colour mask file, or every mask file in a folder, -> out_dir/<name>.png.

    Returns: (written, problems): written lists (src, dst, unknown_pixels); problems one-line
      messages for the files that failed (the others are still converted).
    """
    if os.path.isdir(inp):
        sources = sorted(os.path.join(inp, n) for n in os.listdir(inp)
                         if n.lower().endswith(MASK_EXTENSIONS)
                         and os.path.isfile(os.path.join(inp, n)))
        if not sources:
            raise InputError('%s: no mask files (%s) in this folder'
                             % (inp, ' '.join(MASK_EXTENSIONS)))
    elif os.path.isfile(inp):
        sources = [inp]
    else:
        raise InputError('%s: input file or folder not found' % inp)
    os.makedirs(out_dir, exist_ok=True)
    written, problems = [], []
    bar = Progress(len(sources), label='rgb2index', unit='mask') if progress else None
    for src in sources:
        dst = os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + '.png')
        if os.path.exists(dst) and os.path.samefile(src, dst):
            raise InputError('%s: the output would overwrite this input; choose another --out'
                             % src)
        try:
            written.append((src, dst, convert_rgb_mask(src, dst, colours, indices,
                                                       unknown_to_ignore)))
        except InputError as e:
            problems.append(str(e))
        if bar:
            bar.update()
    if bar:
        bar.close()
    return written, problems


def _cmd_rgb2index(args):
    if args.palette:
        colours, indices = read_palette_file(args.palette)
    else:
        colours, indices = default_palette(args.num_classes)
    written, problems = convert_rgb_masks(args.inp, args.out, colours, indices,
                                          args.unknown_to_ignore, progress=not args.quiet)
    for message in problems:
        print('error: %s' % message, file=sys.stderr)
    ignored = [(s, n) for s, _, n in written if n]
    for src, n in ignored:
        print('warning: %s: %d pixel(s) of unknown colours set to %d' % (src, n, IGNORE_LABEL),
              file=sys.stderr)
    print('converted %d mask(s) to %s, %d failed' % (len(written), args.out, len(problems)))
    return 2 if problems else 0


# =========================================================================== check

CheckReport = collections.namedtuple('CheckReport', [
    'examples',          # Example tuples parsed from the list (well-formed lines)
    'problems',          # one line each: 'LIST:LINE: PATH: what is wrong'
    'histogram',         # [256] int64 pixel count per label value over all masks
    'num_classes', 'ignore_label',
    'image_sizes',       # [(H, W)] of the images that decoded
    'duplicates',        # number of lines repeating an earlier (image, label) pair
])


def check_dataset(data_dir, data_list, num_classes, ignore_label=IGNORE_LABEL,
                  need_labels=True, progress=True, on_problem=None):
    """Checks every listed file: exists, decodes, image and mask sizes agree, the mask is an
    index mask, its values are classes 0..num_classes-1 or the ignore label.

    Args:
      on_problem: called with each problem line as it is found (e.g. to print it).
    Returns: CheckReport.
    """
    if num_classes < 1 or num_classes > 256:
        raise InputError('--num-classes must be in 1..256, got %d' % num_classes)
    if data_dir and not os.path.isdir(data_dir):
        raise InputError('%s: data directory not found' % data_dir)
    examples, problems = datalist.parse_list_collecting(data_list, data_dir, need_labels)

    def report(message):
        problems.append(message)
        if on_problem:
            on_problem(message)

    if on_problem:
        for message in problems:
            on_problem(message)
    histogram = np.zeros(256, dtype=np.int64)
    sizes = []
    valid = np.zeros(256, dtype=bool)
    valid[:num_classes] = True
    if 0 <= ignore_label < 256:
        valid[ignore_label] = True
    seen = set()
    duplicates = 0
    bar = Progress(len(examples), label='check', unit='img') if progress else None
    for ex in examples:
        where = '%s:%d' % (data_list, ex.line)
        key = (ex.image, ex.label)
        duplicates += key in seen
        seen.add(key)
        image = labels = None
        try:
            image = read_image(ex.image)
            sizes.append(image.shape[:2])
        except InputError as e:
            report('%s: %s' % (where, e))
        if ex.label is not None:
            try:
                labels = read_label(ex.label)
            except InputError as e:
                report('%s: %s' % (where, e))
        if labels is not None:
            counts = np.bincount(labels.ravel(), minlength=256)
            histogram += counts
            if image is not None and image.shape[:2] != labels.shape:
                report('%s: %s: mask is %dx%d but image %s is %dx%d'
                       % (where, ex.label, labels.shape[0], labels.shape[1], ex.image,
                          image.shape[0], image.shape[1]))
            bad = np.nonzero(counts * ~valid)[0]
            if len(bad):
                report('%s: %s: label values outside 0..%d (ignore %d): %s'
                       % (where, ex.label, num_classes - 1, ignore_label,
                          _ellipsis('%d (%d px)' % (v, counts[v]) for v in bad)))
        if bar:
            bar.update(extra='%d problem(s)' % len(problems) if problems else '')
    if bar:
        bar.close()
    return CheckReport(examples, problems, histogram, num_classes, ignore_label, sizes,
                       duplicates)


def _class_names_for(data_dir, num_classes, names_file=None):
    path = names_file or (os.path.join(data_dir, 'class_names.txt') if data_dir else None)
    if path and os.path.isfile(path):
        with open(path, encoding='utf-8', errors='replace') as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) == num_classes:
            return names
        if names_file:
            raise InputError('%s: %d class names for --num-classes %d'
                             % (names_file, len(names), num_classes))
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
        valid = np.zeros(256, dtype=bool)
        valid[:report.num_classes] = True
        lines.append('label histogram (%d px):' % total)
        for c in range(report.num_classes):
            lines.append('  %3d %-16s %12d  %6.2f%%' % (c, names[c], h[c], 100.0 * h[c] / total))
        if 0 <= report.ignore_label < 256 and not valid[report.ignore_label]:
            n = h[report.ignore_label]
            lines.append('  %3d %-16s %12d  %6.2f%%' % (report.ignore_label, 'ignore', n,
                                                        100.0 * n / total))
            valid[report.ignore_label] = True
        outside = int(h[~valid].sum())
        lines.append('      %-16s %12d  %6.2f%%' % ('outside classes', outside,
                                                    100.0 * outside / total))
        absent = [names[c] for c in range(report.num_classes) if h[c] == 0]
        if absent:
            lines.append('warning: class(es) with no pixels: %s' % ', '.join(absent))
    if report.duplicates:
        lines.append('warning: %d duplicate line(s)' % report.duplicates)
    lines.append('problems: %d%s' % (len(report.problems),
                                     '' if not report.problems else '  (exit status 2)'))
    return lines


def _cmd_check(args):
    shown = [0]

    def on_problem(message):
        shown[0] += 1
        if shown[0] <= args.max_shown:
            print('problem: %s' % message, file=sys.stderr)
        elif shown[0] == args.max_shown + 1:
            print('problem: ... (further problems counted, not shown)', file=sys.stderr)

    names = _class_names_for(args.data_dir, args.num_classes, args.class_names)
    report = check_dataset(args.data_dir, args.data_list, args.num_classes, args.ignore_label,
                           need_labels=not args.allow_unlabelled, progress=not args.quiet,
                           on_problem=on_problem)
    for line in format_check_summary(report, names, args.data_list):
        print(line)
    return 2 if report.problems else 0


# =========================================================================== main

def build_parser():
    parser = argparse.ArgumentParser(prog='python -m dataset.tools',
                                     description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', metavar='command')
    sub.required = True

    p = sub.add_parser('voc', help='build VOC 2012 + SBD SegmentationClassAug and lists')
    p.add_argument('--voc-root', required=True, help='VOCdevkit/VOC2012')
    p.add_argument('--sbd-root', required=True, help='benchmark_RELEASE (or its dataset/)')
    p.add_argument('--out', default=None,
                   help='data directory to write (default: the VOC root). Elsewhere, '
                        'JPEGImages is linked to VOC\'s (or copied with --copy-images)')
    p.add_argument('--copy-images', action='store_true',
                   help='copy the listed images into --out instead of a symlink')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    p.set_defaults(func=_cmd_voc)

    p = sub.add_parser('rgb2index', help='convert RGB colour masks to index PNGs')
    p.add_argument('--in', dest='inp', required=True, help='a colour mask file or a folder')
    p.add_argument('--out', required=True, help='output folder (<name>.png each)')
    p.add_argument('--palette', default=None,
                   help='palette file, one "R G B" line per class (optionally "R G B INDEX"); '
                        'default: the VOC palette with void (224,224,192) -> 255')
    p.add_argument('--num-classes', type=int, default=NUM_CLASSES_VOC,
                   help='classes of the default VOC palette (default %(default)s)')
    p.add_argument('--unknown-to-ignore', action='store_true',
                   help='map colours not in the palette to %d instead of failing' % IGNORE_LABEL)
    p.add_argument('--quiet', action='store_true', help='no progress line')
    p.set_defaults(func=_cmd_rgb2index)

    p = sub.add_parser('check', help='validate a data dir and list before training')
    p.add_argument('--data-dir', required=True)
    p.add_argument('--data-list', required=True)
    p.add_argument('--num-classes', type=int, required=True)
    p.add_argument('--ignore-label', type=int, default=IGNORE_LABEL)
    p.add_argument('--class-names', default=None,
                   help='one name per line (default: DATA_DIR/class_names.txt when it matches, '
                        'VOC names for 21 classes)')
    p.add_argument('--allow-unlabelled', action='store_true',
                   help='accept image-only lines (a test list)')
    p.add_argument('--max-shown', type=int, default=50,
                   help='problems printed (all are counted; default %(default)s)')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    p.set_defaults(func=_cmd_check)
    return parser


def main(argv=None):
    """Returns the exit status: 0 ok, 2 on bad input (one 'error: ...' line) or problems."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
