"""Dataset preparation and checking.

  python -m dataset.tools voc --voc-root VOCdevkit/VOC2012 --sbd-root benchmark_RELEASE [--out DIR]
      Builds PASCAL VOC 2012 + SBD 'SegmentationClassAug' index PNGs and the lists
      train_aug.txt (10,582 on the real data), train.txt (1,464), val.txt (1,449) and, when VOC
      has ImageSets/Segmentation/test.txt, test.txt (image-only lines).

  python -m dataset.tools cityscapes|ade20k|cocostuff164k|cocostuff10k --root ROOT [--out DIR]
      Converts a download as it unpacks (docs/datasets.md): index PNGs of the mapped labels,
      the lists (cityscapes train/val/test, ade20k train/val, cocostuff164k train/val,
      cocostuff10k train/test) and dataset.json (--dataset FILE of the scripts) in DIR
      (default ROOT/deeplab); a second run skips the labels already written.

  python -m dataset.tools rgb2index --in DIR_OR_FILE --out DIR [--palette FILE]
      Converts RGB colour masks to index PNGs (VOC palette by default; void -> 255).

  python -m dataset.tools check --data-dir D --data-list L --num-classes N [--ignore-label 255]
  python -m dataset.tools check --dataset dataset.json [--split train]
      Validates a data directory and list before training; exit status 2 on any problem.
      --class-weights OUT [--weights-method median-frequency|inverse-log] also writes class
      weights for train_msc.py --class-weights (docs/training.md).

Every list is in the format of deeplab_resnet.data.datalist: 'image_path label_path' per line,
paths relative to the data directory (a leading '/' does not make them absolute).

This module is the command line only; the work of each command is in its own module:
dataset.voc_aug, dataset.rgb2index, dataset.check, and dataset.builder (the one conversion path)
with one description per dataset: dataset.cityscapes, dataset.ade20k, dataset.cocostuff.
"""
import argparse
import signal
import sys

from dataset import ade20k, builder, check, cityscapes, cocostuff, rgb2index, voc_aug
from deeplab_resnet.common.cli import add_num_classes_argument
from deeplab_resnet.common.constants import CLASS_WEIGHT_METHODS, IGNORE_LABEL
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data import dataset_cli

CHECK_SPLIT = 'train'   # the split check reads with --dataset and no --split / --data-list


def _cmd_voc(args):
    result = voc_aug.build_voc_aug(args.voc_root, args.sbd_root, args.out,
                                   copy_images=args.copy_images, progress=not args.quiet)
    for line in voc_aug.format_summary(result):
        print(line)
    return 0


DATASETS = (cityscapes.SPEC, ade20k.SPEC, cocostuff.SPEC_164K, cocostuff.SPEC_10K)


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def _cmd_dataset(args):
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        result = builder.build(args.spec, args.root, args.out, progress=not args.quiet,
                               scan=not getattr(args, 'no_scan', False))
    except KeyboardInterrupt:
        print('\nstopped: every label written so far is whole; the same command again skips '
              'them and finishes the rest', file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    for line in builder.format_summary(result):
        print(line)
    return 0


def _cmd_rgb2index(args):
    if args.palette:
        colours, indices = rgb2index.read_palette_file(args.palette)
    else:
        colours, indices = rgb2index.default_palette(args.num_classes)
    written, problems = rgb2index.convert_rgb_masks(args.inp, args.out, colours, indices,
                                                    args.unknown_to_ignore,
                                                    progress=not args.quiet)
    for message in problems:
        print('error: %s' % message, file=sys.stderr)
    ignored = [(s, n) for s, _, n in written if n]
    for src, n in ignored:
        print('warning: %s: %d pixel(s) of unknown colours set to %d' % (src, n, IGNORE_LABEL),
              file=sys.stderr)
    print('converted %d mask(s) to %s, %d failed' % (len(written), args.out, len(problems)))
    used = rgb2index.write_used_palette(args.out, colours, indices)
    print('palette used: %s (pass it as --palette to draw masks in these colours)' % used
          if used else 'palette used: not written (its classes are not 0..C-1 without gaps)')
    return 2 if problems else 0


def _cmd_check(args):
    shown = [0]

    def on_problem(message):
        shown[0] += 1
        if shown[0] <= args.max_shown:
            print('problem: %s' % message, file=sys.stderr)
        elif shown[0] == args.max_shown + 1:
            print('problem: ... (further problems counted, not shown)', file=sys.stderr)

    settings = check.resolve_settings(args)
    report = check.check_dataset(settings.data_dir, settings.data_list, settings.num_classes,
                                 settings.ignore_label, need_labels=not args.allow_unlabelled,
                                 progress=not args.quiet, on_problem=on_problem)
    for line in check.format_check_summary(report, settings.class_names, settings.data_list):
        print(line)
    if args.write_descriptor:
        if report.problems:
            print('descriptor: not written (%d problem(s) first)' % len(report.problems))
        else:
            desc = check.write_descriptor(args.write_descriptor, settings, report,
                                          args.use_data_mean)
            print('descriptor: %s (img_mean: %s; the data\'s mean kept as data_mean)'
                  % (desc.path, 'the data\'s (--use-data-mean)' if args.use_data_mean
                     else 'the network\'s'))
    if args.class_weights:
        _write_class_weights(args, settings, report)
    return 2 if report.problems else 0


def _write_class_weights(args, settings, report):
    if report.problems:
        print('class weights: not written (%d problem(s) first)' % len(report.problems))
        return
    weights, absent = check.write_class_weights(args.class_weights, args.weights_method,
                                                settings, report)
    names = settings.class_names
    for c in absent:
        print('warning: class %d (%s) has no pixel in %s: weight 0 (it is not learned with '
              'these weights)' % (c, names[c], settings.data_list), file=sys.stderr)
    print('class weights (%s): %s' % (args.weights_method, ', '.join(
        '%d %s %.4g' % (c, names[c], w) for c, w in enumerate(weights))))
    print('class weights: %s (train_msc.py --class-weights %s)'
          % (args.class_weights, args.class_weights))


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m dataset.tools',
                                     description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', metavar='command')
    sub.required = True

    p = sub.add_parser('voc', help='build VOC 2012 + SBD SegmentationClassAug and lists')
    p.add_argument('--voc-root', required=True, help='VOCdevkit/VOC2012')
    p.add_argument('--sbd-root', required=True, help='benchmark_RELEASE (or its dataset/)')
    p.add_argument('--out', default=None,
                   help='data directory to write (default: the VOC root). Elsewhere, '
                        'JPEGImages is linked to VOC\'s (or copied with --copy-images)')
    p.add_argument('--copy-images', action='store_true',
                   help='copy the listed images into --out instead of a symlink')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    p.set_defaults(func=_cmd_voc)

    for spec in DATASETS:
        p = sub.add_parser(spec.name, help='convert a %s download: labels, lists, dataset.json'
                           % spec.name)
        p.add_argument('--root', required=True, help='the download as it unpacks (%s)'
                       % spec.hint.replace('%', '%%'))
        p.add_argument('--out', default=None,
                       help='data directory to write: lists, dataset.json, converted labels, '
                            'links to ROOT\'s images (default: ROOT/%s)' % builder.DEFAULT_OUT)
        if not spec.rewrite:
            p.add_argument('--no-scan', action='store_true',
                           help='list the stored labels without decoding each to check its '
                                'values and size')
        p.add_argument('--quiet', action='store_true', help='no progress line')
        p.set_defaults(func=_cmd_dataset, spec=spec)

    p = sub.add_parser('rgb2index', help='convert RGB colour masks to index PNGs')
    p.add_argument('--in', dest='inp', required=True, help='a colour mask file or a folder')
    p.add_argument('--out', required=True, help='output folder (<name>.png each)')
    p.add_argument('--palette', default=None,
                   help='palette file, one "R G B" line per class (optionally "R G B INDEX"); '
                        'default: the VOC palette with void (224,224,192) -> 255')
    add_num_classes_argument(p, help='classes of the default VOC palette (default %(default)s)')
    p.add_argument('--unknown-to-ignore', action='store_true',
                   help='map colours not in the palette to %d instead of failing' % IGNORE_LABEL)
    p.add_argument('--quiet', action='store_true', help='no progress line')
    p.set_defaults(func=_cmd_rgb2index)

    p = sub.add_parser('check', help='validate a data dir and list before training')
    p.add_argument('--data-dir', default=None, help='required unless --dataset gives it')
    p.add_argument('--data-list', default=None, help='required unless --dataset gives it')
    add_num_classes_argument(p, None, 'number of classes, background included (required '
                                      'unless --dataset gives it)')
    p.add_argument('--ignore-label', type=int, default=IGNORE_LABEL)
    dataset_cli.add_dataset_arguments(
        p, 'with --dataset: check this split\'s list (default: '
           '"%s")' % CHECK_SPLIT)
    p.add_argument('--class-names', default=None,
                   help='one name per line (default: the descriptor\'s, else '
                        'DATA_DIR/class_names.txt when it matches, VOC names for 21 classes)')
    p.add_argument('--write-descriptor', default=None, metavar='FILE',
                   help='write a dataset.json for this data (when no problem is found): the '
                        'list as a split named after it, names, colours (--palette, the '
                        'descriptor\'s or VOC\'s), the measured mean as data_mean')
    p.add_argument('--palette', default=None,
                   help='palette file ("R G B [INDEX]" per class) for --write-descriptor')
    p.add_argument('--use-data-mean', action='store_true',
                   help='with --write-descriptor: make the data\'s mean the img_mean the '
                        'network subtracts (default: keep the network\'s Caffe mean, right '
                        'when fine-tuning from the released weights)')
    p.add_argument('--allow-unlabelled', action='store_true',
                   help='accept image-only lines (a test list)')
    p.add_argument('--class-weights', default=None, metavar='OUT',
                   help='write class weights for train_msc.py --class-weights to this JSON '
                        'file (when no problem is found; see docs/training.md)')
    p.add_argument('--weights-method', choices=CLASS_WEIGHT_METHODS,
                   default=CLASS_WEIGHT_METHODS[0],
                   help='with --class-weights: median-frequency (Eigen and Fergus: median '
                        'frequency / the class\'s frequency in the images holding it) or '
                        'inverse-log (ENet: 1 / ln(1.02 + the class\'s share of the '
                        'pixels)) (default %(default)s)')
    p.add_argument('--max-shown', type=int, default=50,
                   help='problems printed (all are counted; default %(default)s)')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    p.set_defaults(func=_cmd_check)
    return parser


def parse_arguments(argv=None):
    """The command line; for check, --dataset FILE's values are the defaults of its flags
    (dataset_cli.apply_dataset), and --data-dir, --data-list, --num-classes are required
    without it.
    Raises: InputError for a missing or malformed descriptor, or a split it lacks."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    check_parser = parser._subparsers._group_actions[0].choices['check']
    d = split = None
    if argv[:1] == ['check']:
        d, split = dataset_cli.apply_dataset(check_parser, argv[1:], (CHECK_SPLIT,))
    args = parser.parse_args(argv)
    if args.command == 'check':
        dataset_cli.finish_dataset(check_parser, args, d, split)
        missing = [flag for flag, dest in (('--data-dir', 'data_dir'), ('--data-list',
                                                                       'data_list'),
                                           ('--num-classes', 'num_classes'))
                   if getattr(args, dest) is None]
        if missing:
            raise InputError('check: %s needed (or --dataset FILE)' % ', '.join(missing))
    return args


def main(argv=None):
    """Returns the exit status: 0 ok, 2 on bad input (one 'error: ...' line) or problems."""
    try:
        args = parse_arguments(argv)
        return args.func(args)
    except InputError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
