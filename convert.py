#!/usr/bin/env python
"""Convert a Caffe DeepLab-v2 ResNet-101 .caffemodel into a TensorFlow checkpoint.

  python convert.py MODEL.caffemodel --save-dir DIR [--num-classes N] [--reinit-aspp]

Writes DIR/model.ckpt (restores into deeplab_resnet.DeepLabResNetModel by variable name) and
DIR/model.ckpt.json, its provenance record (class count, source file and SHA-256, BGR channel
order, image mean, ignore label, class names, TensorFlow version, git commit, and what it was
trained on: --trained-on LIST_OR_NAME, or VOC 2012 train+val for the authors' release).
No Caffe installation is needed.
"""
import argparse

from deeplab_resnet.common import cli
from deeplab_resnet.common.errors import exit_on_input_error

EPILOG = """\
classifier (ASPP) and class count:
  By default the checkpoint has the caffemodel's classifier and class count (from
  fc1_voc12_c0; 21 for the PASCAL VOC models).
  A caffemodel without ASPP layers, such as DeepLab's ImageNet initialisation
  (init.caffemodel), is converted with a freshly initialised ASPP (weights drawn from
  N(0, 0.01^2), the DeepLab prototxt's gaussian filler, biases 0, --seed) for --num-classes
  classes (default 21), and a warning: train it before use.
  A caffemodel whose ASPP has another class count than --num-classes is refused; add
  --reinit-aspp to keep its backbone and start a fresh --num-classes classifier instead
  (e.g. to fine-tune the VOC model on another dataset).

The multi-scale models' layer copies (conv1_res075, ..., which share the parameters) and
layers the network does not use (fc1000, ...) are ignored.
"""


def get_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a Caffe DeepLab-v2 ResNet-101 .caffemodel into a TensorFlow '
                    'checkpoint\n(DIR/model.ckpt) with its provenance record '
                    '(DIR/model.ckpt.json).',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('caffemodel', help='the binary .caffemodel (weights) file')
    parser.add_argument('prototxt', nargs='?',
                        help='the network definition (.prototxt): accepted for compatibility '
                             'with caffe-tensorflow style command lines and ignored (the '
                             'architecture is fixed); it may also come first')
    parser.add_argument('--save-dir', required=True,
                        help='output directory for model.ckpt and model.ckpt.json')
    cli.add_num_classes_argument(parser, None, 'classes of the ASPP classifier (default: the '
                                                'caffemodel\'s, or 21 when it has no ASPP layers)')
    parser.add_argument('--reinit-aspp', action='store_true',
                        help='discard the caffemodel\'s ASPP layers and initialise a fresh '
                             'classifier for --num-classes classes')
    parser.add_argument('--trained-on', default=None, metavar='LIST_OR_NAME',
                        help='what the caffemodel was trained on, for its provenance record: '
                             'a list file (its image names are recorded, so evaluation can '
                             'warn about overlap) or a free name such as "VOC2012 trainval". '
                             'The authors\' VOC 2012 release (*train2_iter_20000*) is '
                             'recorded as trained on VOC 2012 train+val without it')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed of a freshly initialised ASPP (default 0)')
    args = parser.parse_args(argv)
    # caffe-tensorflow puts the prototxt first: accept either order.
    if (args.prototxt and args.caffemodel.endswith('.prototxt')
            and not args.prototxt.endswith('.prototxt')):
        args.caffemodel, args.prototxt = args.prototxt, args.caffemodel
    return args


@exit_on_input_error
def main(argv=None):
    args = get_arguments(argv)
    from deeplab_resnet.weights import to_checkpoint as conversion
    conversion.convert(args.caffemodel, args.save_dir, num_classes=args.num_classes,
                       reinit_aspp=args.reinit_aspp, seed=args.seed,
                       trained_on=args.trained_on)


if __name__ == '__main__':
    main()
