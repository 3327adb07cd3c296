"""evaluate_msc_with_CRF.py --crf-search DIR (crf_search) on the small test network and a
three-image list: its table against separate runs of the CRF script with each setting (equal
mIoU, every digit), --crf-params with its best.json, the CRF script's --per-image figures
against IoUs computed by hand, a stop by SIGTERM and the same command continuing, and the
bad-input lines."""
import json
import os
import signal
import sys

import pytest

pytest.importorskip('pydensecrf.densecrf')

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import evaluate_msc_with_CRF  # noqa: E402
import inference  # noqa: E402
from deeplab_resnet.evaluation import crf_search  # noqa: E402
from test_evaluation_per_image import (check_entries, expect_error, make_env,  # noqa: E402
                                       read_pairs)

pytestmark = pytest.mark.usefixtures('small_network')
GRID = '3,5:30:3'   # w1 3 and 5; then the finer round: w1 best - 1, best + 1
SHARED = {}


@pytest.fixture(scope='module')
def env(module_dir):
    return make_env(module_dir('crf_search'), 4, seed=3)


def run_args(env, *extra):
    # --flip: the stored logits are two maps; the search rebuilds the flipped average.
    return ['--data-dir', env['data'], '--data-list', env['val'], '--threads', '2',
            '--restore-from', env['prefix'], '--scales', '1.0', '--flip',
            '--crf-iterations', '3'] + list(extra)


def search_args(env, directory, workers=0):
    return run_args(env, '--crf-search', directory, '--crf-search-images', '3',
                    '--crf-search-grid', GRID, '--crf-search-per-task', '1',
                    '--crf-workers', str(workers))


def parse_table(out):
    """The printed table's rows: (rank, round or None, w1, sigma_alpha, sigma_beta, mIoU
    text)."""
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.split()[:2] == ['rank', 'round']) + 2
    rows = []
    for line in lines[start:]:
        fields = line.split()
        if not fields or not fields[0].isdigit():
            break
        if fields[1] == '-':
            rows.append((int(fields[0]), None, None, None, None, fields[-1]))
        else:
            rows.append((int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3]),
                         float(fields[4]), fields[5]))
    return rows


def test_search_table_equals_the_crf_script_per_setting(env, tmp_path, capsys):
    directory = str(tmp_path / 'search')
    assert evaluate_msc_with_CRF.main(search_args(env, directory)) == 0
    out = capsys.readouterr().out
    best_path = os.path.join(directory, 'best.json')
    assert out.strip().splitlines()[-1] == 'crf-params: %s' % best_path
    assert 'w2 3 and sigma_gamma 1 held' in out
    with open(best_path) as f:
        best = json.load(f)
    table = parse_table(out)
    # Coarse w1 3, 5; the finer round around the coarse best: best -+ 1 (half of the step 2).
    coarse = [r for r in table if r[1] == 1]
    fine = [r for r in table if r[1] == 2]
    assert sorted(r[2] for r in coarse) == [3.0, 5.0] and len(table) == 5
    coarse_best = min(coarse, key=lambda r: r[0])[2]
    assert sorted(r[2] for r in fine) == [coarse_best - 1, coarse_best + 1]
    assert [r[0] for r in table] == [1, 2, 3, 4, 5]
    assert [r['rank'] for r in best['settings']] == [1, 2, 3, 4, 5]
    # Each setting (and the network) by a separate run of the CRF script: the same mIoU.
    runs = {}
    for row in best['settings']:
        if row['round'] is None:
            continue
        params = ['--crf-bi-w', repr(row['bi_w']), '--crf-bi-xy-std', repr(row['bi_xy_std']),
                  '--crf-bi-rgb-std', repr(row['bi_rgb_std'])]
        if row['rank'] == 1:
            params = ['--crf-params', best_path]   # the best through its file
        out_json = str(tmp_path / ('run%d.json' % row['rank']))
        extra = ['--num-steps', '3', '--crf-workers', '0', '--output-json', out_json]
        if row['rank'] == 1:
            extra += ['--per-image', '--save-dir', str(tmp_path / 'pred')]
        assert evaluate_msc_with_CRF.main(run_args(env, *(params + extra))) == 0
        printed = capsys.readouterr().out.strip().splitlines()[-1]
        with open(out_json) as f:
            runs[row['rank']] = json.load(f)
        assert runs[row['rank']]['mean_iou_after_crf'] == row['mean_iou']
        text = next(r[5] for r in table if r[0] == row['rank'])
        assert printed == 'mIoU: %s' % text
    network = next(r for r in best['settings'] if r['round'] is None)
    assert {r['mean_iou_before_crf'] for r in runs.values()} == {network['mean_iou']}
    assert runs[1]['crf']['params'] == best['params']
    assert len({r['mean_iou_after_crf'] for r in runs.values()}) > 1   # the settings matter
    # The CRF script's --per-image figures are the CRF's, the network's under "network".
    pairs = read_pairs(env, str(tmp_path / 'pred'), 3)
    check_entries(runs[1]['per_image'], pairs)
    assert all('network' in e for e in runs[1]['per_image'])
    SHARED['settings'] = best['settings']


def test_sigterm_stops_and_the_same_command_continues(env, tmp_path, capsys, monkeypatch):
    directory = str(tmp_path / 'search')
    appended = []
    real_append = crf_search.append_results

    def append_then_sigterm(where, rows):   # the first setting kept, then SIGTERM arrives
        real_append(where, rows)
        appended.append(rows)
        if len(appended) == 1:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(crf_search, 'append_results', append_then_sigterm)
    with pytest.raises(SystemExit) as info:
        evaluate_msc_with_CRF.main(search_args(env, directory, workers=1))
    assert info.value.code == 143
    out = capsys.readouterr().out
    assert 'stopped (SIGTERM): 1 settings and 3 images\' logits are kept' in out
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # handler restored
    with open(os.path.join(directory, 'results.jsonl')) as f:
        assert len(f.readlines()) == 1
    monkeypatch.setattr(crf_search, 'append_results', real_append)
    # Files left by the stop are not rewritten: the network does not run again.
    stamps = {n: os.stat(os.path.join(directory, 'logits', n)).st_mtime_ns
              for n in os.listdir(os.path.join(directory, 'logits'))}
    assert evaluate_msc_with_CRF.main(search_args(env, directory, workers=1)) == 0
    out = capsys.readouterr().out
    assert 'round 1: 1 of its 2 settings kept from %s' % directory in out
    assert 'network (logits' not in out and 'restored' not in out
    assert stamps == {n: os.stat(os.path.join(directory, 'logits', n)).st_mtime_ns
                      for n in stamps}
    with open(os.path.join(directory, 'best.json')) as f:
        settings = json.load(f)['settings']
    if 'settings' in SHARED:   # an uninterrupted search gave the same table
        assert settings == SHARED['settings']
    assert len(settings) == 5


def test_fine_round_is_best_plus_minus_half_a_step():
    axes = ((3.0, 4.0, 5.0, 6.0), (30.0, 40.0, 100.0), (3.0,))
    fine = crf_search.fine_settings(axes, (3.0, 40.0, 3.0))
    assert fine == [(w, s, 3.0) for w in (2.5, 3.0, 3.5) for s in (35.0, 40.0, 45.0)]
    assert len(crf_search.coarse_settings(crf_search.DEFAULT_GRID)) == 128
    assert len(crf_search.fine_settings(crf_search.DEFAULT_GRID, (4.0, 60.0, 5.0))) == 27


def test_bad_search_input(env, tmp_path, capsys):
    no_labels = str(tmp_path / 'images.txt')
    with open(env['val']) as f, open(no_labels, 'w') as g:
        g.writelines(line.split()[0] + '\n' for line in f)
    args = search_args(env, str(tmp_path / 's'))
    args[args.index('--data-list') + 1] = no_labels
    expect_error(capsys, evaluate_msc_with_CRF.main, args, no_labels + ':1', 'label')
    assert not os.path.exists(str(tmp_path / 's'))
    # A DIR that holds another run's search (here: another checkpoint's).
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'search.json').write_text(json.dumps({'checkpoint': '/elsewhere/model.ckpt'}))
    expect_error(capsys, evaluate_msc_with_CRF.main, search_args(env, str(other)),
                 str(other), 'another run', 'checkpoint: "/elsewhere/model.ckpt" there')
    # An unreadable --crf-params file, in the evaluation and in inference.py.
    bad = str(tmp_path / 'bad.json')
    with open(bad, 'w') as f:
        f.write('{"params": {"bi_w": 4')
    for main, argv in ((evaluate_msc_with_CRF.main, run_args(env, '--crf-params', bad)),
                       (inference.main, ['--crf', '--crf-params', bad, 'x.jpg',
                                         env['prefix']])):
        expect_error(capsys, main, argv, bad, '--crf-params')
    with open(bad, 'w') as f:
        json.dump({'params': {'bi_w': 4}}, f)
    expect_error(capsys, inference.main, ['--crf', '--crf-params', bad, 'x.jpg',
                                          env['prefix']], bad, 'iterations')
    expect_error(capsys, evaluate_msc_with_CRF.main,
                 run_args(env, '--crf-params', str(tmp_path / 'missing.json')),
                 'missing.json')
