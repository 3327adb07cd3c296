"""The training loop of train_msc.py: graph, restore / resume, steps, snapshots, summaries.

Graph mode with a Session. One step = `grad_update_every` micro-batches whose mean gradient
makes one momentum-SGD update. Snapshots hold the network, the momentum slots and the global
step, so restarting the same command continues the schedule where it stopped.
"""
import collections
import contextlib
import hashlib
import io
import math
import os
import re
import signal
import sys
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab_resnet import (checkpoints, colormap, distribute, layers, losses, msc, optim,
                            provenance)
from deeplab_resnet.constants import BN_DECAY
from deeplab_resnet.errors import InputError
from deeplab_resnet.image_reader import ImageReader, input_error_from_op_error
from deeplab_resnet.model import variable_name
from deeplab_resnet.progress import format_seconds
from deeplab_resnet.utils import (decode_labels, inv_preprocess, resize_bilinear,
                                  session_config)

tf1 = tf.compat.v1

CKPT_NAME = 'model.ckpt'


class TrainGraph(object):
    """Everything one training process runs, built in the current graph.

    Under a strategy (distribute.setup: --num-replicas, TF_CONFIG) the per-replica part
    (towers, losses, gradients, update) is built once per replica by the strategy, each
    replica reading its own batches (the list sharded over the workers); what the loop
    fetches is then reduced across the replicas (losses summed: each replica's is its share,
    see losses.py) or taken from the first replica (the image summary).

    Attributes: args, cluster (distribute.Cluster), reader, global_step, loss (losses.MSCLoss
    of the global batch), ops (optim.TrainOps; accumulate / apply run every replica),
    network_variables, scalar_summary, image_arrays, saver, iterator_init (op to run once
    after the variables' initialisation, or None).
    """

    def __init__(self, args, cluster=None):
        self.args = args
        self.cluster = cluster or distribute.setup(1, session_config(args.threads))
        self.reader = ImageReader(args.data_dir, args.data_list, args.input_size,
                                  args.random_scale, args.random_mirror, args.ignore_label,
                                  args.img_mean, scale_set=args.scale_set,
                                  seed=args.random_seed)
        strategy = self.cluster.strategy
        with strategy.scope() if strategy else contextlib.nullcontext():
            self.global_step = tf1.train.get_or_create_global_step()
            if strategy is None:
                self.iterator_init = None
                batch = self.reader.dequeue(args.batch_size)
            else:
                iterator = strategy.make_input_fn_iterator(self._input_fn)
                self.iterator_init = iterator.initialize()
                batch = iterator.get_next()
            # Plain graph code: no AutoGraph conversion (the strategy would apply it).
            step_fn = tf.autograph.experimental.do_not_convert(self._replica_step)
            replica = distribute.per_replica_call(self.cluster, step_fn, batch)
            self._gather(replica)
        self.network_variables = checkpoints.model_variables()
        with strategy.scope() if strategy else contextlib.nullcontext():
            self.zero_residual = (zero_residual_gammas(self.network_variables)
                                  if getattr(args, 'zero_init_residual', False) else None)
        self.scalar_summary = self._scalar_summaries()
        self.saver = tf1.train.Saver(var_list=tf1.global_variables(),
                                     max_to_keep=args.keep_snapshots)

    def _input_fn(self, context):
        """This worker's batches: its shard of the list (tf.distribute.InputContext), each
        replica taking its own batch of --batch-size."""
        return self.reader.dataset(self.args.batch_size,
                                   shard=(context.num_input_pipelines,
                                          context.input_pipeline_id))

    def _replica_step(self, batch):
        """One replica's towers, loss share, gradients and update.

        Args: batch: (images [B, h, w, 3] float32 BGR mean-subtracted, labels [B, h, w, 1]).
        Returns: dict of this replica's tensors and ops (the keys _gather reads).
        """
        args = self.args
        images, labels = batch
        msc_out = msc.multi_scale_logits(images, args.num_classes, args.is_training,
                                         args.scales, self._bn_decay(),
                                         sync_batch_norm=getattr(args, 'sync_batch_norm',
                                                                 False))
        variables = checkpoints.model_variables()
        loss = losses.msc_loss(msc_out, labels, args.num_classes, variables,
                               args.weight_decay, args.scales)
        trainable = trainable_variables(variables, getattr(args, 'train_bn_params', False))
        ops = optim.build_train_ops(loss.total, trainable, args.learning_rate,
                                    args.momentum, args.num_steps, args.power,
                                    args.grad_update_every, self.global_step,
                                    args.aspp_lr_mult,
                                    update_ops=[op for net in msc_out.nets
                                                for op in net.update_ops],
                                    optimizer=getattr(args, 'optimizer', 'momentum'))
        n = args.save_num_images
        preds = tf.argmax(resize_bilinear(msc_out.fused, tf.shape(images)[1:3]), axis=3,
                          output_type=tf.int32)
        out = {'total': loss.total, 'xent': loss.cross_entropy, 'wd': loss.weight_decay,
               'acc': loss.pixel_accuracy, 'lr': ops.learning_rate, 'apply': ops.apply,
               'images': images[:n], 'labels': labels[:n, :, :, 0], 'preds': preds[:n]}
        out.update(('term/' + name, t) for name, t in loss.terms.items())
        if ops.accumulate is not None:
            out['accumulate'] = ops.accumulate
        return out

    def _gather(self, replica):
        """Cross-replica values of _replica_step's outputs: self.loss, self.ops,
        self.image_arrays."""
        c = self.cluster
        total = lambda key: distribute.reduce_sum(c, replica[key])   # noqa: E731
        terms = collections.OrderedDict((name, total('term/' + name))
                                        for name in _term_order(self.args))
        self.loss = losses.MSCLoss(total('total'), total('xent'), total('wd'), terms,
                                   total('acc'))
        self.ops = optim.TrainOps(distribute.first_replica(c, replica['lr']),
                                  distribute.group(c, replica.get('accumulate')),
                                  distribute.group(c, replica['apply']), [])
        # The tensors the image summary is drawn from, fetched with every step (so that the
        # session keeps one compiled signature): images, labels and predictions at crop size.
        self.image_arrays = {key: distribute.first_replica(c, replica[key])
                             for key in ('images', 'labels', 'preds')}

    def _bn_decay(self):
        """From scratch, the moving averages follow Caffe's bias-corrected accumulation
        (they are the statistics of the batches seen so far, not of the 0 / 1 they were
        initialised with); from restored weights they continue with the plain decay."""
        if from_scratch(self.args):
            return layers.caffe_moving_average_decay(self.global_step + 1)
        return BN_DECAY

    def _scalar_summaries(self):
        s = [tf1.summary.scalar('loss/total', self.loss.total),
             tf1.summary.scalar('loss/cross_entropy', self.loss.cross_entropy),
             tf1.summary.scalar('loss/weight_decay', self.loss.weight_decay),
             tf1.summary.scalar('learning_rate', self.ops.learning_rate),
             tf1.summary.scalar('pixel_accuracy', self.loss.pixel_accuracy)]
        s += [tf1.summary.scalar('loss/' + name, t) for name, t in self.loss.terms.items()]
        return tf1.summary.merge(s)


def image_summary(arrays, args):
    """Rows of image | ground truth | prediction in the VOC colours, as a Summary proto.

    Args:
      arrays: {'images': [n, h, w, 3] float32 BGR mean-subtracted, 'labels', 'preds': [n, h, w]}.
    """
    rows = np.concatenate([inv_preprocess(arrays['images'], len(arrays['images']),
                                          args.img_mean),
                           decode_labels(arrays['labels'], len(arrays['labels']),
                                         args.num_classes),
                           decode_labels(arrays['preds'], len(arrays['preds']),
                                         args.num_classes)], axis=2)
    values = []
    for i, row in enumerate(rows):
        buf = io.BytesIO()
        Image.fromarray(row).save(buf, format='PNG')
        values.append(tf1.Summary.Value(
            tag='image_label_prediction/image/%d' % i,
            image=tf1.Summary.Image(height=row.shape[0], width=row.shape[1], colorspace=3,
                                    encoded_image_string=buf.getvalue())))
    return tf1.Summary(value=values)


def _term_order(args):
    """The names of the four losses in MSCLoss.terms order: fused, then each scale."""
    return ['fused'] + ['scale_%g' % s for s in args.scales]


def trainable_variables(variables, train_bn_params=False):
    """The network variables an update changes: the convolution kernels and biases (the
    trainable ones), plus batch norm's gamma and beta with train_bn_params (DeepLab-v2 keeps
    them fixed)."""
    names = set(variable_name(v) for v in tf1.trainable_variables())

    def trained(name):
        return name in names or (train_bn_params and name.endswith(('/gamma', '/beta')))
    return [v for v in variables if trained(variable_name(v))]


def zero_residual_gammas(variables):
    """Op setting the scale (gamma) of the last batch norm of every residual branch
    (bn<block>_branch2c) to 0: each block then starts as the identity (Goyal et al. 2017,
    'Accurate, large minibatch SGD', section 5.1)."""
    gammas = [v for v in variables if re.fullmatch(r'bn\w+_branch2c/gamma', variable_name(v))]
    return tf.group(*[v.assign(tf.zeros_like(v)) for v in gammas])


def from_scratch(args):
    return not args.restore_from or args.restore_from.lower() == 'none'


def _warn(message):
    print('warning: %s' % message, file=sys.stderr)
    sys.stderr.flush()


def _short_list(info):
    return '%s (%d entries, sha256 %s...)' % (info.get('path'), info.get('entries', -1),
                                              str(info.get('sha256'))[:12])


def check_resume(args, train_list, warn=_warn):
    """The snapshot a run would resume from, checked against the command before any graph is
    built: its record must have the command's class count, data list (digest) and input size,
    unless args.force_resume. A snapshot without a record resumes with a warning.

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
    if diffs and not getattr(args, 'force_resume', False):
        raise InputError('%s: cannot resume: the snapshot differs from this command in %s; '
                         'start afresh with another --snapshot-dir, or add --force-resume to '
                         'resume it anyway' % (latest, ' and '.join(diffs)))
    if diffs:
        warn('--force-resume: resuming %s although it differs in %s' % (latest,
                                                                        ' and '.join(diffs)))
    return latest, record


def _record_summary(record):
    """What a parent / snapshot record says, for the start-up line."""
    if record is None:
        return 'no provenance record'
    parts = ['record %s' % record.get('created_by', 'of unknown origin')]
    if record.get('step') is not None:
        parts.append('step %s' % record['step'])
    if record.get('num_classes') is not None:
        parts.append('%s classes' % record['num_classes'])
    source = record.get('source')
    if isinstance(source, dict) and source.get('file'):
        parts.append('converted from %s (sha256 %s...)' % (source['file'],
                                                          str(source.get('sha256'))[:12]))
    if record.get('trained_on'):
        parts.append('trained on %s' % record['trained_on'])
    if record.get('input_size'):
        parts.append('input size %s' % ','.join(str(v) for v in record['input_size']))
    return ', '.join(parts)


def restore_or_resume(sess, graph, args, log=print, resume=None):
    """Resumes from the latest snapshot in args.snapshot_dir if there is one (everything:
    network, momentum, step) and its record fits the command (check_resume); else initialises
    the network from args.restore_from (network variables only; ASPP skipped with
    --not-restore-last; optimiser state and step start fresh); else keeps the He
    initialisation. Logs one summary line: what was restored, from where, at which step and
    what the record said. Sets graph.init (provenance.initialisation) for the snapshots'
    records. Returns the global step to start from.

    resume: check_resume's result when already computed."""
    latest, record = resume if resume is not None else check_resume(
        args, _train_list(graph))
    if latest:
        try:
            graph.saver.restore(sess, latest)
        except tf.errors.InvalidArgumentError as e:
            raise InputError('%s: cannot resume: its variables do not fit this network (%s); '
                             'start afresh with another --snapshot-dir'
                             % (latest, str(e).splitlines()[0][:200]))
        # The earlier run's snapshots count towards --keep-snapshots, oldest deleted first.
        state = tf1.train.get_checkpoint_state(args.snapshot_dir)
        if state is not None:
            graph.saver.recover_last_checkpoints(list(state.all_model_checkpoint_paths))
        step = int(sess.run(graph.global_step))
        init = (record or {}).get('initialised_from')
        if not isinstance(init, dict):
            init = provenance.initialisation(None)
            init['description'] = 'unknown (resumed from %s, which has no record)' % latest
        graph.init = init
        log('resumed from %s at step %d (everything: network, momentum, step; %s; '
            'initialised from %s)' % (latest, step, _record_summary(record),
                                      init.get('description')))
        return step
    if not from_scratch(args):
        if getattr(graph, 'zero_residual', None) is not None:
            _warn('--zero-init-residual has no effect with --restore-from: the gammas come '
                  'from %s' % args.restore_from)
        prefix = checkpoints.resolve_checkpoint(args.restore_from)
        parent = provenance.read_record(prefix)
        restored = checkpoints.restore_variables(sess, prefix, graph.network_variables,
                                                 skip_aspp=args.not_restore_last,
                                                 class_hint=checkpoints.TRAINING_HINT)
        graph.init = provenance.initialisation(prefix, parent, not args.not_restore_last)
        if parent and parent.get('image_mean') is not None and [
                round(float(v), 3) for v in parent['image_mean']] != [
                round(float(v), 3) for v in args.img_mean]:
            _warn('--img-mean %s contradicts the record of %s (%s); using %s' % (
                ','.join('%g' % v for v in args.img_mean), prefix,
                ','.join('%g' % v for v in parent['image_mean']),
                ','.join('%g' % v for v in args.img_mean)))
        log('initialised %d network variables from %s%s (%s); optimiser state and step start '
            'fresh: training starts at step 0' % (
                len(restored), prefix,
                ' (classifier fc1_voc12 left afresh: --not-restore-last)'
                if args.not_restore_last else '', _record_summary(parent)))
    else:
        graph.init = provenance.initialisation(None)
        zero = getattr(graph, 'zero_residual', None)
        if zero is not None:
            sess.run(zero, options=graph.cluster.run_options)
        log('training from scratch (He initialisation%s); step 0'
            % (', residual branches start at zero' if zero is not None else ''))
    return 0


def _train_list(graph):
    if getattr(graph, 'train_list', None) is None:
        graph.train_list = provenance.list_info(graph.args.data_list)
    return graph.train_list


def class_names_of(args):
    """--class-names FILE (checked against --num-classes), else the default names."""
    names = None
    if getattr(args, 'class_names', None):
        names = provenance.read_class_names(args.class_names)
        if len(names) != args.num_classes:
            raise InputError('%s: %d class names for %d classes (--num-classes)'
                             % (args.class_names, len(names), args.num_classes))
    return colormap.class_names(args.num_classes, names)


class StopFlag(object):
    """Ctrl-C / SIGTERM ask the loop to stop after the current step (and save)."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.signal is not None:    # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.signal = signum
        print('\nstop requested: finishing this step and saving a snapshot...',
              file=sys.stderr)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def save_snapshot(sess, graph, step, log=print):
    """Saves everything as <snapshot-dir>/model.ckpt-<step> and its provenance record
    model.ckpt-<step>.json (provenance.training_record); drops the records of snapshots the
    Saver has deleted (it keeps the newest --keep-snapshots)."""
    args = graph.args
    path = graph.saver.save(sess, os.path.join(args.snapshot_dir, CKPT_NAME),
                            global_step=step, write_meta_graph=False)
    if getattr(graph, 'class_names', None) is None:
        graph.class_names = class_names_of(args)
    init = getattr(graph, 'init', None) or provenance.initialisation(None)
    cluster = getattr(graph, 'cluster', None)
    provenance.write_record(path, provenance.training_record(
        args, _train_list(graph), init, step, graph.class_names,
        distribute.describe(cluster) if cluster else None))
    _drop_stale_records(args.snapshot_dir)
    log('saved snapshot %s' % path)
    return path


def _drop_stale_records(directory):
    for name in os.listdir(directory):
        if name.startswith(CKPT_NAME + '-') and name.endswith(provenance.RECORD_SUFFIX):
            prefix = os.path.join(directory, name[:-len(provenance.RECORD_SUFFIX)])
            if not os.path.exists(prefix + '.index'):
                try:
                    os.remove(prefix + provenance.RECORD_SUFFIX)
                except OSError:
                    pass


def variables_digest(sess, variables):
    """SHA-256 (first 16 hex digits) of the variables' values in name order: workers of a
    synchronous run must agree on it bit for bit."""
    ordered = sorted(variables, key=variable_name)
    digest = hashlib.sha256()
    for v, value in zip(ordered, sess.run(ordered)):
        digest.update(variable_name(v).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def _format_step(step, num_steps, fetched, seconds, images):
    """The progress line; `fetched` holds the means over the steps since the last line."""
    eta = format_seconds((num_steps - step) * seconds)
    return ('step %d/%d  loss %.4f (xent %.4f, wd %.4f)  acc %.3f  lr %.3g  %.2f s/step  '
            '%.2f img/s  ETA %s' % (step, num_steps, fetched['total'], fetched['xent'],
                                    fetched['wd'], fetched['acc'], fetched['lr'], seconds,
                                    images / seconds if seconds > 0 else 0.0, eta))


def train(args, log=print):
    """Runs training to args.num_steps; returns the process exit code."""
    # Checks that need no graph: the class names, the list and the snapshot to resume.
    names = class_names_of(args)
    train_list = provenance.list_info(args.data_list) if os.path.isfile(args.data_list) \
        else None   # a missing list: ImageReader reports it
    resume = check_resume(args, train_list) if train_list else None
    with tf.Graph().as_default():
        tf1.set_random_seed(args.random_seed)
        np.random.seed(args.random_seed)
        cluster = distribute.setup(getattr(args, 'num_replicas', 1),
                                   session_config(args.threads),
                                   timeout_s=getattr(args, 'worker_timeout', 600), log=log)
        graph = TrainGraph(args, cluster)
        graph.class_names, graph.train_list = names, train_list
        os.makedirs(args.snapshot_dir, exist_ok=True)
        return _run(graph, args, log, resume)


class _NoWriter(object):
    """The summary writer of a worker that is not the chief: writes nothing."""

    def add_summary(self, *unused):
        pass

    def flush(self):
        pass

    def close(self):
        pass


CLUSTER_ERRORS = (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
                  tf.errors.AbortedError, tf.errors.CancelledError)


def _run(graph, args, log, resume=None):
    cluster = graph.cluster
    with tf1.Session(cluster.target, config=cluster.config) as sess, StopFlag() as stop:
        step = None
        try:
            sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()],
                     options=cluster.run_options)
            if graph.iterator_init is not None:
                sess.run(graph.iterator_init, options=cluster.run_options)
            step = restore_or_resume(sess, graph, args, log, resume)
            writer = (tf1.summary.FileWriter(args.snapshot_dir, graph=sess.graph)
                      if cluster.is_chief else _NoWriter())
            return _loop(sess, graph, args, step, writer, stop, log)
        except CLUSTER_ERRORS as e:
            if cluster.num_workers == 1:
                raise
            latest = checkpoints.latest_in_dir(args.snapshot_dir)
            why = ('no answer within --worker-timeout %d s' % args.worker_timeout
                   if isinstance(e, tf.errors.DeadlineExceededError)
                   else 'a peer is unreachable or went away')
            log('error: %s %d: %s (%s) while %s; a worker has died, hangs or was not started. '
                'The last snapshot is %s; start every worker again with the same command to '
                'resume' % (cluster.task_type, cluster.task_index, type(e).__name__, why,
                            'waiting for the other workers to start' if step is None
                            else 'training (started at step %d)' % step, latest or 'none'))
            return 4


def _loop(sess, graph, args, step, writer, stop, log):
    k = args.grad_update_every
    cluster = graph.cluster
    chief = cluster.is_chief
    scalars = {'total': graph.loss.total, 'xent': graph.loss.cross_entropy,
               'wd': graph.loss.weight_decay, 'acc': graph.loss.pixel_accuracy,
               'lr': graph.ops.learning_rate}
    # One fetch signature for every micro-batch: each new one costs a graph optimisation.
    fetch = dict(scalars, summary=graph.scalar_summary, arrays=graph.image_arrays,
                 op=graph.ops.apply if k == 1 else graph.ops.accumulate)
    last_saved = step
    logged = {}   # sums since the last progress line: the line shows their mean
    try:
        while step < args.num_steps:
            start = time.time()
            want_images = (step + 1) % args.save_pred_every == 0 or step + 1 == args.num_steps
            totals = {}
            for _ in range(k):
                out = sess.run(fetch, options=cluster.run_options)
                for key in scalars:
                    totals[key] = totals.get(key, 0.0) + out[key] / k
                if not math.isfinite(out['total']):
                    log('error: the loss is not finite (%r) at step %d; stopping. The last good '
                        'snapshot is the latest in %s' % (out['total'], step + 1,
                                                         args.snapshot_dir))
                    return 3
            if k > 1:
                sess.run(graph.ops.apply, options=cluster.run_options)
            step += 1
            seconds = time.time() - start
            writer.add_summary(out['summary'], step)
            if want_images and chief:
                writer.add_summary(image_summary(out['arrays'], args), step)
            for key, value in dict(totals, seconds=seconds, n=1).items():
                logged[key] = logged.get(key, 0.0) + value
            if step % args.log_every == 0 or step == args.num_steps:
                n = logged.pop('n')
                means = {key: value / n for key, value in logged.items()}
                log(_format_step(step, args.num_steps, means, means['seconds'],
                                 args.batch_size * k * cluster.num_replicas))
                logged = {}
            if chief and (step % args.save_pred_every == 0 or step == args.num_steps):
                save_snapshot(sess, graph, step, log)
                last_saved = step
            if stop.signal is not None:
                if chief and last_saved != step:
                    save_snapshot(sess, graph, step, log)
                log('interrupted at step %d; run the same command to continue' % step)
                return 130
        if cluster.num_workers > 1:
            log('%s %d: finished at step %d; network variables digest %s (equal on every '
                'worker)' % (cluster.task_type, cluster.task_index, step,
                             variables_digest(sess, graph.network_variables)))
    except tf.errors.OpError as e:
        err = input_error_from_op_error(e)
        if err is not None:
            raise err
        raise
    finally:
        writer.flush()
        writer.close()
    return 0
