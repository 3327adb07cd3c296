"""Predictions in a test server's ids: one look-up table per dataset, no branch per dataset.

A dataset descriptor (or a checkpoint's provenance record) may carry `server_ids`, the id the
dataset's own evaluation expects for each class: Cityscapes' labelIds for the 19 trainIds
(cityscapesScripts `labels.py`: road 0 -> 7 ... bicycle 18 -> 33), ADE20K's 1..150 for
0..149, VOC's indices unchanged (no table). `--save-server-ids DIR` writes each prediction
mapped through it as a single-channel (mode L) PNG `<stem>.png`, and nothing else, into a
folder of its own: cityscapesScripts' evaluation finds a prediction by
`{city}_{seq}_{frame}*.png` and stops at "multiple predictions" when a colour mask sits
beside it.
"""
import os

import numpy as np
from PIL import Image

from deeplab_resnet.common.errors import InputError

SUFFIX = '.png'
MAX_LISTED = 3


def table(server_ids, num_classes):
    """[num_classes] uint8: the server's id of each class (the class index without a table)."""
    if server_ids is None:
        return np.arange(num_classes, dtype=np.uint8)
    ids = np.asarray(server_ids, dtype=np.int64)
    if ids.shape != (num_classes,) or ids.min() < 0 or ids.max() > 255:
        raise ValueError('server ids must be %d values in 0..255' % num_classes)
    return ids.astype(np.uint8)


def to_server(labels, server_ids, num_classes):
    """[H, W] class indices 0..num_classes-1 -> [H, W] uint8 server ids."""
    return table(server_ids, num_classes)[np.asarray(labels, dtype=np.int64)]


def from_server(ids, server_ids, num_classes, ignore_label):
    """[H, W] server ids -> [H, W] uint8 class indices; ids no class has (e.g. Cityscapes'
    unlabeled 0 or license plate -1 -> 255 ... the eval-ignored ones) become ignore_label.
    Raises ValueError when two classes share an id (the map has no inverse)."""
    forward = table(server_ids, num_classes)
    if len(np.unique(forward)) != num_classes:
        raise ValueError('two classes share a server id: the ids cannot be mapped back')
    inverse = np.full(256, ignore_label, dtype=np.uint8)
    inverse[forward] = np.arange(num_classes, dtype=np.uint8)
    return inverse[np.asarray(ids, dtype=np.int64)]


def write(directory, stem, labels, server_ids, num_classes):
    """Writes <directory>/<stem>.png, mode L, holding the server ids. Returns the path."""
    path = os.path.join(directory, stem + SUFFIX)
    Image.fromarray(to_server(labels, server_ids, num_classes), mode='L').save(path)
    return path


def check_dir(directory, stems, inputs=(), save_dir=None):
    """--save-server-ids DIR before any work: a folder (or none yet), not --save-dir, holding
    nothing but files this run writes (<stem>.png of `stems`), and none of them an input.
    Raises: InputError naming the folder and what is in the way."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise InputError('%s: --save-server-ids is a file, not a directory' % directory)
    if save_dir and os.path.realpath(save_dir) == os.path.realpath(directory):
        raise InputError('%s: --save-server-ids must be a folder of its own, not --save-dir '
                         '(a test server would count the colour masks as predictions too)'
                         % directory)
    names = {stem + SUFFIX for stem in stems}
    real_inputs = {os.path.realpath(p): p for p in inputs}
    for name in sorted(names):
        target = os.path.realpath(os.path.join(directory, name))
        if target in real_inputs:
            raise InputError('%s: --save-server-ids %s would overwrite it (choose another '
                             'folder)' % (real_inputs[target], directory))
    if os.path.isdir(directory):
        others = sorted(set(os.listdir(directory)) - names)
        if others:
            raise InputError('%s: --save-server-ids must hold only the predictions, but it '
                             'holds %d other file(s) (%s%s); a test server would count them'
                             % (directory, len(others), ', '.join(others[:MAX_LISTED]),
                                ', ...' if len(others) > MAX_LISTED else ''))
