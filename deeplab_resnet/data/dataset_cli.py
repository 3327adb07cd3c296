"""The --dataset flag: a descriptor's values become the flags' defaults (read before the
real parse, so a flag given explicitly wins in any order), and the flags the scripts that
restore a checkpoint share about class names, colours and server ids."""
import argparse
import sys

from deeplab_resnet.data import descriptor

DATASET_HELP = ('dataset descriptor (dataset.json, written by `python -m dataset.tools NAME`): '
                'its data directory, class count, ignore label, class names, colours, server '
                'ids, image mean and split lists are the defaults; a flag given explicitly '
                'wins, in any order')
PALETTE_HELP = ('class colours of the masks, overlays and TensorBoard images (kept in '
                'training\'s provenance records): a palette file, one "R G B [INDEX]" line '
                'per class, as rgb2index --palette reads it (default: --dataset\'s colours, '
                'else the checkpoint\'s record, else the VOC palette)')

# Descriptor field -> the flag (dest) it is the default of, where the parser has that flag.
_DATASET_DEFAULTS = (('data_dir', 'data_dir'), ('num_classes', 'num_classes'),
                     ('ignore_label', 'ignore_label'), ('img_mean', 'img_mean'))


def add_dataset_arguments(parser, split_help):
    """--dataset FILE and --split NAME (what the split does: `split_help`)."""
    parser.add_argument('--dataset', default=None, metavar='FILE', help=DATASET_HELP)
    parser.add_argument('--split', default=None, metavar='NAME', help=split_help)


def add_palette_argument(parser):
    parser.add_argument('--palette', default=None, metavar='FILE', help=PALETTE_HELP)


def add_record_class_arguments(parser):
    """--class-names FILE, --palette FILE and --save-server-ids DIR of the scripts that restore
    a checkpoint (evaluation, inference): names and colours default to --dataset's, then the
    checkpoint's provenance record's."""
    parser.add_argument('--class-names', default=None, metavar='FILE',
                        help='class names, one per line (default: --dataset\'s, the provenance '
                             'record\'s, the VOC names for 21 classes, else class_<i>)')
    add_palette_argument(parser)
    parser.add_argument('--save-server-ids', default=None, metavar='DIR',
                        help='also write each prediction as <stem>.png into DIR, a folder of '
                             'its own: single-channel, the test server\'s id of each pixel\'s '
                             'class (the server_ids of --dataset or of the checkpoint\'s '
                             'record, e.g. Cityscapes labelIds; without them the class '
                             'indices)')


def _pre_parse(argv):
    """--dataset, --split, --data-list and --help from argv, everything else left alone."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument('--dataset')
    pre.add_argument('--split')
    pre.add_argument('--data-list')
    pre.add_argument('-h', '--help', action='store_true')
    found, _ = pre.parse_known_args(argv)
    return found


def apply_dataset(parser, argv, default_splits=()):
    """Reads --dataset FILE from argv before the real parse and makes its values the parser's
    defaults (parser.set_defaults), so that a flag given explicitly wins wherever it stands.
    The list (--data-list's default, where the parser has that flag): --split NAME's, else
    the first of `default_splits` the descriptor has (none: the error names the first).

    Returns: (Descriptor or None, the split whose list is used or None).
    Raises: InputError naming the descriptor (missing, malformed, no such split); --split
      without --dataset, or with --data-list, is a usage error (exit 2).
    """
    found = _pre_parse(argv)
    if found.help:
        return None, None
    if found.split is not None and not found.dataset:
        parser.error('--split %s needs --dataset FILE (the descriptor names the split lists)'
                     % found.split)
    if found.split is not None and found.data_list is not None:
        parser.error('--split and --data-list both name the list: give one')
    if not found.dataset:
        return None, None
    d = descriptor.read(found.dataset)
    dests = {action.dest for action in parser._actions}
    defaults = {dest: getattr(d, field) for field, dest in _DATASET_DEFAULTS
                if dest in dests and getattr(d, field) is not None}
    if 'img_mean' in defaults:
        defaults['img_mean'] = tuple(defaults['img_mean'])
    split = found.split
    if split is None and found.data_list is None and default_splits:
        split = next((s for s in default_splits if s in d.splits), default_splits[0])
    if split is not None:
        list_path = descriptor.split_list(d, split)
        if 'data_list' in dests:
            defaults['data_list'] = list_path
    parser.set_defaults(**defaults)
    return d, split


def finish_dataset(parser, args, d, split):
    """After the parse: args.descriptor (Descriptor or None) and args.from_dataset, the
    settings whose value is the descriptor's ('num_classes', 'img_mean', 'class_names',
    'palette', ...: those no flag gave), for messages and for settings.resolve. An
    abbreviated --dataset / --split (which the first reading did not see) is a usage error,
    not a descriptor silently left unread."""
    if (getattr(args, 'dataset', None) and d is None) or (
            getattr(args, 'split', None) is not None and args.split != split):
        parser.error('write --dataset and --split out in full (they are read before the '
                     'other flags)')
    args.descriptor = d
    from_dataset = []
    if d is not None:
        for field, dest in _DATASET_DEFAULTS:
            value = getattr(d, field)
            if value is not None and dest in vars(args) and _same(getattr(args, dest), value):
                from_dataset.append(dest)
        for dest in ('class_names', 'palette'):
            if getattr(args, dest, None) is None:
                from_dataset.append(dest)
    args.from_dataset = tuple(from_dataset)
    return args


def _same(value, default):
    if isinstance(default, list):
        return value is not None and [float(v) for v in value] == [float(v) for v in default]
    return value == default


def parse_with_dataset(parser, argv=None, default_splits=(), intermixed=False):
    """The scripts' parse: apply_dataset, parse (intermixed for positional arguments between
    flags), finish_dataset. Returns the Namespace."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    d, split = apply_dataset(parser, argv, default_splits)
    parse = parser.parse_intermixed_args if intermixed else parser.parse_args
    args = finish_dataset(parser, parse(argv), d, split)
    args.split_list = d.splits[split] if split is not None else None
    return args


def dataset_settings(args):
    """The keyword arguments settings.resolve / restore_settings take from the flags about
    the dataset: {'dataset', 'palette_file', 'from_dataset'}."""
    return {'dataset': getattr(args, 'descriptor', None),
            'palette_file': getattr(args, 'palette', None),
            'from_dataset': getattr(args, 'from_dataset', ())}
