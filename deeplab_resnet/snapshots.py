"""A training run's snapshots: where a run starts (resume, initial weights or scratch) and how
its snapshots are written, kept and found again.

<snapshot-dir>/model.ckpt-<step>{.index,.data-*,.json}: everything (network, optimiser slots,
  global step, the float16 loss scale) and its provenance record, which also holds the input
  position (examples of the run's sequence consumed) so that a resumed run continues the same
  sequence. The newest --keep-snapshots are listed in the `checkpoint` state file, which is
  written last: a snapshot counts (is resumed from, is found by a directory --restore-from)
  only once its files and record are complete.
<snapshot-dir>/best/model.ckpt-<step>: the network with the best validation mIoU so far
  (--val-list), its score in its record; not counted by --keep-snapshots, not resumed from.
"""
import collections
import glob
import os
import re
import shutil

import tensorflow as tf

from deeplab_resnet import checkpoints, optim, provenance
from deeplab_resnet.constants import CHECKPOINT_NAME, DEFAULT_INIT_CHECKPOINT
from deeplab_resnet.errors import InputError

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


def _differences(record, args, train_list, geometry):
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
    return diffs


def check_resume(args, train_list, warn, geometry=None):
    """The snapshot a run would resume from, checked against the command before any graph is
    built: its record must have the command's class count, data list (digest), input size and
    number of workers, unless args.force_resume. A snapshot without a record resumes with a
    warning.

    Returns: (latest snapshot prefix or None, its record or None).
    Raises: InputError (one line) naming what differs and how to start afresh or force it.
    """
    latest = checkpoints.latest_in_dir(args.snapshot_dir)
    if not latest:
        return None, None
    record = provenance.read_record(latest)
    if record is None:
        warn('%s has no provenance record (made by an older version?): resuming without '
             'checking its class count, data list and input size' % latest)
        return latest, None
    diffs = _differences(record, args, train_list, geometry)
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


_SNAPSHOT_FILE = re.compile(re.escape(CHECKPOINT_NAME) + r'-(\d+)\.')


class Snapshots(object):
    """Writes and keeps the snapshots of one directory (see the module docstring).

    Args:
      directory: --snapshot-dir.
      saver: tf1.train.Saver of everything (network, slots, step).
      keep: --keep-snapshots.
      network_saver: tf1.train.Saver of the network variables (the best snapshot).
    """

    def __init__(self, directory, saver, keep, network_saver=None):
        self.directory, self.saver, self.keep = directory, saver, keep
        self.network_saver = network_saver
        self.kept = []

    def recover(self):
        """Takes over the snapshots of an earlier run (they count towards `keep`, oldest
        deleted first) and deletes the files of snapshots it did not finish writing."""
        state = tf1.train.get_checkpoint_state(self.directory)
        self.kept = list(state.all_model_checkpoint_paths) if state else []
        listed = set(os.path.basename(p) for p in self.kept)
        for name in os.listdir(self.directory):
            match = _SNAPSHOT_FILE.match(name)
            if match and '%s-%s' % (CHECKPOINT_NAME, match.group(1)) not in listed:
                _remove(os.path.join(self.directory, name))

    def save(self, sess, step, record):
        """Saves model.ckpt-<step>: files, then the record, then the state file that makes
        it count; deletes the snapshots beyond `keep`. Returns the prefix."""
        prefix = os.path.join(self.directory, '%s-%d' % (CHECKPOINT_NAME, step))
        self.saver.save(sess, prefix, write_meta_graph=False, write_state=False)
        provenance.write_record(prefix, record)
        self.kept = [p for p in self.kept if p != prefix] + [prefix]
        dropped, self.kept = self.kept[:-self.keep], self.kept[-self.keep:]
        tf1.train.update_checkpoint_state(self.directory, prefix, self.kept)
        for old in dropped:
            for path in glob.glob(glob.escape(old) + '.*'):
                _remove(path)
        return prefix

    def save_best(self, sess, step, record):
        """Replaces best/ with the network at `step` and its record (which holds the
        validation score). Returns the prefix."""
        best = os.path.join(self.directory, BEST_DIR)
        tmp = best + '.tmp'
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        prefix = os.path.join(tmp, '%s-%d' % (CHECKPOINT_NAME, step))
        self.network_saver.save(sess, prefix, write_meta_graph=False, write_state=False)
        provenance.write_record(prefix, record)
        _write_state(tmp, os.path.basename(prefix))
        shutil.rmtree(best, ignore_errors=True)
        os.replace(tmp, best)
        return os.path.join(best, os.path.basename(prefix))

    def best_record(self):
        """The record of the best snapshot so far (an earlier run's too), or None."""
        latest = checkpoints.latest_in_dir(os.path.join(self.directory, BEST_DIR))
        return provenance.read_record(latest) if latest else None


def _write_state(directory, name):
    """The `checkpoint` state file of a directory holding one checkpoint, `name` relative to
    it (so the directory can be renamed; TensorFlow's update_checkpoint_state would resolve a
    relative name against the working directory)."""
    path = os.path.join(directory, 'checkpoint')
    with open(path + '.tmp', 'w') as f:
        f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n' % (name, name))
    os.replace(path + '.tmp', path)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _mean_differs(a, b):
    return [round(float(v), 3) for v in a] != [round(float(v), 3) for v in b]


def resume(sess, saver, snapshots, latest, record, step_variable, position, log):
    """Restores everything from `latest` (network, slots, step) and takes over the earlier
    run's snapshots; the data continue at `position` (resume_position). Returns Start."""
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
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        raise InputError('%s: cannot resume: its variables do not fit this network (%s); '
                         'start afresh with another --snapshot-dir'
                         % (latest, str(e).splitlines()[0][:200]))
    snapshots.recover()
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
