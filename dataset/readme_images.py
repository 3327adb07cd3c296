"""Regenerates the README's pictures: `python -m dataset.readme_images --demo-dir demo_run`.

- images/colour_scheme.png: the VOC colour legend (drawn with matplotlib from colormap.py);
- images/mask.png: image | colour mask of the first demo inference output;
- images/summary.png: the last TensorBoard image summary of the demo run.
"""
import argparse
import glob
import io
import os
import sys

import numpy as np
from PIL import Image

from deeplab_resnet.colormap import label_colours
from deeplab_resnet.constants import VOC_CLASS_NAMES


def colour_scheme(path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colours = label_colours(len(VOC_CLASS_NAMES)) / 255.0
    fig, ax = plt.subplots(figsize=(4.2, 6.3), dpi=100)
    for i, (name, colour) in enumerate(zip(VOC_CLASS_NAMES, colours)):
        ax.add_patch(plt.Rectangle((0, -i - 0.9), 1, 0.8, color=colour, ec='grey', lw=0.5))
        ax.text(1.3, -i - 0.5, '%2d  %s' % (i, name), va='center', family='monospace')
    ax.set_xlim(0, 5)
    ax.set_ylim(-len(VOC_CLASS_NAMES), 0)
    ax.axis('off')
    ax.set_title('PASCAL VOC colour scheme')
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def mask_figure(demo_dir, path):
    masks = sorted(glob.glob(os.path.join(demo_dir, 'inference', '*_mask.png')))
    if not masks:
        return False
    stem = os.path.basename(masks[0])[:-len('_mask.png')]
    image = Image.open(os.path.join(demo_dir, 'data', 'JPEGImages', stem + '.jpg'))
    mask = Image.open(masks[0]).convert('RGB')
    row = np.concatenate([np.asarray(image.convert('RGB')), np.asarray(mask)], axis=1)
    Image.fromarray(row).resize((row.shape[1] * 3, row.shape[0] * 3), Image.NEAREST).save(path)
    return True


def summary_figure(demo_dir, path):
    import tensorflow as tf
    events = sorted(glob.glob(os.path.join(demo_dir, 'snapshots', 'events.*')))
    last = None
    for name in events:
        for event in tf.compat.v1.train.summary_iterator(name):
            for value in event.summary.value:
                if value.HasField('image') and value.tag.endswith('/0'):
                    last = value.image.encoded_image_string
    if last is None:
        return False
    image = Image.open(io.BytesIO(last))
    image.resize((image.width * 3, image.height * 3), Image.NEAREST).save(path)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--demo-dir', default='demo_run', help='output folder of `make demo`')
    p.add_argument('--out', default='images', help='where to write the pictures')
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    colour_scheme(os.path.join(args.out, 'colour_scheme.png'))
    wrote = ['colour_scheme.png']
    if mask_figure(args.demo_dir, os.path.join(args.out, 'mask.png')):
        wrote.append('mask.png')
    if summary_figure(args.demo_dir, os.path.join(args.out, 'summary.png')):
        wrote.append('summary.png')
    print('wrote %s in %s' % (', '.join(wrote), args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
