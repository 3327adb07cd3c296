"""The one conversion path shared by every dataset tool (cityscapes, ade20k, cocostuff164k,
cocostuff10k; voc uses its descriptor writer): walk the download's layout, pair images with
labels, apply the dataset's look-up table once, write single-channel (mode L) index PNGs with
progress, skip what is already done, then write the lists and `dataset.json`.

A dataset is described by a `DatasetSpec` (dataset/cityscapes.py, ade20k.py, cocostuff.py): where
its files are, its table, class names, colours, splits and server ids. Nothing here knows a
dataset by name.

Where files go. The data directory of the lists is OUT (default ROOT/deeplab). Images stay in
ROOT and are reached through links OUT/<folder> -> ROOT/<folder> (relative when OUT is inside
ROOT, so the whole tree can move; absolute otherwise), so every list line is the same whatever
OUT is, and nothing is ever written in ROOT when OUT is outside it (a read-only download works).
Converted labels go to OUT/labels/..., except for a dataset with its own name for converted
labels (Cityscapes' *_gtFine_labelTrainIds.png): those go beside the originals through a link
when OUT is inside ROOT, and into the same tree under OUT when it is not.

Restarting: every PNG is written to a temporary name and renamed, so a label that exists is
whole; a second run skips it. A run stopped by Ctrl-C or SIGTERM loses at most the file being
written.
"""
import collections
import os

import numpy as np
from PIL import Image

from deeplab_resnet.common.constants import IGNORE_LABEL
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.common.progress import Progress
from deeplab_resnet.data import descriptor
from deeplab_resnet.data.labels import bad_values_text, image_size

MAX_SHOWN = 5            # files or problems named in one error line
DEFAULT_OUT = 'deeplab'  # OUT when --out is not given: ROOT/deeplab
LABELS_DIR = 'labels'    # converted labels of datasets without their own naming: OUT/labels/
UNDEFINED = -1           # table entry of a stored value outside the dataset's definition

Pair = collections.namedtuple('Pair', ['image', 'source', 'label'])
"""One example. image: path relative to ROOT (the same relative to OUT, through the links);
source: the stored label, relative to ROOT, or None (image-only split); label: the label the
list names, relative to OUT (converted, or the stored one through a link), or None."""

Split = collections.namedtuple('Split', ['name', 'pairs', 'where'])
"""name: the list's name (train, val, test); pairs: [Pair] in list order; where: the folder or
list file the split was read from (named in messages)."""

DatasetSpec = collections.namedtuple('DatasetSpec', [
    'name',          # the command and the descriptor's name
    'hint',          # what ROOT should be: the download and how it unpacks
    'required',      # paths relative to ROOT that must exist (checked in order)
    'find_splits',   # function(root) -> [Split]; raises InputError for a split with no images
    'read_source',   # function(path) -> [H, W] integer array of stored label values
    'table',         # [K] int16: stored value -> class index / IGNORE_LABEL, or UNDEFINED
    'definition',    # the stored values' definition, for messages: 'Cityscapes labelIds 0..33'
    'rewrite',       # True: write mapped PNGs; False: list the stored labels (checked only)
    'links',         # folders of ROOT the lists reach through links in OUT
    'beside',        # folder of converted labels written beside the originals (or None)
    'num_classes', 'class_names', 'palette', 'server_ids',
    'notes',         # lines printed after the summary (conventions a user must know)
])

Result = collections.namedtuple('Result', [
    'spec', 'root', 'out', 'splits', 'lists', 'written', 'skipped', 'checked', 'descriptor'])


def table_from_pairs(size, pairs, default=UNDEFINED):
    """A look-up table of `size` entries: `default` everywhere, pairs (stored, mapped) set."""
    table = np.full(size, default, dtype=np.int16)
    for stored, mapped in pairs:
        table[stored] = mapped
    return table


def require_root(spec, root):
    """Raises InputError naming the first required path missing (with what ROOT should be)."""
    if not os.path.isdir(root):
        raise InputError('%s: %s root not found (%s)' % (root, spec.name, spec.hint))
    for rel in spec.required:
        if not os.path.exists(os.path.join(root, rel)):
            raise InputError('%s: not found, so this is not a %s root (%s)%s'
                             % (os.path.join(root, rel), spec.name, spec.hint,
                                _did_you_mean(spec, root)))


def _did_you_mean(spec, root):
    """'; did you mean ROOT/SUB?' when a folder inside ROOT is this dataset's root, else ''."""
    for name in sorted(os.listdir(root)):
        sub = os.path.join(root, name)
        if os.path.isdir(sub) and all(os.path.exists(os.path.join(sub, rel))
                                      for rel in spec.required):
            return '; did you mean --root %s?' % sub
    return ''


def no_images(where, split, expected):
    """The one-line error of a split with no images."""
    return InputError('%s: no images for split %s (expected %s)' % (where, split, expected))


def sorted_files(folder, suffix):
    """Names in `folder` ending with `suffix` (case-sensitive), sorted; [] if no folder."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if n.endswith(suffix)
                  and os.path.isfile(os.path.join(folder, n)))


def _require_pairs(root, splits):
    """Raises InputError naming the missing images / stored labels and their count."""
    missing = [os.path.join(root, p) for s in splits for pair in s.pairs
               for p in (pair.image, pair.source) if p is not None
               and not os.path.isfile(os.path.join(root, p))]
    if missing:
        raise InputError('%d image(s) or label(s) missing: %s'
                         % (len(missing), bad_values_text(missing, MAX_SHOWN)))


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _link(out, root, folder, relative):
    """OUT/folder -> ROOT/folder, unless it is that folder already (OUT == ROOT) or the link
    exists. Raises InputError when something else is there."""
    target = os.path.join(root, folder)
    here = os.path.join(out, folder)
    if os.path.exists(here) and os.path.samefile(here, target):
        return
    if os.path.lexists(here):
        raise InputError('%s: exists and is not a link to %s (remove it or choose another '
                         '--out)' % (here, target))
    os.makedirs(os.path.dirname(here), exist_ok=True)
    os.symlink(os.path.relpath(target, os.path.dirname(here)) if relative
               else os.path.abspath(target), here)


def prepare_out(spec, root, out):
    """Makes OUT and its links; labels `beside` the originals only when OUT is inside ROOT."""
    os.makedirs(out, exist_ok=True)
    in_root = _inside(out, root)
    for folder in spec.links:
        _link(out, root, folder, in_root)
    if spec.beside and in_root:
        _link(out, root, spec.beside, True)


def bad_values(counts, table):
    """[(value, pixels)] of the stored values (counts: pixels per value) outside the table."""
    defined = np.zeros(len(counts), dtype=bool)
    n = min(len(counts), len(table))
    defined[:n] = table[:n] != UNDEFINED
    return [(int(v), int(counts[v])) for v in np.flatnonzero((counts > 0) & ~defined)]


def map_labels(spec, path, values):
    """Stored values -> [H, W] uint8 class indices / IGNORE_LABEL by the spec's table.

    Raises: InputError naming the file and the values (with pixel counts) outside the
      definition.
    """
    values = np.asarray(values)
    if values.size and values.min() < 0:
        raise InputError('%s: negative label value %d is not in the %s'
                         % (path, int(values.min()), spec.definition))
    counts = np.bincount(values.ravel().astype(np.int64), minlength=len(spec.table))
    bad = bad_values(counts, spec.table)
    if bad:
        raise InputError('%s: label value(s) outside the %s: %s'
                         % (path, spec.definition,
                            bad_values_text(['%d (%d px)' % b for b in bad], MAX_SHOWN)))
    return spec.table[values].astype(np.uint8)


def write_mode_l_png(path, labels):
    """[H, W] uint8 -> single-channel (mode L) PNG, written to a temporary name and renamed,
    so that a file at `path` is always whole."""
    tmp = path + '.part'
    try:
        Image.fromarray(np.asarray(labels, dtype=np.uint8), mode='L').save(tmp, format='PNG')
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert_pair(spec, root, out, pair):
    """Converts (rewrite) or checks (as stored) one pair's label. Returns 'written', 'skipped'
    or 'checked'. Raises InputError naming the file for a value outside the definition or a
    size that is not the image's."""
    dst = os.path.join(out, pair.label)
    if spec.rewrite and os.path.isfile(dst):
        return 'skipped'
    src = os.path.join(root, pair.source)
    labels = map_labels(spec, src, spec.read_source(src))
    size = image_size(os.path.join(root, pair.image))
    if labels.shape != size:
        raise InputError('%s: label is %dx%d but image %s is %dx%d (width x height)'
                         % (src, labels.shape[1], labels.shape[0],
                            os.path.join(root, pair.image), size[1], size[0]))
    if not spec.rewrite:
        return 'checked'
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    write_mode_l_png(dst, labels)
    return 'written'


def convert_all(spec, root, out, splits, progress=True, scan=True):
    """Every labelled pair of every split, in order. Returns {'written', 'skipped', 'checked':
    count} and the problem lines (files not converted; the others are)."""
    todo = [p for s in splits for p in s.pairs if p.source is not None]
    if not spec.rewrite and not scan:
        todo = []
    done = collections.Counter()
    problems = []
    bar = Progress(len(todo), label=spec.name, unit='label') if progress and todo else None
    for pair in todo:
        try:
            done[convert_pair(spec, root, out, pair)] += 1
        except InputError as e:
            problems.append(str(e))
        if bar:
            bar.update(extra='%d problem(s)' % len(problems) if problems else '')
    if bar:
        bar.close()
    return done, problems


def write_list(path, pairs):
    """A list in the suite's format: 'image label' (or 'image' alone) per line, relative to
    the data directory; written to a temporary name and renamed."""
    tmp = path + '.part'
    with open(tmp, 'w') as f:
        for pair in pairs:
            f.write((pair.image + ' ' + pair.label if pair.label else pair.image) + '\n')
    os.replace(tmp, path)


def write_dataset_json(out, name, num_classes, class_names, palette, lists, server_ids=None,
                       data_dir=None):
    """OUT/dataset.json (deeplab_resnet.data.descriptor) for the lists {split: path}."""
    return descriptor.write(os.path.join(out, descriptor.DESCRIPTOR_NAME), name,
                            data_dir or out, num_classes, class_names, palette, lists,
                            IGNORE_LABEL, server_ids)


def build(spec, root, out=None, progress=True, scan=True):
    """Converts one download. Nothing is written before the layout, every split and every
    listed file have been found; lists and dataset.json only once every label converted.

    Args:
      out: the data directory to write (default ROOT/deeplab).
      scan: for datasets used as stored, decode every label and check its values and size.
    Returns: Result.
    Raises: InputError, one line: a root that is not this dataset (naming what is missing), a
      split with no images, missing files, labels outside the definition (file and value).
    """
    root = os.path.abspath(root)
    out = os.path.abspath(out or os.path.join(root, DEFAULT_OUT))
    require_root(spec, root)
    splits = spec.find_splits(root)
    _require_pairs(root, splits)
    prepare_out(spec, root, out)
    done, problems = convert_all(spec, root, out, splits, progress, scan)
    if problems:
        raise InputError('%d label file(s) not converted: %s'
                         % (len(problems), '; '.join(problems[:MAX_SHOWN])
                            + ('; ...' if len(problems) > MAX_SHOWN else '')))
    lists = collections.OrderedDict()
    for s in splits:
        lists[s.name] = os.path.join(out, s.name + '.txt')
        write_list(lists[s.name], s.pairs)
    desc = write_dataset_json(out, spec.name, spec.num_classes, spec.class_names, spec.palette,
                              lists, spec.server_ids)
    return Result(spec, root, out, splits, lists, done['written'], done['skipped'],
                  done['checked'], desc)


def _label_folder(result):
    """Where the converted labels are (links resolved): ROOT's folder when beside it."""
    first = next(p.label for s in result.splits for p in s.pairs if p.label)
    return os.path.realpath(os.path.join(result.out, first.split('/')[0]))


def format_summary(result):
    """The lines a dataset command prints at the end."""
    spec = result.spec
    lines = ['%s: %s' % (spec.name, result.root)]
    for s in result.splits:
        labelled = sum(p.label is not None for p in s.pairs)
        lines.append('%-6s %7d image(s), %s  %s'
                     % (s.name, len(s.pairs), '%d labelled' % labelled if labelled
                        else 'image-only', result.lists[s.name]))
    if spec.rewrite:
        lines.append('labels: %d written, %d already there (skipped); mode-L PNGs of classes '
                     '0..%d and %d (ignored) in %s'
                     % (result.written, result.skipped, spec.num_classes - 1, IGNORE_LABEL,
                        _label_folder(result)))
    elif result.checked:
        lines.append('labels: used as stored; %d checked (values and sizes)' % result.checked)
    else:
        lines.append('labels: used as stored, not checked (--no-scan)')
    lines.append('classes: %d (%s ... %s), ignore %d; palette %d colours'
                 % (spec.num_classes, spec.class_names[0], spec.class_names[-1], IGNORE_LABEL,
                    len(spec.palette)))
    lines.append('data dir: %s (images through links to %s)' % (result.out, result.root))
    lines.append('descriptor: %s' % result.descriptor.path)
    lines.extend(spec.notes)
    lines.append('next: python train_msc.py --dataset %s --data-list %s'
                 % (result.descriptor.path, result.lists.get('train', '')))
    return lines
