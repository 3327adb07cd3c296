"""--dataset FILE, --split, --palette and the server ids at parse level (no graph): what each
script takes from a dataset.json, an explicit flag winning in either order, the settings'
precedence (flag > descriptor > checkpoint record > default), the test-server id round trip
and bad input as one line."""
import os

import numpy as np
import pytest
from PIL import Image

import evaluate_msc
import evaluate_msc_with_CRF
import inference
import train_msc
from dataset import tools
from deeplab_resnet.checkpoint import settings
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data import server_ids
from helpers import TOY_PALETTE, TOY_SERVER_IDS, make_descriptor

MEAN = [100.0, 110.0, 120.0]


@pytest.fixture
def desc(tmp_path):
    """A descriptor in meta/ for data in data/, with train and val lists (not read here)."""
    (tmp_path / 'data').mkdir()
    (tmp_path / 'meta').mkdir()
    for name in ('train', 'val', 'test'):
        (tmp_path / 'data' / (name + '.txt')).write_text('/a.jpg /a.png\n')
    path = make_descriptor(tmp_path / 'meta', tmp_path / 'data',
                           {s: str(tmp_path / 'data' / (s + '.txt')) for s in
                            ('train', 'val', 'test')}, img_mean=MEAN)
    return path, str(tmp_path / 'data')


def parse_evaluate(argv):
    return evaluate_msc.get_arguments(argv)


def parse_crf(argv):
    return evaluate_msc_with_CRF.get_arguments(argv)


def parse_check(argv):
    return tools.parse_arguments(['check'] + list(argv))


LISTED = [(train_msc.get_arguments, 'train'), (parse_evaluate, 'val'), (parse_crf, 'val'),
          (parse_check, 'train')]


@pytest.mark.parametrize('parse, split', LISTED)
def test_descriptor_gives_the_data_flags(desc, parse, split):
    path, data = desc
    args = parse(['--dataset', path])
    assert args.data_dir == data and args.num_classes == 3 and args.ignore_label == 255
    assert args.data_list == os.path.join(data, split + '.txt')
    assert args.descriptor.class_names == ['bg', 'rect', 'disc']
    if hasattr(args, 'img_mean'):
        assert tuple(args.img_mean) == tuple(MEAN)
    assert {'num_classes', 'data_dir', 'class_names', 'palette'} <= set(args.from_dataset)


@pytest.mark.parametrize('parse, split', LISTED)
@pytest.mark.parametrize('flag_first', [True, False])
def test_explicit_flag_wins_in_either_order(desc, parse, split, flag_first, tmp_path):
    path, _ = desc
    flags = ['--num-classes', '5', '--data-dir', str(tmp_path), '--ignore-label', '0',
             '--data-list', 'mine.txt']
    argv = flags + ['--dataset', path] if flag_first else ['--dataset', path] + flags
    args = parse(argv)
    assert (args.num_classes, args.data_dir, args.ignore_label, args.data_list) == (
        5, str(tmp_path), 0, 'mine.txt')
    assert 'num_classes' not in args.from_dataset and 'data_dir' not in args.from_dataset


@pytest.mark.parametrize('parse', [train_msc.get_arguments, parse_evaluate, parse_check])
def test_split_chooses_the_list(desc, parse):
    path, data = desc
    assert parse(['--split', 'test', '--dataset', path]).data_list == os.path.join(data,
                                                                                 'test.txt')


def test_evaluation_falls_back_to_test_then_names_what_the_descriptor_has(tmp_path):
    (tmp_path / 'd').mkdir()
    only_test = make_descriptor(tmp_path / 'd', tmp_path, {'train': 't.txt', 'test': 'x.txt'})
    assert parse_evaluate(['--dataset', only_test]).data_list == str(tmp_path / 'd' / 'x.txt')
    (tmp_path / 'e').mkdir()
    only_train = make_descriptor(tmp_path / 'e', tmp_path, {'train': 't.txt'})
    with pytest.raises(InputError, match='no split "val" \\(it has: train\\)'):
        parse_evaluate(['--dataset', only_train])
    # An explicit list needs no split.
    assert parse_evaluate(['--dataset', only_train, '--data-list', 'v.txt']).data_list == 'v.txt'


def test_inference_split_adds_the_list_and_flags_win(desc, tmp_path):
    path, data = desc
    args = inference.get_arguments(['--dataset', path, '--split', 'test', 'ckpt'])
    assert args.images == [os.path.join(data, 'test.txt')] and args.model_weights == 'ckpt'
    assert args.data_dir == data and args.num_classes == 3 and tuple(args.img_mean) == (
        tuple(MEAN))
    args = inference.get_arguments(['a.jpg', '--num-classes', '4', '--dataset', path, 'ckpt',
                                    '--data-dir', str(tmp_path)])
    assert args.images == ['a.jpg'] and args.num_classes == 4
    assert args.data_dir == str(tmp_path)


@pytest.mark.parametrize('argv, message', [
    (['--split', 'val'], '--split val needs --dataset'),
    (['--split', 'val', '--data-list', 'x.txt', '--dataset', 'D'], 'give one')])
def test_split_misuse_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        train_msc.get_arguments(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_help_reads_no_descriptor(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        evaluate_msc.get_arguments(['--dataset', str(tmp_path / 'missing.json'), '--help'])
    assert info.value.code == 0 and '--save-server-ids' in capsys.readouterr().out


def one_error_line(capsys, main, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert info.value.code == 2 and len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


@pytest.mark.parametrize('main', [train_msc.main, evaluate_msc.main, inference.main])
def test_bad_descriptor_is_one_line(main, desc, tmp_path, capsys):
    path, _ = desc
    missing = str(tmp_path / 'nothing.json')
    line = one_error_line(capsys, main, ['--dataset', missing, 'x'])
    assert missing in line and 'not found' in line
    broken = tmp_path / 'broken.json'
    broken.write_text('{"num_classes": 3,')
    line = one_error_line(capsys, main, ['--dataset', str(broken), 'x'])
    assert str(broken) in line and 'JSON' in line
    line = one_error_line(capsys, main, ['--dataset', path, '--split', 'extra', 'x'])
    assert path in line and 'no split "extra"' in line


def test_check_bad_descriptor_and_missing_flags(desc, tmp_path, capsys):
    path, _ = desc
    assert tools.main(['check', '--dataset', path, '--split', 'nope']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'no split "nope"' in err[0] and path in err[0]
    assert tools.main(['check', '--data-dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--data-list, --num-classes needed' in err[0]


# ---------------------------------------------------------------------- settings precedence

def palette_file(path, colours):
    path.write_text(''.join('%d %d %d\n' % tuple(c) for c in colours))
    return str(path)


def test_settings_precedence_flag_descriptor_record_default(desc, tmp_path):
    from deeplab_resnet.data import descriptor
    d = descriptor.read(desc[0])
    record = {'num_classes': 3, 'class_names': ['r0', 'r1', 'r2'],
              'palette': [[1, 1, 1], [2, 2, 2], [3, 3, 3]], 'server_ids': [0, 1, 2]}
    # Nothing given: the record's; no record: the defaults (VOC colours, class indices).
    s = settings.resolve('ck', record)
    assert s['class_names'] == ['r0', 'r1', 'r2'] and s['palette'] == record['palette']
    assert s['server_ids'] == [0, 1, 2] and s['sources']['palette'] == 'provenance record'
    s = settings.resolve('ck', None, 3)
    assert s['palette'] is None and s['server_ids'] is None
    assert s['class_names'] == ['class_0', 'class_1', 'class_2']
    # The descriptor over the record, with the contradiction named.
    warnings = []
    s = settings.resolve('ck', record, 3, dataset=d, warn=warnings.append,
                         from_dataset=('num_classes', 'class_names', 'palette'))
    assert s['class_names'] == ['bg', 'rect', 'disc'] and s['palette'] == TOY_PALETTE
    assert s['server_ids'] == TOY_SERVER_IDS
    assert s['sources']['num_classes'] == '--dataset %s' % d.path
    assert warnings == ["--dataset %s (bg,rect,disc) contradicts the checkpoint's record "
                        "(r0,r1,r2); using them" % d.path]
    # Files given as flags over the descriptor.
    names = tmp_path / 'names.txt'
    names.write_text('x\ny\nz\n')
    colours = [[9, 8, 7], [6, 5, 4], [3, 2, 1]]
    s = settings.resolve('ck', record, 3, dataset=d, names_file=str(names),
                         palette_file=palette_file(tmp_path / 'p.txt', colours))
    assert s['class_names'] == ['x', 'y', 'z'] and s['palette'] == colours
    assert s['sources']['palette'] == '--palette'


def test_palette_file_with_too_few_colours(tmp_path):
    short = palette_file(tmp_path / 'short.txt', [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(InputError, match='%s: no colour for class\\(es\\) 2 of 3' % short):
        settings.resolve('ck', None, 3, palette_file=short)
    bad = tmp_path / 'bad.txt'
    bad.write_text('1 2\n')
    with pytest.raises(InputError, match='%s:1: expected' % bad):
        settings.resolve('ck', None, 3, palette_file=str(bad))


def test_palette_file_too_short_is_one_line_for_training(desc, tmp_path, capsys):
    short = palette_file(tmp_path / 'short.txt', [[1, 2, 3]])
    line = one_error_line(capsys, train_msc.main, [
        '--dataset', desc[0], '--palette', short, '--restore-from', 'none', '--is-training',
        '--snapshot-dir', str(tmp_path / 'snap')])
    assert short in line and 'no colour for class(es) 1, 2 of 3' in line


# ---------------------------------------------------------------------- server ids

# cityscapesScripts labels.py: the labelId of each trainId 0..18 (road ... bicycle).
CITYSCAPES_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def test_cityscapes_round_trip_train_ids_label_ids_train_ids(tmp_path):
    train_ids = np.arange(19 * 4, dtype=np.uint8).reshape(4, 19) % 19
    path = server_ids.write(str(tmp_path), 'frankfurt_000000_000294_leftImg8bit', train_ids,
                            CITYSCAPES_IDS, 19)
    stored = Image.open(path)
    assert stored.mode == 'L' and os.path.basename(path) == (
        'frankfurt_000000_000294_leftImg8bit.png')
    label_ids = np.asarray(stored)
    for train_id, label_id in enumerate(CITYSCAPES_IDS):   # by hand, class by class
        assert (label_ids[train_ids == train_id] == label_id).all()
    np.testing.assert_array_equal(server_ids.from_server(label_ids, CITYSCAPES_IDS, 19, 255),
                                  train_ids)
    # Every labelId 0..33 (and -1 stored as 255): the 19 scored ones come back, the rest are
    # ignored (unlabeled 0, ego vehicle 1, ..., license plate).
    every = np.arange(256, dtype=np.uint8)
    back = server_ids.from_server(every, CITYSCAPES_IDS, 19, 255)
    expected = np.full(256, 255, np.uint8)
    expected[CITYSCAPES_IDS] = np.arange(19)
    np.testing.assert_array_equal(back, expected)


def test_server_ids_without_table_are_the_indices_and_ade20k_is_plus_one(tmp_path):
    labels = np.array([[0, 1], [149, 3]])
    np.testing.assert_array_equal(server_ids.to_server(labels, None, 150), labels)
    ade = list(range(1, 151))
    np.testing.assert_array_equal(server_ids.to_server(labels, ade, 150), labels + 1)


def test_server_ids_folder_must_be_its_own(tmp_path):
    folder = tmp_path / 'ids'
    server_ids.check_dir(str(folder), ['a', 'b'])           # new: fine
    folder.mkdir()
    (folder / 'a.png').write_bytes(b'')                     # an earlier run's: fine
    server_ids.check_dir(str(folder), ['a', 'b'])
    (folder / 'a_mask.png').write_bytes(b'')
    with pytest.raises(InputError, match='holds 1 other file\\(s\\) \\(a_mask.png\\)'):
        server_ids.check_dir(str(folder), ['a', 'b'])
    with pytest.raises(InputError, match='not --save-dir'):
        server_ids.check_dir(str(tmp_path / 'x'), ['a'], save_dir=str(tmp_path / 'x'))
    with pytest.raises(InputError, match='would overwrite it'):
        server_ids.check_dir(str(tmp_path), ['img'], inputs=[str(tmp_path / 'img.png')])


def test_record_colours_for_another_class_count_are_not_used():
    # --num-classes 2 on a 3-class record (the class-count check decides later): VOC's.
    record = {'num_classes': 3, 'palette': TOY_PALETTE, 'server_ids': TOY_SERVER_IDS}
    s = settings.resolve('ck', record, 2)
    assert s['palette'] is None and s['server_ids'] is None
    with pytest.raises(InputError, match='ck.json: palette must be a list'):
        settings.resolve('ck', {'palette': [[1, 2]]}, 2)


def test_abbreviated_dataset_flag_is_refused_not_ignored(desc, capsys):
    with pytest.raises(SystemExit) as info:
        train_msc.get_arguments(['--datas', desc[0]])
    assert info.value.code == 2 and 'write --dataset and --split out in full' in (
        capsys.readouterr().err)


def test_check_runs_on_a_descriptor_alone(tmp_path, capsys):
    from helpers import make_dataset
    data = tmp_path / 'data'
    listed = make_dataset(str(data), num_images=2, num_classes=3, list_name='train.txt')
    path = make_descriptor(tmp_path, data, {'train': listed})
    assert tools.main(['check', '--dataset', path, '--quiet']) == 0
    out = capsys.readouterr().out
    assert 'checked 2 example(s) of %s' % listed in out
    assert ' rect ' in out and ' disc ' in out and 'problems: 0' in out


def test_a_record_written_with_dataset_brings_names_colours_and_ids(desc):
    """train_msc --dataset -> the snapshot's record -> evaluation / inference without flags."""
    import json
    from deeplab_resnet.checkpoint import provenance
    from deeplab_resnet.training import trainer
    args = train_msc.get_arguments(['--dataset', desc[0]])
    names, palette, ids = trainer.class_settings(args)
    record = provenance.training_record(args, provenance.list_info(args.data_list),
                                        provenance.initialisation(None), 1, names, None,
                                        palette, ids)
    record = json.loads(json.dumps(record))   # as read back from <prefix>.json
    assert 'descriptor' not in record['flags'] and record['flags']['dataset'] == desc[0]
    s = settings.resolve('ck', record)
    assert s['num_classes'] == 3 and s['class_names'] == ['bg', 'rect', 'disc']
    assert s['palette'] == TOY_PALETTE and s['server_ids'] == TOY_SERVER_IDS
    assert s['sources']['palette'] == s['sources']['server_ids'] == 'provenance record'
    # Without --dataset or --palette a run records the VOC colours it drew in.
    names, palette, ids = trainer.class_settings(train_msc.get_arguments(['--num-classes',
                                                                          '2']))
    assert palette == [[0, 0, 0], [128, 0, 0]] and ids is None
