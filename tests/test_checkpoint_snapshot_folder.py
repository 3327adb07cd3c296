"""A snapshot folder under faults (issue 22): rotation from a relative folder, corrupt, moved
and copied snapshots, damaged records, leftovers of a killed save, a full disk, two runs on one
folder, a folder that cannot be written, flushes before the state file, an evaluation whose
snapshot is rotated away, the graph written once per folder.

A Saver of a few variables and the Snapshots class stand in for the network; the one run of
the real trainer is test_trainer_relative_folder_rotation_and_corrupt_newest.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab_resnet.checkpoint import checkpoints, provenance, settings, snapshot_folder
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.predict import predictor
from deeplab_resnet.training import events, runlock, snapshots, trainer

tf1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = 'model.ckpt-%d.data-00000-of-00001'


class Tiny(object):
    """A graph of two variables, a Saver of them, and a session; value(step) is what the
    snapshot of `step` holds (set before each save): an independent expectation."""

    def __init__(self):
        self.graph = tf.Graph()
        with self.graph.as_default():
            # A network variable's name (checkpoints.model_variables picks it up).
            self.a = tf1.get_variable('conv1/weights', [50, 20], tf.float32,
                                      tf1.zeros_initializer())
            self.b = tf1.get_variable('b', [3], tf.int64, tf1.zeros_initializer())
            self.saver = tf1.train.Saver([self.a, self.b], max_to_keep=None)
            self.sess = tf1.Session(graph=self.graph)
            self.sess.run(tf1.global_variables_initializer())

    @staticmethod
    def value(step):
        return np.full([50, 20], step * 1.5, np.float32), np.arange(3, dtype=np.int64) + step

    def save(self, snaps, step, record=None):
        a, b = self.value(step)
        with self.graph.as_default():
            self.a.load(a, self.sess)
            self.b.load(b, self.sess)
            return snaps.save(self.sess, step, {'step': step, 'input': {'position': 2 * step}}
                              if record is None else record)


@pytest.fixture(scope='module')
def tiny():
    t = Tiny()
    yield t
    t.sess.close()


def saved_steps(directory):
    return sorted(snapshot_folder.step_of(n) for n in snapshot_folder.on_disk(directory))


def files(directory):
    return sorted(os.listdir(directory))


def stored(prefix):
    return (tf.train.load_variable(prefix, 'conv1/weights'),
            tf.train.load_variable(prefix, 'b'))


# ----------------------------------------------------------------------------- 1 rotation

def test_rotation_from_a_relative_folder_stays_inside(tiny, tmp_path, monkeypatch):
    """--snapshot-dir snaps --keep-snapshots 2, five saves: exactly two snapshots stay, the
    state file names them relative to the folder, and the files of the same names in the
    parent of the working directory survive (before: deleted, and five stayed)."""
    work = tmp_path / 'work'
    work.mkdir()
    decoys = [tmp_path / (DATA % i) for i in (1, 2, 3)] + [work / (DATA % 4)]
    for d in decoys:
        d.write_text('not yours')
    monkeypatch.chdir(str(work))
    snaps = snapshots.Snapshots('snaps', tiny.saver, 2)
    snaps.recover()
    for step in range(1, 6):
        tiny.save(snaps, step)
    assert saved_steps('snaps') == [4, 5]
    assert (work / 'snaps' / 'checkpoint').read_text() == (
        'model_checkpoint_path: "model.ckpt-5"\n'
        'all_model_checkpoint_paths: "model.ckpt-4"\n'
        'all_model_checkpoint_paths: "model.ckpt-5"\n')
    assert all(d.read_text() == 'not yours' for d in decoys)
    # TensorFlow's own reader finds the newest from any working directory.
    monkeypatch.chdir(str(tmp_path))
    assert tf.train.latest_checkpoint(str(work / 'snaps')) == str(work / 'snaps' /
                                                                  'model.ckpt-5')


def test_a_state_file_of_the_old_version_is_read_inside_the_folder(tiny, tmp_path):
    """A state file written by the version that climbed out of the folder ('../' entries,
    absolute paths): its entries are read by base name inside the folder; a restart with
    --keep-snapshots 1 keeps one and deletes nothing outside."""
    snap = tmp_path / 'a' / 'snaps'
    snaps = snapshots.Snapshots(str(snap), tiny.saver, 3)
    for step in (1, 2, 3):
        tiny.save(snaps, step)
    for i in (1, 2, 3):
        (tmp_path / 'a' / (DATA % i)).write_text('decoy')
    (snap / 'checkpoint').write_text(
        'model_checkpoint_path: "/elsewhere/model.ckpt-3"\n'
        'all_model_checkpoint_paths: "../../model.ckpt-1"\n'
        'all_model_checkpoint_paths: "../model.ckpt-2"\n'
        'all_model_checkpoint_paths: "/elsewhere/model.ckpt-3"\n')
    again = snapshots.Snapshots(str(snap), tiny.saver, 1)
    assert again.recover() == []
    assert again.kept == ['model.ckpt-1', 'model.ckpt-2', 'model.ckpt-3']
    tiny.save(again, 4)
    assert saved_steps(str(snap)) == [4]
    assert [(tmp_path / 'a' / (DATA % i)).read_text() for i in (1, 2, 3)] == ['decoy'] * 3


# ----------------------------------------------------------------------------- 2, 3 broken

def _three(tiny, snap, keep=3):
    snaps = snapshots.Snapshots(str(snap), tiny.saver, keep)
    for step in (1, 2, 3):
        tiny.save(snaps, step)
    return [str(snap / ('model.ckpt-%d' % s)) for s in (1, 2, 3)]


def _find(snap, force=False, chief=True):
    warnings = []
    found = snapshots.find_resume(str(snap), force, warnings.append, chief)
    return found, warnings


def _cut(path, size=None):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2 if size is None else size])


@pytest.mark.parametrize('damage', ['data cut in half', 'index deleted', 'index garbled',
                                    'data deleted'])
def test_a_broken_newest_snapshot_is_moved_and_the_one_before_resumed(tiny, tmp_path, damage):
    snap = tmp_path / 'snaps'
    prefixes = _three(tiny, snap)
    newest = prefixes[2]
    if damage == 'data cut in half':
        _cut(newest + '.data-00000-of-00001')
    elif damage == 'index deleted':
        os.remove(newest + '.index')
    elif damage == 'index garbled':
        _cut(newest + '.index', 20)
    else:
        os.remove(newest + '.data-00000-of-00001')
    (prefix, record, usable), warnings = _find(snap)
    assert prefix == prefixes[1] and record['step'] == 2 and usable
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith('%s: broken snapshot (' % newest)
    assert warnings[0].endswith('moved to %s' % (snap / 'corrupt'))
    assert not [f for f in files(str(snap)) if f.startswith('model.ckpt-3')]
    assert [f for f in files(str(snap / 'corrupt'))] == sorted(
        f for f in ['model.ckpt-3.index', DATA % 3, 'model.ckpt-3.json']
        if damage.split()[0] not in f or 'cut' in damage or 'garbled' in damage)
    assert snapshot_folder.read_state(str(snap)) == ['model.ckpt-1', 'model.ckpt-2']
    # What it resumes is exactly the snapshot of step 2.
    a, b = stored(prefix)
    np.testing.assert_array_equal(a, Tiny.value(2)[0])
    np.testing.assert_array_equal(b, Tiny.value(2)[1])
    # corrupt/ is not counted by --keep-snapshots: rotation leaves it alone.
    snaps = snapshots.Snapshots(str(snap), tiny.saver, 1)
    snaps.recover()
    tiny.save(snaps, 3)
    assert saved_steps(str(snap)) == [3] and os.listdir(str(snap / 'corrupt'))


def test_no_whole_snapshot_refuses_and_a_worker_moves_nothing(tiny, tmp_path):
    snap = tmp_path / 'snaps'
    prefixes = _three(tiny, snap)
    _cut(prefixes[2] + '.data-00000-of-00001')
    (prefix, _, _), warnings = _find(snap, chief=False)   # not the chief: skips, moves nothing
    assert prefix == prefixes[1] and warnings[0].endswith('skipped')
    assert not os.path.exists(str(snap / 'corrupt'))
    for p in prefixes[:2]:
        _cut(p + '.data-00000-of-00001')
    with pytest.raises(InputError) as info:
        _find(snap)
    message = str(info.value)
    assert '\n' not in message and 'none of them whole' in message
    assert 'another --snapshot-dir' in message and message.startswith(str(snap))
    # Nothing is deleted: the broken snapshots are all in corrupt/, and the state file still
    # lists them, so the next start refuses again instead of training from scratch.
    assert len(os.listdir(str(snap / 'corrupt'))) == 9
    with pytest.raises(InputError):
        _find(snap)


def test_a_moved_and_a_copied_folder_use_their_own_files(tiny, tmp_path):
    snap = tmp_path / 'snaps'
    _three(tiny, snap)
    moved = tmp_path / 'moved'
    os.rename(str(snap), str(moved))
    (prefix, _, _), warnings = _find(moved)
    assert prefix == str(moved / 'model.ckpt-3') and warnings == []
    copy = tmp_path / 'copy'
    shutil.copytree(str(moved), str(copy))
    shutil.rmtree(str(moved))   # the original is gone: the copy resumes and is evaluated
    assert _find(copy)[0][0] == str(copy / 'model.ckpt-3')
    assert checkpoints.resolve_checkpoint(str(copy)) == str(copy / 'model.ckpt-3')


def test_snapshots_without_a_state_file_are_taken_over(tiny, tmp_path):
    snap = tmp_path / 'snaps'
    _three(tiny, snap)
    os.remove(str(snap / 'checkpoint'))
    (prefix, _, _), warnings = _find(snap)
    assert prefix == str(snap / 'model.ckpt-3')
    assert len(warnings) == 1 and 'no "checkpoint" state file' in warnings[0]
    assert snapshot_folder.read_state(str(snap)) == ['model.ckpt-1', 'model.ckpt-2',
                                                     'model.ckpt-3']


def _args(snap, force=False):
    return argparse.Namespace(snapshot_dir=str(snap), force_resume=force, num_classes=3,
                              input_size=(33, 33))


@pytest.mark.parametrize('damage', ['cut in half', 'empty', 'a JSON array',
                                    'position not a number'])
def test_a_damaged_record_is_a_broken_snapshot_and_force_resume_reaches_it(tiny, tmp_path,
                                                                          damage):
    snap = tmp_path / 'snaps'
    prefixes = _three(tiny, snap)
    path = prefixes[2] + '.json'
    text = open(path).read()
    damaged = {'cut in half': text[:len(text) // 2], 'empty': '', 'a JSON array': '[1, 2]',
               'position not a number': json.dumps({'step': 3, 'input': {'position': 'x'}})}
    saved = str(tmp_path / 'saved')
    shutil.copytree(str(snap), saved)
    for directory in (str(snap), saved):
        with open(os.path.join(directory, 'model.ckpt-3.json'), 'w') as f:
            f.write(damaged[damage])
    (prefix, record, usable), warnings = _find(snap)
    assert prefix == prefixes[1] and record['step'] == 2
    assert len(warnings) == 1 and warnings[0].startswith(prefixes[2] + ': broken snapshot (')
    assert '--force-resume' in warnings[0]
    # --force-resume resumes it without its record (one warning), through check_resume.
    warnings = []
    latest, record = snapshots.check_resume(_args(saved, force=True), None, warnings.append)
    assert latest == os.path.join(saved, 'model.ckpt-3') and record is None
    assert len(warnings) == 1 and warnings[0].startswith('--force-resume: resuming')


# ----------------------------------------------------------------------------- 4 leftovers

def test_every_start_removes_what_no_snapshot_owns(tiny, tmp_path):
    snap = tmp_path / 'snaps'
    snaps = snapshots.Snapshots(str(snap), tiny.saver, 2)
    tiny.save(snaps, 1)
    tiny.save(snaps, 2)
    leftovers = [DATA % 2 + '.tempstate123', 'model.ckpt-2.index.tempstate9',   # listed step
                 DATA % 3, 'model.ckpt-3.json.tmp', 'checkpoint.tmp5a1', 'checkpoint.tmp']
    for name in leftovers:
        (snap / name).write_text('x')
    (snap / 'model.ckpt-7_temp').mkdir()
    (snap / 'best.tmp').mkdir()
    others = ['events.out.tfevents.1.host', 'notes.txt', 'model.ckpt', 'train.lock']
    for name in others:
        (snap / name).write_text('keep')
    removed = snapshots.Snapshots(str(snap), tiny.saver, 2).recover()
    assert sorted(removed) == sorted(leftovers + ['model.ckpt-7_temp', 'best.tmp'])
    assert files(str(snap)) == sorted(
        others + ['checkpoint'] + ['model.ckpt-%d.%s' % (s, e) for s in (1, 2)
                                   for e in ('index', 'json', 'data-00000-of-00001')])
    # A start that is not a resume (no state file) cleans up too.
    fresh = tmp_path / 'fresh'
    fresh.mkdir()
    (fresh / (DATA % 5 + '.tempstate1')).write_text('x')
    assert snapshots.Snapshots(str(fresh), tiny.saver, 2).recover() == [
        DATA % 5 + '.tempstate1']
    assert files(str(fresh)) == []


# ----------------------------------------------------------------------------- 5 full disk

class FullDisk(object):
    """A Saver whose save writes part of a data file and fails as TensorFlow does on a full
    disk."""

    def __init__(self, error):
        self.error = error

    def save(self, sess, prefix, **unused):
        with open(prefix + '.data-00000-of-00001.tempstate42', 'w') as f:
            f.write('partial')
        raise self.error


@pytest.mark.parametrize('error', [
    tf.errors.ResourceExhaustedError(None, None, 'snaps/model.ckpt-3.data-00000-of-00001.'
                                     'tempstate42; No space left on device'),
    OSError(28, 'No space left on device')])
def test_a_full_disk_is_one_line_and_the_previous_snapshot_stays(tiny, tmp_path, error):
    snap = tmp_path / 'snaps'
    snaps = snapshots.Snapshots(str(snap), tiny.saver, 2)
    tiny.save(snaps, 1)
    tiny.save(snaps, 2)
    before = {f: (snap / f).read_bytes() for f in files(str(snap))}
    if isinstance(error, OSError):   # the record's write fails
        def write_record(prefix, record):
            with open(prefix + '.json.tmp', 'w') as f:
                f.write('{')
            raise error
        original, provenance.write_record = provenance.write_record, write_record
    else:
        snaps.saver = FullDisk(error)
    try:
        with pytest.raises(InputError) as info:
            tiny.save(snaps, 3)
    finally:
        if isinstance(error, OSError):
            provenance.write_record = original
    message = str(info.value)
    assert message.startswith('%s: no space left on the device while saving model.ckpt-3'
                              % snap) and '\n' not in message
    assert 'the previous snapshot model.ckpt-2 is intact' in message
    assert {f: (snap / f).read_bytes() for f in files(str(snap))} == before


def test_a_full_tmpfs(tiny, tmp_path):
    """The same on a real 1 MB tmpfs (needs the right to mount: root on Linux)."""
    mount = tmp_path / 'small'
    mount.mkdir()
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip('cannot mount a tmpfs here')
    try:
        snaps = snapshots.Snapshots(str(mount), tiny.saver, 5)
        steps = 0
        with pytest.raises(InputError) as info:
            for step in range(1, 200):   # a snapshot is ~4 KB; fill the rest first
                if step == 2:
                    (mount / 'filler').write_bytes(b'\0' * (1024 * 1024 - 16 * 4096))
                tiny.save(snaps, step)
                steps = step
        assert 'no space left on the device' in str(info.value)
        assert snapshot_folder.read_state(str(mount))[-1] == 'model.ckpt-%d' % steps
        assert snapshot_folder.problem(str(mount / ('model.ckpt-%d' % steps))) is None
        assert snapshot_folder.orphans(str(mount), snaps.kept) == []
    finally:
        subprocess.run(['umount', str(mount)])


def test_the_event_writer_on_a_full_disk_is_one_line_and_does_not_mask(tmp_path):
    """TensorFlow's event writer on a full disk: its thread dies (its traceback is not shown)
    and the next call raises; EventWriter makes that the one line, and closing it on the way
    out of a failing run adds nothing. The graph goes only into a folder's first event
    file."""
    class Dying(object):
        def add_summary(self, *unused):
            raise RuntimeError('%s/events.out.tfevents.1.host; No space left on device'
                               % tmp_path)

        flush = close = add_summary

    for _ in range(2):   # two runs
        with tf.Graph().as_default() as graph:
            tf.constant(1.0)
            writer = events.EventWriter(str(tmp_path), graph)
            writer.add_summary(tf1.Summary(value=[tf1.Summary.Value(tag='x',
                                                                    simple_value=1.0)]), 1)
            writer.close()
        time.sleep(1.1)   # event files are named by the second
    names = [n for n in files(str(tmp_path)) if n.startswith('events.')]
    assert sorted(sum(bool(e.graph_def) for e in tf1.train.summary_iterator(
        str(tmp_path / n))) for n in names) == [0, 1]
    hook = threading.excepthook
    with tf.Graph().as_default() as graph:
        writer = events.EventWriter(str(tmp_path), graph)
    assert threading.excepthook is not hook   # the writer thread's traceback is kept quiet
    writer.writer = Dying()
    with pytest.raises(InputError) as info:
        writer.add_summary(None, 1)
    assert str(info.value) == ('%s: no space left on the device while writing the TensorBoard '
                               'events; the snapshots written so far are intact: free space, '
                               'then run the same command to resume' % tmp_path)
    warnings = []
    trainer._close_writer(writer, warnings.append, failing=True)
    assert warnings == []
    trainer._close_writer(writer, warnings.append, failing=False)
    assert warnings == [str(info.value)]
    assert threading.excepthook is hook


# ----------------------------------------------------------------------------- 6, 7 lease

HOLD = ('import sys, time; from deeplab_resnet.training import runlock; '
        'runlock.acquire(sys.argv[1]); print("held", flush=True); time.sleep(120)')


def test_a_second_run_on_the_folder_refuses_at_once(tmp_path, capsys):
    snap = tmp_path / 'snaps'
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(snap)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        import train_msc
        t0 = time.time()
        with pytest.raises(SystemExit) as info:
            train_msc.main(['--snapshot-dir', str(snap), '--data-list', 'missing.txt'])
        seconds = time.time() - t0
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and len(err) == 1, err
        assert err[0].startswith('error: %s: another training run uses this folder: host %s, '
                                 'PID %d, since ' % (snap, os.uname()[1], holder.pid))
        assert seconds < 5, seconds   # before the list, the graph, anything
        # A lease left by a killed run does not block the next start.
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        lease = runlock.Lease(str(snap)).acquire()
        content = json.load(open(str(snap / 'train.lock')))
        assert content['pid'] == os.getpid()
        lease.release()
        assert not os.path.exists(str(snap / 'train.lock'))
    finally:
        holder.kill()
        holder.wait(30)


def test_a_lease_from_another_host_holds_until_its_heartbeat_is_stale(tmp_path):
    snap = tmp_path / 'snaps'
    snap.mkdir()
    now = [1000.0]
    other = {'host': 'other-host', 'pid': 1, 'started': 900.0, 'started_text': 'then',
             'heartbeat': 1000.0 - runlock.STALE_S + 1}
    (snap / 'train.lock').write_text(json.dumps(other))
    with pytest.raises(InputError) as info:
        runlock.Lease(str(snap), clock=lambda: now[0]).acquire()
    assert 'host other-host, PID 1, since then (last heartbeat 179 s ago' in str(info.value)
    now[0] += 2   # no heartbeat for more than STALE_S: taken over
    lease = runlock.Lease(str(snap), clock=lambda: now[0]).acquire()
    assert json.load(open(str(snap / 'train.lock')))['host'] == lease.host
    now[0] += 10
    assert lease.refresh()
    assert json.load(open(str(snap / 'train.lock')))['heartbeat'] == now[0]
    lease.release()
    # A worker that is not the chief takes no lease.
    with runlock.acquire(str(snap), chief=False):
        assert not os.path.exists(str(snap / 'train.lock'))


def test_a_folder_that_cannot_be_written_is_one_line_at_once(tmp_path, capsys, monkeypatch):
    import train_msc
    afile = tmp_path / 'afile'
    afile.write_text('x')
    for snap in (afile, afile / 'below'):
        with pytest.raises(SystemExit) as info:
            train_msc.main(['--snapshot-dir', str(snap), '--data-list', 'missing.txt'])
        err = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and len(err) == 1, err
        assert err[0].startswith('error: %s: ' % snap), err
    assert afile.read_text() == 'x'
    # Not writable (as root the permission bits say nothing: the create is refused instead).
    real_open = os.open

    def refuse(path, flags, *rest):
        if str(path).endswith(runlock.LOCK_FILE):
            raise PermissionError(13, 'Permission denied')
        return real_open(path, flags, *rest)

    monkeypatch.setattr(runlock.os, 'open', refuse)
    with pytest.raises(SystemExit) as info:
        train_msc.main(['--snapshot-dir', str(tmp_path / 'ro'), '--data-list', 'missing.txt'])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: %s: cannot write in the snapshot folder (Permission denied)'
                   % (tmp_path / 'ro')]


# ----------------------------------------------------------------------------- 10 flushes

def test_the_files_are_flushed_before_the_state_file(tiny, tmp_path, monkeypatch):
    snap = tmp_path / 'snaps'
    events = []

    def fsync(fd):
        events.append(('fsync', os.path.basename(os.readlink('/proc/self/fd/%d' % fd))))

    real_replace = os.replace

    def replace(src, dst):
        events.append(('replace', os.path.basename(str(src)), os.path.basename(str(dst))))
        return real_replace(src, dst)

    snaps = snapshots.Snapshots(str(snap), tiny.saver, 2, fsync=fsync)
    snaps.recover()
    monkeypatch.setattr(snapshot_folder.os, 'replace', replace)
    tiny.save(snaps, 1)
    synced = [e[1] for e in events if e[0] == 'fsync']
    state = events.index(('replace', 'checkpoint.tmp', 'checkpoint'))
    flushed = [e[1] for e in events[:state] if e[0] == 'fsync']
    assert set(flushed[:3]) == {'model.ckpt-1.index', DATA % 1, 'model.ckpt-1.json'}
    assert flushed[3:] == ['checkpoint.tmp']
    assert events[state + 1:] == [('fsync', 'snaps')]
    assert len(synced) == 5


# ----------------------------------------------------------------------------- 12

def test_an_evaluation_whose_snapshot_is_rotated_away_takes_the_newest(tiny, tmp_path,
                                                                       monkeypatch):
    """restore_settings found model.ckpt-2 in the folder; a running training saves 3 and
    deletes 2 (--keep-snapshots 1) while the graph is built: the restore takes 3, with a
    warning (before: 'cannot read checkpoint')."""
    snap = tmp_path / 'snaps'
    snaps = snapshots.Snapshots(str(snap), tiny.saver, 1)
    tiny.save(snaps, 1)
    tiny.save(snaps, 2)
    restored = settings.restore_settings(str(snap), num_classes=3)
    assert restored.prefix == str(snap / 'model.ckpt-2') and restored.found_in == str(snap)
    tiny.save(snaps, 3)
    assert saved_steps(str(snap)) == [3]
    monkeypatch.setattr(predictor.model, 'fold_batch_norm_op', lambda v: tf.no_op())
    warnings = []
    with tf.Graph().as_default():
        a = tf1.get_variable('conv1/weights', [50, 20])
        with tf1.Session() as sess:
            with pytest.raises(InputError) as info:   # a prefix the user gave: no fallback
                predictor.restore_folded(sess, restored.prefix, None, warnings.append)
            assert 'cannot read checkpoint' in str(info.value)
            got = predictor.restore_folded(sess, restored.prefix, restored.found_in,
                                           warnings.append)
            assert got == str(snap / 'model.ckpt-3')
            np.testing.assert_array_equal(sess.run(a), Tiny.value(3)[0])
    assert len(warnings) == 1 and 'rotated it away' in warnings[0]
    assert settings.followed(restored, got).record['step'] == 3


# ----------------------------------------------------------------------------- the trainer

@pytest.fixture(scope='module')
def data(module_dir):
    from helpers import make_dataset
    root = str(module_dir('folder_data'))
    return root, make_dataset(root, num_images=4, sizes=((40, 50), (41, 37)), num_classes=3)


@pytest.mark.usefixtures('small_network')   # the folder is the point, not the network's size
def test_trainer_relative_folder_rotation_and_corrupt_newest(data, tmp_path, monkeypatch,
                                                            capsys):
    """The real trainer (33x33, 4 steps, a snapshot at each) from a relative --snapshot-dir
    with --keep-snapshots 2: exactly two snapshots stay, a decoy of the same name in the parent
    of the working directory survives. The newest snapshot cut in half and a leftover
    temporary file: the same command warns once, moves it to corrupt/, removes the leftover,
    resumes from the one before and saves again exactly the snapshot that was lost; the graph
    is in one event file only."""
    import train_msc
    root, lst = data
    work = tmp_path / 'work'
    work.mkdir()
    decoy = tmp_path / (DATA % 3)
    decoy.write_text('not yours')
    monkeypatch.chdir(str(work))
    command = ['--data-dir', root, '--data-list', lst, '--input-size', '33,33',
               '--num-classes', '3', '--batch-size', '1', '--grad-update-every', '1',
               '--scales', '1', '--snapshot-dir', 'snaps', '--threads', '2',
               '--restore-from', 'none', '--is-training', '--num-steps', '4',
               '--save-pred-every', '1', '--keep-snapshots', '2']

    assert train_msc.main(command) == 0
    capsys.readouterr()
    snap = work / 'snaps'
    assert saved_steps(str(snap)) == [3, 4]
    assert snapshot_folder.read_state(str(snap)) == ['model.ckpt-3', 'model.ckpt-4']
    names = ['res5a_branch2c/weights', 'fc1_voc12_c0/weights', 'bn_conv1/moving_mean',
             'conv1/weights/Momentum', 'global_step']
    lost = {n: tf.train.load_variable(str(snap / 'model.ckpt-4'), n) for n in names}
    _cut(str(snap / (DATA % 4)))
    (snap / (DATA % 4 + '.tempstate77')).write_text('left by a kill -9')

    assert train_msc.main(command) == 0
    out = capsys.readouterr()
    warnings = [l for l in out.err.splitlines() if l.startswith('warning: ')]
    assert len(warnings) == 1, out.err
    assert warnings[0].startswith('warning: snaps/model.ckpt-4: broken snapshot (its data '
                                  'hold ')
    assert warnings[0].endswith('moved to snaps/corrupt')
    assert 'resumed from snaps/model.ckpt-3 at step 3' in out.out
    assert saved_steps(str(snap)) == [3, 4]
    assert files(str(snap / 'corrupt')) == ['model.ckpt-4.data-00000-of-00001',
                                            'model.ckpt-4.index', 'model.ckpt-4.json']
    assert not (snap / (DATA % 4 + '.tempstate77')).exists()
    assert not (snap / runlock.LOCK_FILE).exists()
    for n in names:   # the resumed run computed step 4 again, exactly
        np.testing.assert_array_equal(tf.train.load_variable(str(snap / 'model.ckpt-4'), n),
                                      lost[n], err_msg=n)
    assert decoy.read_text() == 'not yours'
    events = [n for n in files(str(snap)) if n.startswith('events.')]
    graphs = [sum(bool(e.graph_def) for e in tf1.train.summary_iterator(str(snap / n)))
              for n in events]
    assert sorted(graphs) == [0, 1], graphs
