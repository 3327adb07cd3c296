"""Dataset preparation and checking.

  python -m dataset.tools voc --voc-root VOCdevkit/VOC2012 --sbd-root benchmark_RELEASE [--out DIR]
      Builds PASCAL VOC 2012 + SBD 'SegmentationClassAug' index PNGs and the lists
      train_aug.txt (10,582 on the real data), train.txt (1,464), val.txt (1,449) and, when VOC
      has ImageSets/Segmentation/test.txt, test.txt (image-only lines).

  python -m dataset.tools rgb2index --in DIR_OR_FILE --out DIR [--palette FILE]
      Converts RGB colour masks to index PNGs (VOC palette by default; void -> 255).

  python -m dataset.tools check --data-dir D --data-list L --num-classes N [--ignore-label 255]
  python -m dataset.tools check --dataset dataset.json [--split train]
      Validates a data directory and list before training; exit status 2 on any problem.

Every list is in the format of deeplab_resnet.datalist: 'image_path label_path' per line,
paths relative to the data directory (a leading '/' does not make them absolute).

This module is the command line only; the work of each command is in its own module:
dataset.voc_aug, dataset.rgb2index, dataset.check.
"""
import argparse
import sys

from dataset import check, rgb2index, voc_aug
from deeplab_resnet import cli
from deeplab_resnet.cli import add_num_classes_argument
from deeplab_resnet.constants import IGNORE_LABEL
from deeplab_resnet.errors import InputError

CHECK_SPLIT = 'train'   # the split check reads with --dataset and no --split / --data-list


def _cmd_voc(args):
    result = voc_aug.build_voc_aug(args.voc_root, args.sbd_root, args.out,
                                   copy_images=args.copy_images, progress=not args.quiet)
    for line in voc_aug.format_summary(result):
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
    return 2 if problems else 0


def _cmd_check(args):
    shown = [0]

    def on_problem(message):
        shown[0] += 1
        if shown[0] <= args.max_shown:
            print('problem: %s' % message, file=sys.stderr)
        elif shown[0] == args.max_shown + 1:
            print('problem: ... (further problems counted, not shown)', file=sys.stderr)

    d = args.descriptor
    if 'class_names' in args.from_dataset and len(d.class_names) == args.num_classes:
        names = d.class_names
    else:
        names = check.class_names_for(args.data_dir, args.num_classes, args.class_names)
    report = check.check_dataset(args.data_dir, args.data_list, args.num_classes,
                                 args.ignore_label, need_labels=not args.allow_unlabelled,
                                 progress=not args.quiet, on_problem=on_problem)
    for line in check.format_check_summary(report, names, args.data_list):
        print(line)
    return 2 if report.problems else 0


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
    cli.add_dataset_arguments(p, 'with --dataset: check this split\'s list (default: '
                                 '"%s")' % CHECK_SPLIT)
    p.add_argument('--class-names', default=None,
                   help='one name per line (default: DATA_DIR/class_names.txt when it matches, '
                        'VOC names for 21 classes)')
    p.add_argument('--allow-unlabelled', action='store_true',
                   help='accept image-only lines (a test list)')
    p.add_argument('--max-shown', type=int, default=50,
                   help='problems printed (all are counted; default %(default)s)')
    p.add_argument('--quiet', action='store_true', help='no progress line')
    p.set_defaults(func=_cmd_check)
    return parser


def parse_arguments(argv=None):
    """The command line; for check, --dataset FILE's values are the defaults of its flags
    (cli.apply_dataset), and --data-dir, --data-list, --num-classes are required without it.
    Raises: InputError for a missing or malformed descriptor, or a split it lacks."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    check_parser = parser._subparsers._group_actions[0].choices['check']
    d = split = None
    if argv[:1] == ['check']:
        d, split = cli.apply_dataset(check_parser, argv[1:], (CHECK_SPLIT,))
    args = parser.parse_args(argv)
    if args.command == 'check':
        cli.finish_dataset(check_parser, args, d, split)
        missing = [flag for flag, dest in (('--data-dir', 'data_dir'), ('--data-list',
                                                                       'data_list'),
                                           ('--num-classes', 'num_classes'))
                   if getattr(args, dest) is None]
        if missing:
            check_parser.error('the following arguments are required without --dataset: %s'
                               % ', '.join(missing))
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
