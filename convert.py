#!/usr/bin/env python
"""Convert DeepLab-v2 ResNet-101 weights into a TensorFlow checkpoint: a Caffe .caffemodel, or
a PyTorch .pth of kazuto1011/deeplab-pytorch (told apart by content, not by the extension).

  python convert.py MODEL.caffemodel --save-dir DIR [--num-classes N] [--reinit-aspp]
  python convert.py MODEL.pth --save-dir DIR

Writes DIR/model.ckpt (restores into deeplab_resnet.DeepLabResNetModel by variable name) and
DIR/model.ckpt.json, its provenance record (class count, source file and SHA-256, BGR channel
order, image mean, ignore label, class names, TensorFlow version, git commit, and what it was
trained on: --trained-on LIST_OR_NAME, or VOC 2012 train+val for the authors' release, or the
training set of kazuto's released .pth files). Neither Caffe nor PyTorch is needed.
"""
import argparse

from deeplab_resnet.common import cli
from deeplab_resnet.common.errors import InputError, exit_on_input_error

EPILOG = """\
formats (told apart by content):
  a Caffe .caffemodel (binary NetParameter), or a PyTorch file written by torch.save (the
  zip archive of PyTorch >= 1.6 or the older single stream) holding a state dict of
  kazuto1011/deeplab-pytorch's DeepLabV2 (plain, MSC "base.", DataParallel "module.", or
  under "state_dict" / "model"), e.g. his releases
  deeplabv2_resnet101_msc-{cocostuff164k-100000,cocostuff10k-20000,vocaug-20000}.pth.
  A .pth is read without PyTorch and without running anything it holds; its batch norm
  epsilon is assumed to be 1e-5 (a state dict does not store it).

classifier (ASPP) and class count:
  By default the checkpoint has the file's classifier and class count (from
  fc1_voc12_c0 or aspp.c0; 21 for the PASCAL VOC models, 182 for COCO-Stuff).
  A caffemodel without ASPP layers, such as DeepLab's ImageNet initialisation
  (init.caffemodel), is converted with a freshly initialised ASPP (weights drawn from
  N(0, 0.01^2), the DeepLab prototxt's gaussian filler, biases 0, --seed) for --num-classes
  classes (default 21), and a warning: train it before use.
  A caffemodel whose ASPP has another class count than --num-classes is refused; add
  --reinit-aspp to keep its backbone and start a fresh --num-classes classifier instead
  (e.g. to fine-tune the VOC model on another dataset).

A caffemodel's multi-scale layer copies (conv1_res075, ..., which share the parameters) and
layers the network does not use (fc1000, ...) are ignored. A .pth of kazuto's releases is
recorded as trained on its training set (from its file name) unless --trained-on is given.
"""


def get_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert DeepLab-v2 ResNet-101 weights (a Caffe .caffemodel or a PyTorch '
                    '.pth of\nkazuto1011/deeplab-pytorch) into a TensorFlow checkpoint '
                    '(DIR/model.ckpt) with its\nprovenance record (DIR/model.ckpt.json).',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', metavar='MODEL',
                        help='the weights: a binary .caffemodel, or a .pth (torch.save) of '
                             'kazuto1011/deeplab-pytorch\'s DeepLab-v2; told apart by content')
    parser.add_argument('prototxt', nargs='?',
                        help='the network definition (.prototxt) of a .caffemodel: accepted '
                             'for compatibility with caffe-tensorflow style command lines and '
                             'ignored (the architecture is fixed); it may also come first. '
                             'Refused with a .pth')
    parser.add_argument('--save-dir', required=True,
                        help='output directory for model.ckpt and model.ckpt.json')
    cli.add_num_classes_argument(parser, None, 'classes of the ASPP classifier (default: the '
                                                'file\'s, or 21 when it has no ASPP layers)')
    parser.add_argument('--reinit-aspp', action='store_true',
                        help='discard the file\'s ASPP layers and initialise a fresh '
                             'classifier for --num-classes classes')
    parser.add_argument('--trained-on', default=None, metavar='LIST_OR_NAME',
                        help='what the weights were trained on, for its provenance record: '
                             'a list file (its image names are recorded, so evaluation can '
                             'warn about overlap) or a free name such as "VOC2012 trainval". '
                             'The authors\' VOC 2012 release (*train2_iter_20000*) is '
                             'recorded as trained on VOC 2012 train+val without it, kazuto\'s '
                             '.pth releases as trained on their training sets')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed of a freshly initialised ASPP (default 0)')
    args = parser.parse_args(argv)
    # caffe-tensorflow puts the prototxt first: accept either order.
    if (args.prototxt and args.model.endswith('.prototxt')
            and not args.prototxt.endswith('.prototxt')):
        args.model, args.prototxt = args.prototxt, args.model
    return args


@exit_on_input_error
def main(argv=None):
    args = get_arguments(argv)
    from deeplab_resnet.weights import pth
    # By content; a file that is neither a PyTorch file nor readable, named .pth / .pt, gets
    # the PyTorch reader's message rather than the Caffe reader's.
    if pth.sniff(args.model) or args.model.lower().endswith(('.pth', '.pt')):
        if args.prototxt:
            raise InputError('%s: a PyTorch file needs no prototxt, but %s was given with it '
                             '(a prototxt goes with a .caffemodel)' % (args.model, args.prototxt))
        from deeplab_resnet.weights import pth_to_checkpoint as conversion
    else:
        from deeplab_resnet.weights import to_checkpoint as conversion
    conversion.convert(args.model, args.save_dir, num_classes=args.num_classes,
                       reinit_aspp=args.reinit_aspp, seed=args.seed,
                       trained_on=args.trained_on)


if __name__ == '__main__':
    main()
