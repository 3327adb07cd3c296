#!/usr/bin/env python
"""Train DeepLab-v2 ResNet-101 with multi-scale inputs (1, 0.75, 0.5; max fusion; four losses).

Resumes from the newest whole snapshot in --snapshot-dir when there is one (everything:
network, momentum, step), but only when that snapshot's provenance record has this command's
class count, data list (by digest), input size, class weights and --top-k-pixels settings
(--force-resume overrides; a snapshot without a record resumes with a warning). Broken snapshots are moved to SNAPSHOT_DIR/corrupt/;
one run at a time per folder (SNAPSHOT_DIR/train.lock). See docs/training.md. --restore-from only initialises the network's variables.
--snapshot-dir is also the TensorBoard log directory.

Every snapshot model.ckpt-<step> gets a provenance record model.ckpt-<step>.json: class count
and names, BGR image mean, input size, scales, ignore label, what the run was initialised from
(carrying a converted caffemodel's file name and SHA-256), the training list (path, entries,
SHA-256 of its sorted image paths, and the image names themselves, ~150 KB for VOC's 10,582,
which evaluation uses to warn about train / evaluation overlap), the class colours and the
test server's ids (from --dataset / --palette), the class weights (path, sha256, values) and
--top-k-pixels settings, the step, the TensorFlow version, the git commit and all flags.

--dataset FILE (a dataset.json) gives --data-dir, --num-classes, --ignore-label, the class
names and colours (and --img-mean where it has one) and the list of its split "train"
(--split NAME for another); a flag given explicitly wins.
"""
import argparse
import sys
import time

from deeplab_resnet.common import cli
from deeplab_resnet.data import datalist, dataset_cli
from deeplab_resnet.common.constants import (CAFFE_SCALE_SET, DEFAULT_INIT_CHECKPOINT,
                                             LR_MULT_ASPP_BIASES, LR_MULT_ASPP_WEIGHTS, OPTIMIZERS,
                                             TRAIN_SCALES)
from deeplab_resnet.common.errors import exit_on_input_error
from deeplab_resnet.runtime.tf_config import is_chief, read_tf_config
from deeplab_resnet.training import runlock
from deeplab_resnet.training.stopping import StopFlag


def get_arguments(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch-size', type=cli.positive_int, default=1,
                   help='images per micro-batch (default %(default)s)')
    cli.add_data_arguments(p, './dataset/train.txt')
    dataset_cli.add_dataset_arguments(
        p, 'with --dataset: train on this split\'s list (default: '
           '"train")')
    p.add_argument('--grad-update-every', type=cli.positive_int, default=10,
                   help='micro-batches whose mean gradient makes one update (Caffe iter_size; '
                        'default %(default)s)')
    p.add_argument('--input-size', type=cli.input_size, default=(321, 321),
                   help='crop size h,w (default 321,321)')
    p.add_argument('--is-training', action='store_true',
                   help='batch norm uses batch statistics and updates its moving averages '
                        '(default: frozen, as DeepLab-v2)')
    p.add_argument('--learning-rate', type=float, default=2.5e-4,
                   help='base learning rate (default %(default)s)')
    p.add_argument('--momentum', type=float, default=0.9,
                   help='momentum (Adam: beta1) (default %(default)s)')
    p.add_argument('--optimizer', choices=OPTIMIZERS, default='momentum',
                   help='momentum SGD (the paper\'s) or Adam (for training from scratch, '
                        'see README) (default %(default)s)')
    p.add_argument('--aspp-lr-mult', type=cli.lr_mults,
                   default=(LR_MULT_ASPP_WEIGHTS, LR_MULT_ASPP_BIASES),
                   help='learning-rate multipliers W,B of the classifier (ASPP) kernels and '
                        'biases (default %g,%g, the paper\'s, for an ImageNet-initialised '
                        'backbone; from scratch see README)'
                        % (LR_MULT_ASPP_WEIGHTS, LR_MULT_ASPP_BIASES))
    p.add_argument('--train-bn-params', action='store_true',
                   help='train batch norm\'s gamma and beta too (default: fixed, as '
                        'DeepLab-v2)')
    p.add_argument('--zero-init-residual', action='store_true',
                   help='from scratch: the last batch norm of every residual branch '
                        '(bn*_branch2c/gamma) starts at 0, so every block starts as the '
                        'identity; needs --train-bn-params')
    p.add_argument('--class-names', default=None, metavar='FILE',
                   help='class names, one per line, for the snapshots\' provenance records '
                        '(default: --dataset\'s, the VOC names for 21 classes, else '
                        'class_<i>)')
    dataset_cli.add_palette_argument(p)
    p.add_argument('--ignore-out-of-range', action='store_true',
                   help='treat label values outside [0, num_classes) as the ignore label '
                        'instead of stopping with an error (the first batch holding one '
                        'stops the run, naming the file)')
    p.add_argument('--force-resume', action='store_true',
                   help='resume from --snapshot-dir even when its snapshot\'s record has '
                        'another class count, data list or input size')
    p.add_argument('--class-weights', default=None, metavar='FILE',
                   help='weight every softmax loss by class with this file\'s weights (python '
                        '-m dataset.tools check --class-weights FILE writes one); the sum is '
                        'still divided by the valid pixels (default: unweighted, as the paper; '
                        'docs/training.md)')
    p.add_argument('--top-k-pixels', type=cli.fraction, default=None, metavar='FRACTION',
                   help='hard pixels: each loss term is the mean of the FRACTION x valid pixels '
                        'with the largest (weighted) losses of each micro-batch (default: every '
                        'pixel, as the paper; docs/training.md)')
    p.add_argument('--top-k-pixels-warmup', type=cli.non_negative_int, default=0,
                   metavar='STEPS',
                   help='with --top-k-pixels: move the fraction from 1 to FRACTION linearly over '
                        'the first STEPS updates (default %(default)s)')
    p.add_argument('--not-restore-last', action='store_true',
                   help='do not restore the classifier (fc1_voc12_*) from --restore-from '
                        '(another class count)')
    cli.add_model_arguments(p)
    cli.add_precision_argument(p)
    cli.add_deterministic_argument(p)
    p.add_argument('--num-steps', type=cli.positive_int, default=20001,
                   help='number of updates (default %(default)s)')
    p.add_argument('--power', type=float, default=0.9,
                   help='poly learning-rate power (default %(default)s)')
    p.add_argument('--random-mirror', action='store_true', help='random left-right flips')
    p.add_argument('--random-scale', action='store_true',
                   help='random scale, uniform in 0.5-1.5 (or from --scale-set)')
    p.add_argument('--scale-set', type=cli.scales, default=None,
                   help='draw the random scale from this set, e.g. %s (the Caffe recipe)'
                        % ','.join('%g' % s for s in CAFFE_SCALE_SET))
    p.add_argument('--random-seed', type=int, default=1234,
                   help='the data order, crops, flips and scales, and the He initialisation: '
                        'the same seed (and --threads) gives the same run, also when stopped '
                        'and resumed (default %(default)s)')
    p.add_argument('--restore-from', default=DEFAULT_INIT_CHECKPOINT,
                   help='initial weights: a checkpoint prefix or a directory (its latest '
                        'checkpoint), e.g. the ImageNet model converted by convert.py '
                        '(default %(default)s, as in the original project); "none": He '
                        'initialisation, from scratch (needs --is-training)')
    p.add_argument('--save-num-images', type=cli.positive_int, default=1,
                   help='rows in the TensorBoard image summary (default %(default)s)')
    p.add_argument('--save-pred-every', type=cli.positive_int, default=1000,
                   help='snapshot and image summary every N steps (default %(default)s)')
    p.add_argument('--snapshot-dir', default='./snapshots/',
                   help='snapshots and TensorBoard logs (default %(default)s)')
    p.add_argument('--keep-snapshots', type=cli.positive_int, default=10, metavar='N',
                   help='keep the newest N snapshots, delete older ones (default %(default)s; '
                        'a ResNet-101 snapshot is ~170 MB plus ~170 MB per optimizer slot)')
    p.add_argument('--weight-decay', type=float, default=0.0005,
                   help='L2 weight decay on convolution kernels (default %(default)s)')
    p.add_argument('--log-every', type=cli.positive_int, default=1,
                   help='print a progress line every N steps (default %(default)s)')
    p.add_argument('--scales', type=cli.scales, default=TRAIN_SCALES,
                   help='input scales of the towers, fused by max (default 1.0,0.75,0.5)')
    p.add_argument('--num-replicas', type=cli.num_replicas, default=1,
                   help='data-parallel replicas in this process: N GPUs, or "all" of them '
                        '(MirroredStrategy); without a GPU, N logical CPU devices. '
                        '--batch-size is per replica. With TF_CONFIG set, every worker uses '
                        'all its GPUs (default %(default)s)')
    p.add_argument('--sync-batch-norm', action='store_true',
                   help='with --is-training on several replicas, batch statistics over the '
                        'global batch (default: each replica\'s own)')
    p.add_argument('--worker-timeout', type=cli.positive_int, default=600, metavar='SECONDS',
                   help='with TF_CONFIG, stop with an error when the other workers do not '
                        'answer within this time (default %(default)s)')
    p.add_argument('--val-list', default=None, metavar='LIST',
                   help='validate on this labelled list (paths relative to --data-dir) every '
                        '--val-every steps and at the end, as evaluate_msc.py does: mIoU and '
                        'per-class IoU in the log and TensorBoard; the best snapshot is kept '
                        'in SNAPSHOT_DIR/best')
    p.add_argument('--val-every', type=cli.positive_int, default=1000, metavar='N',
                   help='steps between validations (default %(default)s)')
    p.add_argument('--val-scales', type=cli.scales, default=(1.0,),
                   help='input scales of the validation (default 1.0: single-scale, cheap)')
    p.add_argument('--val-images', type=cli.non_negative_int, default=3, metavar='N',
                   help='show the first N images of --val-list as image | ground truth | '
                        'prediction in TensorBoard at every validation (default %(default)s)')
    args = dataset_cli.parse_with_dataset(p, argv, ('train',))
    if args.restore_from.lower() == 'none' and not args.is_training:
        p.error('--restore-from none trains from scratch: add --is-training (frozen batch norm '
                'keeps its initial statistics 0 / 1 and the loss diverges)')
    if args.zero_init_residual and not args.train_bn_params:
        p.error('--zero-init-residual needs --train-bn-params (a gamma fixed at 0 would '
                'switch the residual branches off for good)')
    if args.top_k_pixels_warmup and args.top_k_pixels is None:
        p.error('--top-k-pixels-warmup needs --top-k-pixels')
    if args.batch_size * args.grad_update_every < 1:
        p.error('batch size must be positive')
    return args


@exit_on_input_error
def main(argv=None):
    started = time.time()
    args = get_arguments(argv)
    # A signal before the first update: one line, exit at once. The folder's lease (one run
    # per folder, the folder writable) and the list are checked before TensorFlow loads.
    chief = is_chief(read_tf_config())
    with StopFlag() as stop, runlock.acquire(args.snapshot_dir, chief) as lease:
        datalist.require_list(args.data_list)
        from deeplab_resnet.training import trainer
        return trainer.train(args, started=started, stop=stop, lease=lease)


if __name__ == '__main__':
    sys.exit(main())
