"""COCO-Stuff (182 classes as kazuto1011/deeplab-pytorch trains them): 164k used as stored,
10k converted from its .mat files to the same numbering.

Run them as `python -m dataset.tools cocostuff164k --root cocostuff-164k [--out DIR]` and
`python -m dataset.tools cocostuff10k --root cocostuff-10k-v1.1 [--out DIR]`.

COCO-Stuff 164k (nightrome/cocostuff README; kazuto's scripts/setup_cocostuff164k.sh layout):
images/{train2017,val2017}/*.jpg (COCO train2017.zip, val2017.zip) with
annotations/{train2017,val2017}/*.png (stuffthingmaps_trainval2017.zip). Definition (README):
"thing+stuff labels cover indices 0-181 and 255 indicates the 'unlabeled' or void class"; the
PNG value is labels.txt's index - 1. The labels are listed as stored (through a link OUT/
annotations -> ROOT/annotations); each is decoded once to check its values and size (skip with
--no-scan). Lists as kazuto's loader builds them: the sorted images of each split.

COCO-Stuff 10k v1.1 (nightrome/cocostuff10k README): images/*.jpg, annotations/*.mat (MATLAB v5,
read with scipy.io.loadmat) holding the label map `S`, imageLists/{train,test}.txt (ids).
Definition: S is 0 for unlabeled, 1..91 things, 92..182 stuff (labels.txt numbering), so the
164k numbering is S-1 with 0 -> 255 (kazuto's CocoStuff10k._load_data; the dataset's own
convertAnnotationsDeeplab.m does the same). Converted labels: OUT/labels/<id>.png.

Names: nightrome/cocostuff labels.txt (0 unlabeled, 1 person ... 182 wood) without
'unlabeled', so class c is labels.txt's c+1. 11 thing ids have no masks in the data but keep
their names (street sign 11, hat 25, shoe 28, eye glasses 29, plate 44, mirror 65, window 67,
desk 68, door 70, blender 82, hair brush 90): 171 classes are ever supervised.

Colours: COCO-Stuff publishes no colour table, so this suite fixes one (`PALETTE`): the colours of
the 6-level RGB cube (0, 51, ..., 255 per channel) without its 6 greys, 210 colours in R, G, B
order, class c taking colour (97 * c) mod 210. Every two classes are at least 51 apart in RGB,
and neighbouring classes far apart.
"""
import os

import numpy as np

from dataset.builder import (LABELS_DIR, DatasetSpec, Pair, Split, no_images, sorted_files,
                             table_from_pairs)
from deeplab_resnet.common.constants import IGNORE_LABEL
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data.imageio import read_label

NUM_CLASSES = 182

# labels.txt 1..182 -> class 0..181.
CLASS_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'street sign', 'stop sign', 'parking meter', 'bench',
    'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe',
    'hat', 'backpack', 'umbrella', 'shoe', 'eye glasses', 'handbag', 'tie', 'suitcase',
    'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove',
    'skateboard', 'surfboard', 'tennis racket', 'bottle', 'plate', 'wine glass', 'cup', 'fork',
    'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'mirror',
    'dining table', 'window', 'desk', 'toilet', 'door', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator',
    'blender', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
    'hair brush', 'banner', 'blanket', 'branch', 'bridge', 'building-other', 'bush', 'cabinet',
    'cage', 'cardboard', 'carpet', 'ceiling-other', 'ceiling-tile', 'cloth', 'clothes',
    'clouds', 'counter', 'cupboard', 'curtain', 'desk-stuff', 'dirt', 'door-stuff', 'fence',
    'floor-marble', 'floor-other', 'floor-stone', 'floor-tile', 'floor-wood', 'flower', 'fog',
    'food-other', 'fruit', 'furniture-other', 'grass', 'gravel', 'ground-other', 'hill',
    'house', 'leaves', 'light', 'mat', 'metal', 'mirror-stuff', 'moss', 'mountain', 'mud',
    'napkin', 'net', 'paper', 'pavement', 'pillow', 'plant-other', 'plastic', 'platform',
    'playingfield', 'railing', 'railroad', 'river', 'road', 'rock', 'roof', 'rug', 'salad',
    'sand', 'sea', 'shelf', 'sky-other', 'skyscraper', 'snow', 'solid-other', 'stairs',
    'stone', 'straw', 'structural-other', 'table', 'tent', 'textile-other', 'towel', 'tree',
    'vegetable', 'wall-brick', 'wall-concrete', 'wall-other', 'wall-panel', 'wall-stone',
    'wall-tile', 'wall-wood', 'water-other', 'waterdrops', 'window-blind', 'window-other',
    'wood',
)
UNSUPERVISED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)   # things without masks

CUBE_LEVELS = tuple(range(0, 256, 51))   # 0, 51, 102, 153, 204, 255
CUBE_STRIDE = 97                          # coprime with 210: a permutation of the cube


def make_palette(num_classes=NUM_CLASSES):
    """The fixed COCO-Stuff palette (module docstring). Returns [num_classes] [R, G, B]."""
    cube = [(r, g, b) for r in CUBE_LEVELS for g in CUBE_LEVELS for b in CUBE_LEVELS
            if not r == g == b]
    return [list(cube[(CUBE_STRIDE * c) % len(cube)]) for c in range(num_classes)]


PALETTE = make_palette()

# 164k as stored: 0..181 classes, 255 unlabeled; 182..254 undefined.
TABLE_164K = table_from_pairs(256, [(v, v) for v in range(NUM_CLASSES)]
                              + [(IGNORE_LABEL, IGNORE_LABEL)])
# 10k S: 0 unlabeled -> 255, v -> v-1 for 1..182; above 182 undefined.
TABLE_10K = table_from_pairs(256, [(0, IGNORE_LABEL)]
                             + [(v, v - 1) for v in range(1, NUM_CLASSES + 1)])

HINT_164K = ('expected the folder holding images/{train2017,val2017} (COCO train2017.zip, '
             'val2017.zip) and annotations/{train2017,val2017} (stuffthingmaps_trainval2017.zip)')
HINT_10K = ('expected the folder holding images/, annotations/ and imageLists/ as '
            'cocostuff-10k-v1.1.zip unpacks')
NOTES = ['note: values are 0-based (labels.txt index - 1), 255 unlabeled; 11 thing classes '
         'never occur (171 supervised): kazuto\'s published mIoU averages over classes present '
         'in the ground truth']


def _split_164k(root, name):
    image_dir = 'images/' + name + '2017'
    label_dir = 'annotations/' + name + '2017'
    pairs = [Pair(image_dir + '/' + n, label_dir + '/' + n[:-4] + '.png',
                  label_dir + '/' + n[:-4] + '.png')
             for n in sorted_files(os.path.join(root, image_dir), '.jpg')]
    if not pairs:
        raise no_images(os.path.join(root, image_dir), name, '*.jpg')
    return Split(name, pairs, os.path.join(root, image_dir))


def find_splits_164k(root):
    """train (train2017) and val (val2017): the sorted images, each with its stored PNG."""
    return [_split_164k(root, 'train'), _split_164k(root, 'val')]


def _read_ids(path):
    with open(path, encoding='utf-8', errors='replace') as f:
        return [line.split()[0] for line in f if line.split()]


def _split_10k(root, name):
    where = os.path.join(root, 'imageLists', name + '.txt')
    pairs = [Pair('images/%s.jpg' % i, 'annotations/%s.mat' % i, '%s/%s.png' % (LABELS_DIR, i))
             for i in _read_ids(where)]
    if not pairs:
        raise no_images(where, name, 'one image id per line')
    return Split(name, pairs, where)


def find_splits_10k(root):
    """train and test as imageLists/{train,test}.txt list them, both labelled."""
    return [_split_10k(root, 'train'), _split_10k(root, 'test')]


def read_mat_s(path):
    """A COCO-Stuff 10k annotation .mat -> its label map S, [H, W] int64.

    Raises: InputError naming the file when it cannot be read or has no 2-D integer S.
    """
    import scipy.io   # only the .mat datasets need SciPy
    try:
        mat = scipy.io.loadmat(path, variable_names=['S'])
    except Exception as e:   # scipy raises several types (and NotImplementedError for v7.3)
        raise InputError('%s: cannot read .mat file (%s: %s)' % (path, e.__class__.__name__, e))
    if 'S' not in mat:
        raise InputError('%s: no label map S (a COCO-Stuff 10k annotations/*.mat is expected)'
                         % path)
    s = np.asarray(mat['S'])
    if s.ndim != 2 or not (np.issubdtype(s.dtype, np.integer)
                           or (np.issubdtype(s.dtype, np.floating)
                               and np.array_equal(s, np.round(s)))):
        raise InputError('%s: S is not a 2-D integer map (shape %s, %s)' % (path, s.shape,
                                                                           s.dtype))
    return s.astype(np.int64)


SPEC_164K = DatasetSpec(
    name='cocostuff164k', hint=HINT_164K,
    required=('images', 'annotations', 'images/train2017', 'images/val2017',
              'annotations/train2017', 'annotations/val2017'),
    find_splits=find_splits_164k, read_source=read_label, table=TABLE_164K,
    definition='COCO-Stuff 164k values 0..181 and 255', rewrite=False,
    links=('images', 'annotations'), beside=None,
    num_classes=NUM_CLASSES, class_names=list(CLASS_NAMES), palette=PALETTE, server_ids=None,
    notes=NOTES)

SPEC_10K = DatasetSpec(
    name='cocostuff10k', hint=HINT_10K,
    required=('images', 'annotations', 'imageLists', 'imageLists/train.txt',
              'imageLists/test.txt'),
    find_splits=find_splits_10k, read_source=read_mat_s, table=TABLE_10K,
    definition='COCO-Stuff 10k S values 0..182 (0 = unlabeled)', rewrite=True,
    links=('images',), beside=None,
    num_classes=NUM_CLASSES, class_names=list(CLASS_NAMES), palette=PALETTE, server_ids=None,
    notes=NOTES + ['note: kazuto\'s 10k figures are on images and labels warped to 513x513; '
                   'these labels keep the images\' sizes'])
