#!/usr/bin/env python
"""Segment images with DeepLab-v2 ResNet-101 and save colour masks (and more).

  python inference.py IMG_PATH [IMG_PATH ...] MODEL_WEIGHTS [--num-classes 21] [--save-dir DIR]
  python inference.py --export-savedmodel DIR MODEL_WEIGHTS
  python inference.py --export-tflite FILE MODEL_WEIGHTS

IMG_PATH: an image, a directory (its .jpg/.jpeg/.png/.bmp images, sorted) or a list file in
the dataset format (.txt, paths relative to --data-dir; labels ignored). MODEL_WEIGHTS (the
last positional): a checkpoint prefix or a directory (its latest checkpoint). The graph is
built once and handles every image size.
"""
import argparse
import sys
import time

from deeplab_resnet.common import cli
from deeplab_resnet.common.errors import exit_on_input_error
from deeplab_resnet.data import dataset_cli
from deeplab_resnet.predict import litert, memory

EPILOG = """\
outputs, per image, in --save-dir:
  <stem>_mask.png      colour mask (VOC palette; extended past 21 classes), the image's size
  <stem>.png           --save-labels: palette PNG holding the class indices (the format of
                       VOC's SegmentationClass and of evaluate_msc.py --save-dir)
  <stem>_overlay.jpg   --overlay: the mask blended over the image (alpha 0.5)
  <stem>_probs.npy     --save-probs: float16 probabilities [H, W, C] (after the CRF with --crf)
  Inputs with the same stem, and a --save-dir where an output would overwrite an input, are
  refused before any work.

settings: without --num-classes / --img-mean / --class-names / --palette, the values of
  --dataset's descriptor, else of the checkpoint's provenance record (<prefix>.json, written
  by convert.py and train_msc.py) are used, else 21 classes, the Caffe mean and VOC's names
  and colours. A --num-classes that the checkpoint does not have is
  refused (exit status 2), naming both counts.

exit status: 0; 1 when some images could not be read (each named on stderr, the others are
  written); 2 for a missing input or checkpoint, a checkpoint for another class count, or
  bad flags.

SavedModel (--export-savedmodel DIR), in plain TensorFlow 2:
  model = tf.saved_model.load(DIR)
  out = model.signatures['serving_default'](image=tf.constant(rgb))   # uint8 [H, W, 3] RGB
  out['labels']: int32 [H, W]; out['probabilities']: float32 [H, W, C]
  With --tile H,W it does the windows inside its graph and returns out['labels'] only.

LiteRT model (--export-tflite FILE; float32; settings in FILE.json), without TensorFlow:
  from ai_edge_litert.interpreter import Interpreter      # pip install ai-edge-litert
  out = Interpreter(model_path=FILE).get_signature_runner('serving_default')(image=rgb)
  out['labels'], out['probabilities']: as the SavedModel's (docs/evaluation.md)

large images: one that does not fit the memory whole is refused before any work, naming
  --tile H,W (full resolution in windows, each side 8k+1; about the whole image's time
  with the default stride, where windows touch; --tile auto chooses) and --max-side N
  (brought down to N pixels; fast, coarser): docs/evaluation.md.
"""


def get_arguments(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage='%(prog)s [options] IMG_PATH [IMG_PATH ...] MODEL_WEIGHTS\n'
              '       %(prog)s --export-savedmodel DIR [options] MODEL_WEIGHTS\n'
              '       %(prog)s --export-tflite FILE [options] MODEL_WEIGHTS')
    p.add_argument('paths', nargs='+', metavar='IMG_PATH... MODEL_WEIGHTS',
                   help='images, directories or .txt list files, then the checkpoint prefix '
                        'or directory')
    cli.add_model_arguments(p, from_record=True)
    cli.add_precision_argument(p)
    cli.add_max_side_argument(p)
    cli.add_tile_arguments(p)
    p.add_argument('--save-dir', default='./output/',
                   help='where the outputs go (default %(default)s)')
    p.add_argument('--data-dir', default='',
                   help='directory the paths of a list file are relative to')
    dataset_cli.add_dataset_arguments(
        p, 'with --dataset: also segment the images of this split\'s '
           'list (e.g. test)')
    dataset_cli.add_record_class_arguments(p)
    p.add_argument('--save-labels', action='store_true',
                   help='also write <stem>.png, a palette PNG of the class indices')
    p.add_argument('--overlay', action='store_true',
                   help='also write <stem>_overlay.jpg, the mask blended over the image')
    p.add_argument('--save-probs', action='store_true',
                   help='also write <stem>_probs.npy, float16 probabilities [H, W, C]')
    p.add_argument('--scales', type=cli.scales, default=(1.0,),
                   help='input scales fused by max (default 1.0; 1.0,0.75,0.5 for the '
                        'multi-scale model)')
    p.add_argument('--flip', action='store_true',
                   help='average with the prediction of the mirrored image')
    cli.add_deterministic_argument(p)
    p.add_argument('--crf', action='store_true',
                   help='refine the probabilities with a dense CRF (flags below)')
    from deeplab_resnet.predict.crf import (add_crf_arguments, add_workers_argument,
                                            resolve_crf_arguments)
    add_workers_argument(p)
    add_crf_arguments(p)
    p.add_argument('--export-savedmodel', metavar='DIR', default=None,
                   help='write a SavedModel of the network (with --scales and --flip) to DIR, '
                        'a new or empty directory; without IMG_PATH only this is done')
    p.add_argument('--export-tflite', metavar='FILE', default=None,
                   help='write a float32 LiteRT (TensorFlow Lite) model of the network (with '
                        '--scales and --flip; any image size) to FILE and its settings to '
                        'FILE.json, neither of which may exist; it runs with the LiteRT '
                        'interpreter alone (pip install ai-edge-litert); without IMG_PATH '
                        'only this is done')
    args = dataset_cli.parse_with_dataset(p, argv, intermixed=True)
    args.images, args.model_weights = args.paths[:-1], args.paths[-1]
    if args.split_list:
        args.images.append(args.split_list)
    if not args.images and not args.export_savedmodel and not args.export_tflite:
        p.error('give IMG_PATH(s) and MODEL_WEIGHTS (or --export-savedmodel DIR / '
                '--export-tflite FILE, and MODEL_WEIGHTS)')
    conflict = (memory.max_side_conflict(args.max_side, args.crf, args.save_probs)
                or litert.flag_conflict(args))
    if conflict:
        p.error(conflict)
    cli.check_tile_flags(p, args, args.save_probs)
    resolve_crf_arguments(args)   # --crf-params' file: InputError, one line
    return args


@exit_on_input_error
def main(argv=None):
    start = time.time()
    args = get_arguments(argv)
    from deeplab_resnet.predict import segment as inference   # TensorFlow loads after the flags
    return inference.run(args, start=start)


if __name__ == '__main__':
    sys.exit(main())
