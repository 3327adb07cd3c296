"""Cityscapes (fine annotations, 19 train classes): labelIds -> trainIds.

Run it as `python -m dataset.tools cityscapes --root CITYSCAPES [--out DIR]`, ROOT holding
`leftImg8bit/` and `gtFine/` as `leftImg8bit_trainvaltest.zip` and `gtFine_trainvaltest.zip`
unpack (cityscapes-dataset.com, registration needed).

Layout (cityscapesScripts README): leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
with gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png; the _color.png,
_instanceIds.png and _polygons.json beside them are not used. The converted labels keep the
dataset's own name, X_gtFine_labelTrainIds.png (what cityscapesScripts'
preparation/createTrainIdLabelImgs.py writes), beside the originals.

Definition: cityscapesScripts helpers/labels.py (mcordts/cityscapesScripts): label ids 0..33
are stored in labelIds PNGs (uint8; 'license plate' has id -1 and is never drawn into them);
the 19 labels with a trainId 0..18 are trained, every other id -> 255. Names and colours of the
19 are labels.py's `name` and `color`; the server's ids (`id`) map predictions back.
"""
import os

from dataset.builder import (DatasetSpec, Pair, Split, no_images, sorted_files,
                             table_from_pairs)
from deeplab_resnet.common.constants import IGNORE_LABEL
from deeplab_resnet.data.imageio import read_label

NUM_IDS = 34   # labelIds 0..33 (labels.py; 'license plate' -1 never appears in a PNG)

# (id, trainId, name, colour) of the 19 trained labels, labels.py order.
TRAIN_LABELS = (
    (7, 0, 'road', (128, 64, 128)),
    (8, 1, 'sidewalk', (244, 35, 232)),
    (11, 2, 'building', (70, 70, 70)),
    (12, 3, 'wall', (102, 102, 156)),
    (13, 4, 'fence', (190, 153, 153)),
    (17, 5, 'pole', (153, 153, 153)),
    (19, 6, 'traffic light', (250, 170, 30)),
    (20, 7, 'traffic sign', (220, 220, 0)),
    (21, 8, 'vegetation', (107, 142, 35)),
    (22, 9, 'terrain', (152, 251, 152)),
    (23, 10, 'sky', (70, 130, 180)),
    (24, 11, 'person', (220, 20, 60)),
    (25, 12, 'rider', (255, 0, 0)),
    (26, 13, 'car', (0, 0, 142)),
    (27, 14, 'truck', (0, 0, 70)),
    (28, 15, 'bus', (0, 60, 100)),
    (31, 16, 'train', (0, 80, 100)),
    (32, 17, 'motorcycle', (0, 0, 230)),
    (33, 18, 'bicycle', (119, 11, 32)),
)
CLASS_NAMES = [name for _, _, name, _ in TRAIN_LABELS]
PALETTE = [list(colour) for _, _, _, colour in TRAIN_LABELS]
SERVER_IDS = [label_id for label_id, _, _, _ in TRAIN_LABELS]   # trainId -> labelId
# labelId -> trainId: 255 for every id 0..33 not trained; values 34..255 are undefined.
TABLE = table_from_pairs(256, [(i, IGNORE_LABEL) for i in range(NUM_IDS)]
                         + [(i, t) for i, t, _, _ in TRAIN_LABELS])

IMAGE_SUFFIX = '_leftImg8bit.png'
LABEL_SUFFIX = '_gtFine_labelIds.png'
TRAIN_ID_SUFFIX = '_gtFine_labelTrainIds.png'
LABELLED_SPLITS = ('train', 'val')
IMAGE_ONLY_SPLITS = ('test',)   # gtFine/test holds placeholders; the list is image-only

HINT = ('expected the folder holding leftImg8bit/ and gtFine/ as leftImg8bit_trainvaltest.zip '
        'and gtFine_trainvaltest.zip unpack')


def _split(root, split, labelled):
    image_dir = os.path.join('leftImg8bit', split)
    pairs = []
    cities = sorted(os.listdir(os.path.join(root, image_dir)))
    for city in cities:
        for name in sorted_files(os.path.join(root, image_dir, city), IMAGE_SUFFIX):
            stem = name[:-len(IMAGE_SUFFIX)]
            image = '/'.join((image_dir, city, name))
            if labelled:
                label_dir = '/'.join(('gtFine', split, city))
                pairs.append(Pair(image, label_dir + '/' + stem + LABEL_SUFFIX,
                                  label_dir + '/' + stem + TRAIN_ID_SUFFIX))
            else:
                pairs.append(Pair(image, None, None))
    if not pairs:
        raise no_images(os.path.join(root, image_dir), split, '{city}/*' + IMAGE_SUFFIX)
    return Split(split, pairs, os.path.join(root, image_dir))


def find_splits(root):
    """train and val (labelled), and test (image-only) when leftImg8bit/test is there."""
    splits = [_split(root, s, True) for s in LABELLED_SPLITS]
    splits += [_split(root, s, False) for s in IMAGE_ONLY_SPLITS
               if os.path.isdir(os.path.join(root, 'leftImg8bit', s))]
    return splits


SPEC = DatasetSpec(
    name='cityscapes', hint=HINT,
    required=('leftImg8bit', 'gtFine', 'leftImg8bit/train', 'leftImg8bit/val', 'gtFine/train',
              'gtFine/val'),
    find_splits=find_splits, read_source=read_label, table=TABLE,
    definition='Cityscapes labelIds 0..33 (cityscapesScripts labels.py)', rewrite=True,
    links=('leftImg8bit',), beside='gtFine',
    num_classes=len(TRAIN_LABELS), class_names=CLASS_NAMES, palette=PALETTE,
    server_ids=SERVER_IDS,
    notes=['note: trained on trainIds (%s); the server scores labelIds: export predictions '
           'with the descriptor\'s server_ids' % TRAIN_ID_SUFFIX])
