"""Finding and restoring checkpoints: a prefix or a directory, shape-checked, by name.

Restoring model weights ("init") restores network variables only; resuming a run restores
everything (see train_msc.py). A class-count mismatch is reported with both counts.
"""
import os

import tensorflow as tf

from deeplab_resnet.checkpoint import snapshot_folder
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.network.model import (BLOCKS_ENV, LOGITS, checkpoint_blocks, is_aspp_variable,
                                          variable_name)

tf1 = tf.compat.v1


def latest_in_dir(directory):
    """The newest whole checkpoint prefix a directory's `checkpoint` state file lists (by base
    name, inside the directory: snapshot_folder), or None."""
    if not os.path.isdir(directory):
        return None
    return snapshot_folder.newest_whole(directory)


def resolve_checkpoint(path):
    """A checkpoint prefix (model.ckpt-1000) or a directory (its latest) -> prefix.

    Raises: InputError with one line when there is no readable checkpoint there.
    """
    if os.path.isdir(path):
        prefix = latest_in_dir(path)
        if prefix is None:
            listed = snapshot_folder.read_state(path)
            raise InputError('%s: no checkpoint in this directory (%s)' % (
                path, 'no "checkpoint" file' if listed is None else
                'its "checkpoint" file lists none' if not listed else
                'none of the %d its "checkpoint" file lists is whole' % len(listed)))
        return prefix
    if os.path.isfile(path + '.index'):
        return path
    if path.endswith('.index') and os.path.isfile(path):
        return path[:-len('.index')]
    if path.endswith('.meta') and os.path.isfile(path[:-len('.meta')] + '.index'):
        return path[:-len('.meta')]
    raise InputError('%s: checkpoint not found (give a prefix such as model.ckpt-20000 or a '
                     'directory)' % path)


def checkpoint_shapes(prefix):
    """{variable name: shape list} stored in a checkpoint."""
    try:
        return dict(tf.train.list_variables(prefix))
    except Exception as e:   # corrupt or unreadable
        raise InputError('%s: cannot read checkpoint (%s)' % (prefix, e.__class__.__name__))


def checkpoint_num_classes(shapes):
    """The class count of a checkpoint's ASPP, or None if it has none."""
    w = shapes.get(LOGITS + '_c0/weights')
    return int(w[-1]) if w else None


def check_class_count(prefix, num_classes, source, hint=None):
    """The checkpoint's classifier against num_classes (from `source`: '--num-classes',
    'provenance record' or 'default'), before any graph is built. Raises InputError ending
    in `hint` (%s = the checkpoint's count; default EVAL_HINT)."""
    count = checkpoint_num_classes(checkpoint_shapes(prefix))
    if count is not None and count != num_classes:
        given = ('--num-classes is %d' % num_classes if source == '--num-classes' else
                 '%d classes were expected (%s)' % (num_classes, source))
        raise InputError('%s: the checkpoint is for %d classes, but %s (%s)'
                         % (prefix, count, given, (hint or EVAL_HINT) % count))


def model_variables(graph=None):
    """The network's variables (the 528 of ResNet-101 + ASPP), without optimiser slots,
    the global step or accumulators."""
    graph = graph or tf1.get_default_graph()
    return [v for v in graph.get_collection(tf1.GraphKeys.GLOBAL_VARIABLES)
            if _is_network_variable(variable_name(v))]


def _is_network_variable(name):
    leaf = name.rsplit('/', 1)[-1]
    return name.count('/') == 1 and leaf in ('weights', 'biases', 'beta', 'gamma',
                                             'moving_mean', 'moving_variance')


TRAINING_HINT = ('use --not-restore-last to start the classifier afresh, or --num-classes %s')
EVAL_HINT = 'pass --num-classes %s'


def _check_blocks(prefix, shapes, names, what):
    """A checkpoint of a network with other blocks per stage (one written under the test/debug
    variable DEEPLAB_BLOCKS, or ResNet-101's into such a network) is refused in one line."""
    wanted = checkpoint_blocks(names)
    stored = checkpoint_blocks(shapes)
    if all(wanted) and all(stored) and wanted != stored:   # whole networks only
        text = lambda b: ','.join(map(str, b))
        raise InputError('%s: the %s is of a network with %s blocks per stage, the model has %s '
                         '(ResNet-101 is 3,4,23,3; other counts come from the test/debug '
                         'variable %s)' % (prefix, what, text(stored), text(wanted), BLOCKS_ENV))


def restore_variables(sess, prefix, variables, skip_aspp=False, what='checkpoint',
                      class_hint=EVAL_HINT):
    """Restores `variables` by name from `prefix`, after checking names and shapes.

    skip_aspp: leave the ASPP (class-dependent) variables as initialised.
    class_hint: advice appended to a class-count mismatch (%s = the checkpoint's count).
    Raises: InputError for missing variables or mismatched shapes (a different class count
      is named as such and --not-restore-last is suggested). Returns the restored list.
    """
    shapes = checkpoint_shapes(prefix)
    _check_blocks(prefix, shapes, [variable_name(v) for v in variables], what)
    to_restore, missing = [], []
    for v in variables:
        name = variable_name(v)
        if skip_aspp and is_aspp_variable(name):
            continue
        if name not in shapes:
            missing.append(name)
            continue
        want = v.get_shape().as_list()
        if list(shapes[name]) != want:
            if is_aspp_variable(name):
                count = checkpoint_num_classes(shapes)
                raise InputError('%s: %s is for %s classes, but --num-classes is %d (%s)' % (
                    prefix, what, count, want[-1], class_hint % count))
            raise InputError('%s: variable %s has shape %s in the %s, %s in the model' % (
                prefix, name, list(shapes[name]), what, want))
        to_restore.append(v)
    if missing:
        hint = (' (it has no classifier: use --not-restore-last to train one afresh)'
                if all(is_aspp_variable(n) for n in missing) else '')
        raise InputError('%s: %d variable(s) missing from the %s, e.g. %s%s' % (
            prefix, len(missing), what, ', '.join(missing[:3]), hint))
    tf1.train.Saver(var_list=to_restore).restore(sess, prefix)
    return to_restore
