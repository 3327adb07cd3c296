"""A training run's snapshots: where a run starts (resume, initial weights or scratch) and how
its snapshots are written, kept and found again.

<snapshot-dir>/model.ckpt-<step>{.index,.data-*,.json}: everything (network, optimiser slots,
  global step, the float16 loss scale) and its provenance record, which also holds the input
  position (examples of the run's sequence consumed) so that a resumed run continues the same
  sequence. The newest --keep-snapshots are listed in the `checkpoint` state file (names
  relative to the folder, snapshot_folder), which is written last, once the snapshot's files
  and record are flushed to the disk: a snapshot counts (is resumed from, is found by a
  directory --restore-from) only once it is complete. Nothing outside the folder is ever read
  for resuming, or deleted.
<snapshot-dir>/best/model.ckpt-<step>: the network with the best validation mIoU so far
  (--val-list), its score in its record; not counted by --keep-snapshots, not resumed from.
<snapshot-dir>/corrupt/: snapshots found broken when a run started (moved there, with a
  warning naming each and why); not counted, never deleted.
<snapshot-dir>/train.lock: the lease of the run using the folder (runlock).
"""
import collections
import os
import shutil

import tensorflow as tf

from deeplab_resnet.checkpoint import checkpoints, provenance, snapshot_folder
from deeplab_resnet.common.constants import CHECKPOINT_NAME, DEFAULT_INIT_CHECKPOINT
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.training import optim

tf1 = tf.compat.v1


BEST_DIR = 'best'
SCRATCH = 'none'

Start = collections.namedtuple('Start', ['step', 'init', 'input_position', 'resumed'])
"""What restore_or_resume decided: the global step to start from, the initialisation
(provenance.initialisation) for the snapshots' records, the input position to start the data
sequence at, and whether the run was resumed."""

InputGeometry = collections.namedtuple('InputGeometry', ['examples_per_step', 'pipelines'])
"""examples_per_step: examples one update takes from each input pipeline (batch size x
--grad-update-every x this process's replicas); pipelines: input pipelines (workers), each
reading its shard of the list."""


def from_scratch(args):
    return not args.restore_from or args.restore_from.lower() == SCRATCH


def initial_weights(args):
    """The checkpoint prefix --restore-from names, or None for --restore-from none.

    Raises: InputError with the way to get initial weights when there is none.
    """
    if from_scratch(args):
        return None
    path = args.restore_from
    if not (os.path.isdir(path) or os.path.isfile(path + '.index')
            or os.path.isfile(path)):
        default = ('the default --restore-from, as in the original project'
                   if os.path.normpath(path) == os.path.normpath(DEFAULT_INIT_CHECKPOINT)
                   else '--restore-from')
        raise InputError(
            '%s: no initial weights here (%s). Convert the authors\' ImageNet '
            'model: python convert.py init.caffemodel --save-dir DIR, then pass '
            '--restore-from DIR; or pass --restore-from none to train from scratch on purpose '
            '(with --is-training)' % (path, default))
    prefix = checkpoints.resolve_checkpoint(path)
    if not args.not_restore_last:
        _check_class_count(prefix, args.num_classes)
    return prefix


def _check_class_count(prefix, num_classes):
    """The initial weights' classifier against --num-classes, before any graph is built: a
    record that agrees is enough; otherwise the classifier's variables decide (as
    settings.check_class_count does for evaluation)."""
    if (provenance.read_record(prefix) or {}).get('num_classes') != num_classes:
        checkpoints.check_class_count(prefix, num_classes, '--num-classes',
                                      checkpoints.TRAINING_HINT)


def _short_list(info):
    return '%s (%d entries, sha256 %s...)' % (info.get('path'), info.get('entries', -1),
                                              str(info.get('sha256'))[:12])


def _weights_text(values):
    if values is None:
        return 'none'
    return '[%s]' % ', '.join('%.4g' % v for v in values)


def loss_differences(record, args, class_weights=None):
    """The loss settings in which a snapshot's record differs from the command: the class
    weights (their values, not the file; a record without them: none), --top-k-pixels and
    --top-k-pixels-warmup (a record without them: the paper's loss, every pixel).

    Args: class_weights: the values of --class-weights (tuple of floats) or None.
    Returns: list of 'what (the snapshot's; this command: ...)' texts.
    """
    diffs = []
    saved = (record.get('class_weights') or {}).get('values')
    if (None if saved is None else [float(v) for v in saved]) != (
            None if class_weights is None else [float(v) for v in class_weights]):
        wanted = ('none' if class_weights is None else '--class-weights %s %s'
                  % (args.class_weights, _weights_text(class_weights)))
        diffs.append('the class weights (%s; this command: %s)' % (_weights_text(saved), wanted))
    for key, flag, default in (('top_k_pixels', '--top-k-pixels', None),
                               ('top_k_pixels_warmup', '--top-k-pixels-warmup', 0)):
        saved, wanted = record.get(key, default), getattr(args, key, default)
        if saved != wanted:
            diffs.append('%s (%s; this command: %s)' % (flag, saved, wanted))
    return diffs


def _differences(record, args, train_list, geometry, class_weights=None):
    diffs = []
    if record.get('num_classes') != args.num_classes:
        diffs.append('the class count (%s; this command: --num-classes %d)'
                     % (record.get('num_classes'), args.num_classes))
    saved_list = record.get('train_list') or {}
    if saved_list.get('sha256') != train_list['sha256']:
        diffs.append('the data list (%s; this command: %s)'
                     % (_short_list(saved_list), _short_list(train_list)))
    saved_size = record.get('input_size')
    if list(saved_size or []) != list(args.input_size):
        diffs.append('the input size (%s; this command: --input-size %d,%d)'
                     % (','.join(str(v) for v in saved_size) if saved_size else None,
                        args.input_size[0], args.input_size[1]))
    saved_input = record.get('input') or {}
    if geometry and saved_input.get('pipelines', geometry.pipelines) != geometry.pipelines:
        diffs.append('the number of workers reading the list (%s; this run: %d)'
                     % (saved_input['pipelines'], geometry.pipelines))
    return diffs + loss_differences(record, args, class_weights)


def find_resume(directory, force, warn, chief=True):
    """The newest whole snapshot of a folder, skipping broken ones (snapshot_folder.problem,
    or a damaged record: record_problem) newest first, each with one warning; the chief moves
    them to FOLDER/corrupt/ and rewrites the state file without them. Without a state file,
    the snapshots on disk are taken over. force (--force-resume): a snapshot whose only fault
    is its record resumes without it.

    Returns: (prefix, record, record_usable) or (None, None, True) for a folder without
      snapshots.
    Raises: InputError (one line) when the folder lists snapshots but none is whole: it never
      restarts from scratch over them.
    """
    if not os.path.isdir(directory):
        return None, None, True
    listed = snapshot_folder.read_state(directory)
    names = snapshot_folder.on_disk(directory) if listed is None else listed
    if not names:
        return None, None, True
    chosen, broken = None, []
    for name in reversed(names):
        prefix = os.path.join(directory, name)
        why = snapshot_folder.problem(prefix)
        if why is None:
            why = snapshot_folder.record_problem(prefix)
            if why is None:
                chosen = (prefix, provenance.read_record(prefix), True)
            elif force:
                warn('--force-resume: resuming %s without its provenance record (%s): its '
                     'class count, data list and input size are not checked' % (prefix, why))
                chosen = (prefix, None, False)
            else:
                why += ('; to resume it anyway, move its files back from %s and add '
                        '--force-resume' % os.path.join(directory, snapshot_folder.CORRUPT_DIR))
        if chosen:
            break
        broken.append(name)
        if why == 'its files are missing':
            warn('%s: listed in the state file, but its files are missing: skipped' % prefix)
        elif chief:
            target = snapshot_folder.move_to_corrupt(directory, name)
            warn('%s: broken snapshot (%s): moved to %s' % (prefix, why, target))
        else:
            warn('%s: broken snapshot (%s): skipped' % (prefix, why))
    if chosen is None:
        raise InputError('%s: holds %d snapshot(s), none of them whole (see the warnings); '
                         'not starting from scratch over them: use another --snapshot-dir'
                         % (directory, len(names)))
    if chief and (broken or listed is None):
        if listed is None:
            warn('%s: no "checkpoint" state file: taking over the snapshots in the folder (%s)'
                 % (directory, ', '.join(n for n in names if n not in broken)))
        snapshot_folder.write_state(directory, [n for n in names if n not in broken])
    return chosen


def check_resume(args, train_list, warn, geometry=None, chief=True, class_weights=None):
    """The snapshot a run would resume from (find_resume: the newest whole one), checked
    against the command before any graph is built: its record must have the command's class
    count, data list (digest), input size, number of workers and loss settings (class weights:
    the values of --class-weights, a tuple or None; --top-k-pixels and its warm-up:
    loss_differences), unless args.force_resume. A
    snapshot without a record resumes with a warning. chief: whether this process may move
    broken snapshots (the chief alone writes in the folder).

    Returns: (latest snapshot prefix or None, its record or None).
    Raises: InputError (one line) naming what differs and how to start afresh or force it.
    """
    latest, record, usable = find_resume(args.snapshot_dir, args.force_resume, warn, chief)
    if not latest:
        return None, None
    if record is None:
        if usable:
            warn('%s has no provenance record (made by an older version?): resuming without '
                 'checking its class count, data list and input size' % latest)
        return latest, None
    diffs = _differences(record, args, train_list, geometry, class_weights)
    if diffs and not args.force_resume:
        raise InputError('%s: cannot resume: the snapshot differs from this command in %s; '
                         'start afresh with another --snapshot-dir, or add --force-resume to '
                         'resume it anyway' % (latest, ' and '.join(diffs)))
    if diffs:
        warn('--force-resume: resuming %s although it differs in %s' % (latest,
                                                                        ' and '.join(diffs)))
    return latest, record


def resume_position(record, step, geometry, warn):
    """Where the data sequence of a resumed run continues: the record's input position, else
    (an older record) the step times the examples per step. A changed batch geometry is
    allowed (no example is repeated or skipped) but the batches then differ from those of an
    uninterrupted run: a warning says so."""
    saved = (record or {}).get('input') or {}
    if 'position' not in saved:
        return step * geometry.examples_per_step
    if saved.get('examples_per_step') != geometry.examples_per_step:
        warn('the snapshot took %s examples per step, this command %d (batch size x '
             '--grad-update-every x replicas): the data continue where they stopped, but the '
             'batches differ from those of an uninterrupted run'
             % (saved.get('examples_per_step'), geometry.examples_per_step))
    return int(saved['position'])


def input_record(position, geometry):
    """The record's 'input' entry."""
    return collections.OrderedDict([('position', int(position)),
                                    ('examples_per_step', geometry.examples_per_step),
                                    ('pipelines', geometry.pipelines)])


class Snapshots(object):
    """Writes and keeps the snapshots of one directory (see the module docstring).

    Args:
      directory: --snapshot-dir.
      saver: tf1.train.Saver of everything (network, slots, step).
      keep: --keep-snapshots.
      network_saver: tf1.train.Saver of the network variables (the best snapshot).
      fsync: os.fsync (tests count the calls).
    """

    def __init__(self, directory, saver, keep, network_saver=None, fsync=None):
        self.directory, self.saver, self.keep = directory, saver, keep
        self.network_saver = network_saver
        self.fsync = fsync or os.fsync
        self.kept = []   # base names, oldest first

    def recover(self):
        """Takes over the snapshots the state file lists (they count towards `keep`, oldest
        deleted first) and removes every file no listed snapshot owns: temporary files and
        saves cut short (snapshot_folder.orphans). The chief calls it on every start."""
        self.kept = snapshot_folder.read_state(self.directory) or []
        return snapshot_folder.remove_orphans(self.directory, self.kept)

    def save(self, sess, step, record):
        """Saves model.ckpt-<step>: files and record, flushed to the disk, then the state file
        that makes it count; deletes the files of the snapshots beyond `keep` (inside the
        folder, by name). Returns the prefix.

        Raises: InputError (one line) when the disk is full: the partial files are removed,
          the earlier snapshots are intact."""
        name = '%s-%d' % (CHECKPOINT_NAME, step)
        prefix = os.path.join(self.directory, name)
        kept = [n for n in self.kept if n != name] + [name]
        dropped, kept = kept[:-self.keep], kept[-self.keep:]
        try:
            os.makedirs(self.directory, exist_ok=True)
            self.saver.save(sess, prefix, write_meta_graph=False, write_state=False)
            provenance.write_record(prefix, record)
            for f in snapshot_folder.owned_files(self.directory, name):
                snapshot_folder.sync_file(os.path.join(self.directory, f), self.fsync)
            snapshot_folder.write_state(self.directory, kept, self.fsync)
        except (tf.errors.OpError, OSError) as e:
            if not snapshot_folder.is_no_space(e):
                raise
            snapshot_folder.remove_orphans(self.directory, self.kept)
            raise InputError(self._no_space(name))
        self.kept = kept
        for old in dropped:
            for f in snapshot_folder.owned_files(self.directory, old):
                snapshot_folder.remove(os.path.join(self.directory, f))
        return prefix

    def _no_space(self, name):
        return ('%s: no space left on the device while saving %s (its partial files removed); '
                'the previous snapshot %s is intact: free space, then run the same command '
                'to resume' % (self.directory, name,
                               self.kept[-1] if self.kept else 'does not exist (none saved)'))

    def save_best(self, sess, step, record):
        """Replaces best/ with the network at `step` and its record (which holds the
        validation score). Returns the prefix."""
        best = os.path.join(self.directory, BEST_DIR)
        tmp = best + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        name = '%s-%d' % (CHECKPOINT_NAME, step)
        try:
            os.makedirs(tmp)
            prefix = os.path.join(tmp, name)
            self.network_saver.save(sess, prefix, write_meta_graph=False, write_state=False)
            provenance.write_record(prefix, record)
            for f in snapshot_folder.owned_files(tmp, name):
                snapshot_folder.sync_file(os.path.join(tmp, f), self.fsync)
            snapshot_folder.write_state(tmp, [name], self.fsync)
        except (tf.errors.OpError, OSError) as e:
            if not snapshot_folder.is_no_space(e):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            raise InputError('%s: no space left on the device while saving the best snapshot '
                             '(its partial files removed; the earlier best is intact): free '
                             'space, then run the same command to resume' % self.directory)
        shutil.rmtree(best, ignore_errors=True)
        os.replace(tmp, best)
        snapshot_folder.sync_dir(self.directory, self.fsync)
        return os.path.join(best, name)

    def best_record(self):
        """The record of the best snapshot so far (an earlier run's too), or None."""
        latest = checkpoints.latest_in_dir(os.path.join(self.directory, BEST_DIR))
        return provenance.read_record(latest) if latest else None


def _mean_differs(a, b):
    return [round(float(v), 3) for v in a] != [round(float(v), 3) for v in b]


def resume(sess, saver, latest, record, step_variable, position, log):
    """Restores everything from `latest` (network, slots, step); the data continue at
    `position` (resume_position). Returns Start."""
    try:
        try:
            saver.restore(sess, latest)
        except tf.errors.NotFoundError:
            # A snapshot of a float32 / bfloat16 run resumed in float16: all but the loss
            # scale, which starts afresh (any other missing variable fails again).
            tf1.train.Saver(var_list=[v for v in tf1.global_variables()
                                      if not optim.is_loss_scale_variable(v)]).restore(sess,
                                                                                       latest)
            log('%s has no loss scale (not trained in float16): it starts at %g'
                % (latest, optim.INITIAL_LOSS_SCALE))
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError,
            tf.errors.OutOfRangeError) as e:
        if isinstance(e, tf.errors.InvalidArgumentError) or (
                isinstance(e, tf.errors.NotFoundError) and 'not found in checkpoint' in str(e)):
            raise InputError('%s: cannot resume: its variables do not fit this network (%s); '
                             'start afresh with another --snapshot-dir'
                             % (latest, str(e).splitlines()[0][:200]))
        raise InputError('%s: cannot resume: its data are damaged or gone (%s); move its files '
                         'into %s and run the same command again to resume from the snapshot '
                         'before it' % (latest, e.__class__.__name__, os.path.join(
                             os.path.dirname(latest), snapshot_folder.CORRUPT_DIR)))
    step = int(sess.run(step_variable))
    init = (record or {}).get('initialised_from')
    if not isinstance(init, dict):
        init = provenance.initialisation(None)
        init['description'] = 'unknown (resumed from %s, which has no record)' % latest
    log('resumed from %s at step %d (everything: network, optimiser slots, step, input '
        'position %d; %s; initialised from %s)' % (latest, step, position,
                                                   provenance.record_summary(record),
                                                   init.get('description')))
    return Start(step, init, position, True)


def initialise(sess, args, network_variables, zero_residual, log, warn, run=None):
    """A new run: the network from --restore-from (network variables only; the classifier
    left afresh with --not-restore-last), or the He initialisation (with the residual
    branches' last gamma at 0 when zero_residual is an op). Returns Start at step 0."""
    run = run or sess.run
    prefix = initial_weights(args)
    if prefix is None:
        if zero_residual is not None:
            run(zero_residual)
        log('training from scratch (He initialisation%s); step 0'
            % (', residual branches start at zero' if zero_residual is not None else ''))
        return Start(0, provenance.initialisation(None), 0, False)
    if zero_residual is not None:
        warn('--zero-init-residual has no effect with --restore-from: the gammas come from %s'
             % args.restore_from)
    parent = provenance.read_record(prefix)
    restored = checkpoints.restore_variables(sess, prefix, network_variables,
                                             skip_aspp=args.not_restore_last,
                                             class_hint=checkpoints.TRAINING_HINT)
    if parent and parent.get('image_mean') is not None and _mean_differs(parent['image_mean'],
                                                                         args.img_mean):
        show = lambda mean: ','.join('%g' % v for v in mean)   # noqa: E731
        warn('--img-mean %s contradicts the record of %s (%s); using %s' % (
            show(args.img_mean), prefix, show(parent['image_mean']), show(args.img_mean)))
    log('initialised %d network variables from %s%s (%s); optimiser state and step start '
        'fresh: training starts at step 0' % (
            len(restored), prefix, ' (classifier fc1_voc12 left afresh: --not-restore-last)'
            if args.not_restore_last else '', provenance.record_summary(parent)))
    return Start(0, provenance.initialisation(prefix, parent, not args.not_restore_last), 0,
                 False)
