"""ADE20K / MIT SceneParsing (ADEChallengeData2016, 150 classes): 0 -> 255, v -> v-1.

Run it as `python -m dataset.tools ade20k --root ADEChallengeData2016 [--out DIR]`, ROOT as
`ADEChallengeData2016.zip` (http://data.csail.mit.edu/places/ADEchallenge/) unpacks.

Layout (CSAILVision/sceneparsing README): images/{training,validation}/ADE_{train,val}_%08d.jpg
with annotations/{training,validation}/ADE_{train,val}_%08d.png (train 20,210, val 2,000).
Converted labels: OUT/labels/{training,validation}/ADE_*.png.

Definition (sceneparsing README): the annotation PNGs hold 0..150, "0 refers to 'other objects'.
We do not consider those pixels in our evaluation"; 1..150 are the classes of objectInfo150
(Idx 1..150). Here 0 -> 255 (ignored) and v -> v-1, so class c is objectInfo150's Idx c+1 and
the server's id of class c is c+1 (`server_ids`). Names: the first name of each objectInfo150
entry (objectInfo150.txt: "wall", "building, edifice" -> "building", ...), in Idx order.
Colours: the 150 colours of sceneparsing's visualizationCode/color150.mat, as tensorflow/models
research/deeplab/utils/get_dataset_colormap.py lists them (create_ade20k_label_colormap, rows
1..150; its row 0 is 'other'). The official list gives road (6) and skyscraper (48) the same
colour, (140, 140, 140); it is kept as published.
"""
import os

from dataset.builder import (LABELS_DIR, DatasetSpec, Pair, Split, no_images, sorted_files,
                             table_from_pairs)
from deeplab_resnet.common.constants import IGNORE_LABEL
from deeplab_resnet.data.imageio import read_label

NUM_CLASSES = 150

# objectInfo150 order (Idx 1..150 -> class 0..149), first name of each entry.
CLASS_NAMES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane',
    'grass', 'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant',
    'curtain', 'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror',
    'rug', 'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter',
    'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs',
    'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier',
    'awning', 'streetlight', 'booth', 'television', 'airplane', 'dirt track', 'apparel',
    'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage',
    'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything',
    'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike',
    'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name', 'microwave', 'pot',
    'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood',
    'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate',
    'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag',
)

# color150 (RGB), class 0..149.
PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),  # 0..4
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),  # 5..9
    (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),  # 10..14
    (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),  # 15..19
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),  # 20..24
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),  # 25..29
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),  # 30..34
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),  # 35..39
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),  # 40..44
    (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),  # 45..49
    (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),  # 50..54
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),  # 55..59
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),  # 60..64
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),  # 65..69
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),  # 70..74
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),  # 75..79
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),  # 80..84
    (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),  # 85..89
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),  # 90..94
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),  # 95..99
    (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),  # 100..104
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),  # 105..109
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),  # 110..114
    (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),  # 115..119
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),  # 120..124
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),  # 125..129
    (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),  # 130..134
    (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),  # 135..139
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),  # 140..144
    (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),  # 145..149
)

# stored 0 ('other') -> 255, v -> v-1 for v in 1..150; 151..255 are undefined.
TABLE = table_from_pairs(256, [(0, IGNORE_LABEL)] + [(v, v - 1) for v in range(1, 151)])
SERVER_IDS = list(range(1, NUM_CLASSES + 1))   # class c -> objectInfo150 Idx c+1

SPLITS = (('train', 'training', 'ADE_train_'), ('val', 'validation', 'ADE_val_'))
HINT = ('expected ADEChallengeData2016/ holding images/ and annotations/ as '
        'ADEChallengeData2016.zip unpacks')


def _split(root, name, folder, prefix):
    image_dir = 'images/' + folder
    pairs = []
    for image in sorted_files(os.path.join(root, image_dir), '.jpg'):
        if not image.startswith(prefix):
            continue
        stem = image[:-len('.jpg')]
        pairs.append(Pair(image_dir + '/' + image, 'annotations/%s/%s.png' % (folder, stem),
                          '%s/%s/%s.png' % (LABELS_DIR, folder, stem)))
    if not pairs:
        raise no_images(os.path.join(root, image_dir), name, prefix + '*.jpg')
    return Split(name, pairs, os.path.join(root, image_dir))


def find_splits(root):
    """train (images/training) and val (images/validation), each image with its annotation."""
    return [_split(root, *s) for s in SPLITS]


SPEC = DatasetSpec(
    name='ade20k', hint=HINT,
    required=('images', 'annotations', 'images/training', 'images/validation',
              'annotations/training', 'annotations/validation'),
    find_splits=find_splits, read_source=read_label, table=TABLE,
    definition='ADE20K SceneParsing values 0..150 (0 = other)', rewrite=True,
    links=('images',), beside=None,
    num_classes=NUM_CLASSES, class_names=list(CLASS_NAMES), palette=[list(c) for c in PALETTE],
    server_ids=SERVER_IDS,
    notes=['note: ADE20K\'s 0 ("other", not scored) is %d here and class c is objectInfo150 '
           'Idx c+1 (the server\'s ids: server_ids)' % IGNORE_LABEL])
