"""PASCAL VOC 2012 + SBD -> 'SegmentationClassAug' index PNGs and the lists train_aug.txt
(10,582 on the real data), train.txt (1,464), val.txt (1,449) and, when VOC has
ImageSets/Segmentation/test.txt, test.txt (image-only lines), and dataset.json (the descriptor
of deeplab_resnet.data.descriptor, written by dataset.builder's writer like every dataset tool's).

Run it as `python -m dataset.tools voc --voc-root VOCdevkit/VOC2012 --sbd-root
benchmark_RELEASE [--out DIR]`.
"""
import collections
import os
import shutil

import numpy as np

from dataset.builder import write_dataset_json
from deeplab_resnet.common.constants import NUM_CLASSES_VOC, VOC_CLASS_NAMES
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.common.progress import Progress
from deeplab_resnet.data.colormap import make_palette
from deeplab_resnet.data.imageio import read_label, write_index_png
from deeplab_resnet.data.labels import bad_values_text, image_size

MAX_SHOWN = 5   # files or problems named in one error message

VOC_HINT = 'expected the VOC2012 folder of VOCtrainval_11-May-2012.tar (VOCdevkit/VOC2012)'
SBD_HINT = 'expected the benchmark_RELEASE folder of SBD (benchmark.tgz)'

VocAugResult = collections.namedtuple(
    'VocAugResult', ['out_dir', 'lists', 'counts', 'descriptor'])
"""out_dir: the data directory; lists: {'train_aug': path, 'train': ..., 'val': ...,
'test': path or None}; counts: {name: number}; descriptor: the dataset.json written
(deeplab_resnet.data.descriptor.Descriptor)."""

Sources = collections.namedtuple('Sources', ['images', 'masks', 'sets', 'sbd_dir'])
"""The input folders: VOC's JPEGImages, SegmentationClass and ImageSets/Segmentation, and
SBD's folder holding cls/ and its lists."""

Splits = collections.namedtuple('Splits', [
    'voc_train', 'voc_val',     # VOC segmentation ids, de-duplicated, in list order
    'sbd_train', 'sbd_val',     # SBD ids as listed
    'voc_test',                 # VOC test ids, or None when VOC has no test list
])


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


def find_sources(voc_root, sbd_root):
    """The VOC and SBD folders -> Sources; raises InputError naming the first one missing."""
    _require_dir(voc_root, 'VOC root', VOC_HINT)
    sources = Sources(os.path.join(voc_root, 'JPEGImages'),
                      os.path.join(voc_root, 'SegmentationClass'),
                      os.path.join(voc_root, 'ImageSets', 'Segmentation'), None)
    for d in sources[:3]:
        _require_dir(d, os.path.relpath(d, voc_root) + '/', VOC_HINT)
    return sources._replace(sbd_dir=sbd_dataset_dir(sbd_root))


def _dedup(ids):
    return list(collections.OrderedDict.fromkeys(ids))


def read_splits(sources):
    """The VOC and SBD id lists -> Splits."""
    test_list = os.path.join(sources.sets, 'test.txt')
    return Splits(
        _dedup(read_id_list(os.path.join(sources.sets, 'train.txt'), 'VOC train list')),
        _dedup(read_id_list(os.path.join(sources.sets, 'val.txt'), 'VOC val list')),
        read_id_list(os.path.join(sources.sbd_dir, 'train.txt'), 'SBD train list'),
        read_id_list(os.path.join(sources.sbd_dir, 'val.txt'), 'SBD val list'),
        _dedup(read_id_list(test_list, 'VOC test list')) if os.path.isfile(test_list)
        else None)


def train_aug_ids(splits):
    """(SBD train + SBD val + VOC train) - VOC val, de-duplicated and sorted."""
    return sorted((set(splits.sbd_train) | set(splits.sbd_val) | set(splits.voc_train))
                  - set(splits.voc_val))


def label_sources(sources, splits, ids):
    """{id: ('voc', its SegmentationClass PNG)} for the VOC segmentation train/val ids,
    {id: ('sbd', its SBD cls .mat)} for the others."""
    voc_seg = set(splits.voc_train) | set(splits.voc_val)
    return {i: ('voc', os.path.join(sources.masks, i + '.png')) if i in voc_seg
            else ('sbd', os.path.join(sources.sbd_dir, 'cls', i + '.mat')) for i in ids}


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


def read_source_label(kind, src, image_path):
    """One label source -> [H, W] uint8 indices, checked against its image's size.

    Raises: InputError naming the file when it cannot be read or its size differs.
    """
    labels = read_label(src) if kind == 'voc' else load_sbd_cls(src)
    size = image_size(image_path)
    if labels.shape != size:
        raise InputError('%s: label is %dx%d but image %s is %dx%d'
                         % (src, labels.shape[0], labels.shape[1], image_path,
                            size[0], size[1]))
    return labels


def _require_files(sources, labels_by_id):
    """Raises InputError naming the missing images and label sources."""
    missing = [p for i, (_, src) in sorted(labels_by_id.items())
               for p in (os.path.join(sources.images, i + '.jpg'), src)
               if not os.path.isfile(p)]
    if missing:
        raise InputError('%d listed file(s) missing: %s'
                         % (len(missing), bad_values_text(missing, MAX_SHOWN)))


def _prepare_images(out_dir, voc_root, voc_images, copy_images):
    """out_dir/JPEGImages: nothing when out_dir is voc_root, else a symlink to VOC's (or a
    folder for copies). Returns the folder to copy the images into, or None."""
    if os.path.realpath(out_dir) == os.path.realpath(voc_root):
        return None
    out_images = os.path.join(out_dir, 'JPEGImages')
    if copy_images:
        os.makedirs(out_images, exist_ok=True)
        return out_images
    if not os.path.exists(out_images):
        os.symlink(os.path.abspath(voc_images), out_images)
    return None


def _copy_image(image_path, copy_to):
    dst = os.path.join(copy_to, os.path.basename(image_path))
    if not (os.path.isfile(dst) and os.path.getsize(dst) == os.path.getsize(image_path)):
        shutil.copyfile(image_path, dst)


def write_masks(sources, labels_by_id, label_dir, copy_to=None, progress=True):
    """Writes label_dir/<id>.png for every id of labels_by_id ({id: (kind, source)}), in id
    order, and copies its image into copy_to, if given.

    Returns: ({'voc': masks written from VOC, 'sbd': from SBD}, problems: one line per id
      whose label could not be converted; the others are still written).
    """
    written = {'voc': 0, 'sbd': 0}
    problems = []
    bar = Progress(len(labels_by_id), label='voc', unit='mask') if progress else None
    for i, (kind, src) in sorted(labels_by_id.items()):
        image_path = os.path.join(sources.images, i + '.jpg')
        try:
            labels = read_source_label(kind, src, image_path)
        except InputError as e:
            problems.append(str(e))
        else:
            write_index_png(os.path.join(label_dir, i + '.png'), labels)
            written[kind] += 1
            if copy_to:
                _copy_image(image_path, copy_to)
        if bar:
            bar.update()
    if bar:
        bar.close()
    return written, problems


def _write_list(path, ids, with_labels=True):
    with open(path, 'w') as f:
        for i in ids:
            if with_labels:
                f.write('/JPEGImages/%s.jpg /SegmentationClassAug/%s.png\n' % (i, i))
            else:
                f.write('/JPEGImages/%s.jpg\n' % i)


def _split_counts(splits, train_aug, written):
    listed = set(splits.sbd_train) | set(splits.sbd_val) | set(splits.voc_train)
    return collections.OrderedDict([
        ('sbd_train', len(splits.sbd_train)), ('sbd_val', len(splits.sbd_val)),
        ('voc_train', len(splits.voc_train)), ('voc_val', len(splits.voc_val)),
        ('val_removed_from_train_aug', len(listed & set(splits.voc_val))),
        ('train_aug', len(train_aug)), ('train', len(splits.voc_train)),
        ('val', len(splits.voc_val)),
        ('masks_from_voc', written['voc']), ('masks_from_sbd', written['sbd']),
    ])


def _write_test_list(path, test_ids, voc_images, log):
    """Writes the image-only test list. Returns the number of its images present."""
    _write_list(path, test_ids, with_labels=False)
    present = sum(os.path.isfile(os.path.join(voc_images, i + '.jpg')) for i in test_ids)
    if present < len(test_ids) and log:
        log('note: %d of %d test images are not in %s (they come with the separate '
            'VOC2012 test download)' % (len(test_ids) - present, len(test_ids), voc_images))
    return present


def build_voc_aug(voc_root, sbd_root, out_dir=None, copy_images=False, progress=True,
                  log=print):
    """Builds SegmentationClassAug (VOC 2012 + SBD) and its lists.

    Labels: VOC's own SegmentationClass mask (palette indices, 255 boundaries kept) for every
    image of the VOC segmentation train/val sets, SBD's GTcls.Segmentation (no 255
    boundaries) for the others. train_aug = (SBD train + SBD val + VOC train) - VOC val,
    de-duplicated and sorted; train = VOC train; val = VOC val; test = VOC test (image only)
    when VOC has that list. dataset.json (VOC's names and colours, each list a split) goes
    beside the lists.

    Args:
      out_dir: the data directory to write (default voc_root). SegmentationClassAug/ and the
        lists go there; when it is not voc_root, out_dir/JPEGImages is made a symlink to VOC's
        JPEGImages (or the listed images are copied when copy_images).
    Returns: VocAugResult.
    Raises: InputError naming what is missing or wrong, before anything is written when a
      folder, list or listed file is missing.
    """
    out_dir = out_dir or voc_root
    sources = find_sources(voc_root, sbd_root)
    splits = read_splits(sources)
    train_aug = train_aug_ids(splits)
    labels_by_id = label_sources(sources, splits, set(train_aug) | set(splits.voc_val))
    _require_files(sources, labels_by_id)

    label_dir = os.path.join(out_dir, 'SegmentationClassAug')
    os.makedirs(label_dir, exist_ok=True)
    copy_to = _prepare_images(out_dir, voc_root, sources.images, copy_images)
    written, problems = write_masks(sources, labels_by_id, label_dir, copy_to, progress)
    if problems:
        raise InputError('%d label(s) could not be converted: %s'
                         % (len(problems), '; '.join(problems[:MAX_SHOWN])
                            + ('; ...' if len(problems) > MAX_SHOWN else '')))

    lists = {'train_aug': os.path.join(out_dir, 'train_aug.txt'),
             'train': os.path.join(out_dir, 'train.txt'),
             'val': os.path.join(out_dir, 'val.txt'),
             'test': None}
    _write_list(lists['train_aug'], train_aug)
    _write_list(lists['train'], splits.voc_train)
    _write_list(lists['val'], splits.voc_val)
    counts = _split_counts(splits, train_aug, written)
    if splits.voc_test is not None:
        lists['test'] = os.path.join(out_dir, 'test.txt')
        counts['test'] = len(splits.voc_test)
        counts['test_images_present'] = _write_test_list(lists['test'], splits.voc_test,
                                                         sources.images, log)
    desc = write_dataset_json(out_dir, 'voc', NUM_CLASSES_VOC, VOC_CLASS_NAMES,
                              make_palette(NUM_CLASSES_VOC),
                              collections.OrderedDict((k, v) for k, v in lists.items() if v))
    return VocAugResult(out_dir, lists, counts, desc)


def format_summary(result):
    """The lines the voc command prints for a VocAugResult."""
    c = result.counts
    lines = ['SBD train %d + SBD val %d + VOC train %d, minus %d in VOC val -> train_aug %d'
             % (c['sbd_train'], c['sbd_val'], c['voc_train'], c['val_removed_from_train_aug'],
                c['train_aug']),
             'masks written: %d from VOC SegmentationClass, %d from SBD cls -> %s'
             % (c['masks_from_voc'], c['masks_from_sbd'],
                os.path.join(result.out_dir, 'SegmentationClassAug'))]
    for name in ('train_aug', 'train', 'val', 'test'):
        if result.lists[name]:
            lines.append('%-9s %6d  %s' % (name, c[name], result.lists[name]))
    lines.append('data dir: %s' % result.out_dir)
    lines.append('descriptor: %s (--dataset FILE)' % result.descriptor.path)
    return lines
