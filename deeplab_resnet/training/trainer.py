"""The training loop of train_msc.py: graph, start (resume / initial weights / scratch),
updates, snapshots, summaries, validation, stopping.

Graph mode with a Session. One update = `grad_update_every` micro-batches whose mean gradient
makes one optimiser step (train_step.build_train_step). The data are a pure function of
--random-seed (image_reader), and each snapshot records how far into that sequence the run
was, so a run stopped and restarted with the same command continues exactly where it stopped
(snapshots.py). SIGTERM / Ctrl-C stop at the next micro-batch boundary: the unfinished update
is dropped and the last finished one saved (stopping.py).
"""
import collections
import contextlib
import hashlib
import io
import math
import os
import re
import sys
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab_resnet.checkpoint import checkpoints, provenance, settings
from deeplab_resnet.common.errors import InputError, warn as warn_line
from deeplab_resnet.common.progress import format_seconds
from deeplab_resnet.data import class_weights, colormap, datalist, dataset_cli
from deeplab_resnet.data.colormap import decode_labels, inv_preprocess
from deeplab_resnet.data.image_reader import ImageReader, input_error_from_op_error
from deeplab_resnet.network.model import variable_name
from deeplab_resnet.network.resize import resize_bilinear
from deeplab_resnet.runtime import devices, distribute, precision
from deeplab_resnet.runtime.session import session_config
from deeplab_resnet.training import events, run_summaries, runlock, snapshots
from deeplab_resnet.training.stopping import STALL_S, Runner, Stalled, StopFlag
from deeplab_resnet.training.train_step import build_train_step, hparams_from_args

tf1 = tf.compat.v1

EXIT_DIVERGED = 3
EXIT_CLUSTER = 4

RunFacts = collections.namedtuple('RunFacts', [
    'class_names', 'train_list', 'cluster', 'geometry', 'resume', 'input_position',
    'validation', 'started', 'palette', 'server_ids', 'class_weights'])
"""What a run knows before its graph: class names (list of str), train list
(provenance.list_info), cluster (distribute.Cluster), geometry (snapshots.InputGeometry), the
snapshot to resume (snapshots.check_resume's (prefix, record), or (None, None)), where the
data sequence starts (0, or the resumed snapshot's position), the validation.Validation or
None, when the command started (time.time(), for the start-up time), the class colours
([C][R, G, B]) and the test server's ids (C ints or None), as class_settings gives them, and
--class-weights' file as read (class_weights.ClassWeights) or None."""

TrainGraph = collections.namedtuple('TrainGraph', [
    'global_step', 'loss', 'ops', 'image_arrays', 'scalar_summary', 'saver', 'network_saver',
    'network_variables', 'zero_residual', 'iterator_init', 'bn_keep', 'bn_rollback'])
"""Everything the loop runs. loss: losses.MSCLoss of the global batch (the replicas' shares
summed); ops: optim.TrainOps (accumulate / apply run every replica); image_arrays: images,
labels, predictions of the first replica for the image summary; zero_residual: op or None;
iterator_init: op to run after the variables' initialisation, or None; bn_keep /
bn_rollback: ops saving / restoring the batch-norm moving averages around an update (None
unless batch norm trains and an update has several micro-batches)."""


# ----------------------------------------------------------------------------- the graph

def build_graph(args, facts, hparams):
    """The training graph in the current graph (see TrainGraph); per replica under
    facts.cluster.strategy, each replica reading its own batches."""
    cluster = facts.cluster
    reader = ImageReader(args.data_dir, args.data_list, args.input_size, args.random_scale,
                         args.random_mirror, args.ignore_label, args.img_mean,
                         scale_set=args.scale_set, seed=args.random_seed,
                         num_classes=None if args.ignore_out_of_range else args.num_classes)
    strategy = cluster.strategy
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        global_step = tf1.train.get_or_create_global_step()
        if strategy is None:
            iterator_init = None
            batch = reader.dequeue(args.batch_size, start=facts.input_position)
        else:
            iterator = strategy.make_input_fn_iterator(lambda context: reader.dataset(
                args.batch_size, start=facts.input_position,
                shard=(context.num_input_pipelines, context.input_pipeline_id)))
            iterator_init = iterator.initialize()
            batch = iterator.get_next()

        def replica_step(images, labels):
            step = build_train_step(images, labels, hparams, global_step)
            preds = tf.argmax(resize_bilinear(step.fused_logits, tf.shape(images)[1:3]),
                              axis=3, output_type=tf.int32)
            n = args.save_num_images
            return step.loss, step.ops, {'images': images[:n], 'labels': labels[:n, :, :, 0],
                                         'preds': preds[:n]}

        # Plain graph code: no AutoGraph conversion (the strategy would apply it).
        loss, ops, arrays = distribute.per_replica_call(
            cluster, tf.autograph.experimental.do_not_convert(replica_step), *batch)
        loss, ops = _global_loss(cluster, loss), _global_ops(cluster, ops)
        arrays = {key: distribute.first_replica(cluster, t) for key, t in arrays.items()}
        network = checkpoints.model_variables()
        zero_residual = zero_residual_gammas(network) if args.zero_init_residual else None
        bn_keep, bn_rollback = (_moving_average_rollback(network)
                                if args.is_training and args.grad_update_every > 1
                                else (None, None))
    return TrainGraph(global_step, loss, ops, arrays, _scalar_summaries(loss, ops),
                      tf1.train.Saver(var_list=tf1.global_variables(), max_to_keep=None),
                      tf1.train.Saver(var_list=network, max_to_keep=None), network,
                      zero_residual, iterator_init, bn_keep, bn_rollback)


def _global_loss(cluster, loss):
    """losses.MSCLoss of the global batch: the replicas' shares summed."""
    total = lambda t: distribute.reduce_sum(cluster, t)   # noqa: E731
    terms = collections.OrderedDict((name, total(t)) for name, t in loss.terms.items())
    return loss._replace(total=total(loss.total), cross_entropy=total(loss.cross_entropy),
                         weight_decay=total(loss.weight_decay), terms=terms,
                         pixel_accuracy=total(loss.pixel_accuracy))


def _global_ops(cluster, ops):
    """optim.TrainOps whose accumulate / apply run on every replica."""
    return ops._replace(learning_rate=distribute.first_replica(cluster, ops.learning_rate),
                        accumulate=distribute.group(cluster, ops.accumulate),
                        apply=distribute.group(cluster, ops.apply), accumulators=[])


def _moving_average_rollback(network):
    """(keep, rollback) ops: copy the batch-norm moving averages aside before an update, put
    them back when the update is abandoned (a stop between its micro-batches)."""
    moving = [v for v in network if variable_name(v).endswith(('/moving_mean',
                                                               '/moving_variance'))]
    with tf1.variable_scope('moving_average_rollback'):
        copies = [tf1.get_variable(variable_name(v), v.get_shape(), tf.float32,
                                   initializer=tf1.zeros_initializer(), trainable=False,
                                   collections=[tf1.GraphKeys.LOCAL_VARIABLES],
                                   aggregation=tf.VariableAggregation.MEAN)
                  for v in moving]
    keep = tf.group(*[c.assign(v) for c, v in zip(copies, moving)])
    rollback = tf.group(*[v.assign(c) for c, v in zip(copies, moving)])
    return keep, rollback


def _scalar_summaries(loss, ops):
    s = [tf1.summary.scalar('loss/total', loss.total),
         tf1.summary.scalar('loss/cross_entropy', loss.cross_entropy),
         tf1.summary.scalar('loss/weight_decay', loss.weight_decay),
         tf1.summary.scalar('learning_rate', ops.learning_rate),
         tf1.summary.scalar('pixel_accuracy', loss.pixel_accuracy)]
    s += [tf1.summary.scalar('loss/' + name, t) for name, t in loss.terms.items()]
    if ops.loss_scale is not None:   # --precision float16
        s.append(tf1.summary.scalar('float16_loss_scale', ops.loss_scale.scale))
    return tf1.summary.merge(s)


def zero_residual_gammas(variables):
    """Op setting the scale (gamma) of the last batch norm of every residual branch
    (bn<block>_branch2c) to 0: each block then starts as the identity (Goyal et al. 2017,
    'Accurate, large minibatch SGD', section 5.1)."""
    gammas = [v for v in variables if re.fullmatch(r'bn\w+_branch2c/gamma', variable_name(v))]
    return tf.group(*[v.assign(tf.zeros_like(v)) for v in gammas])


def image_summary(arrays, img_mean, num_classes, palette=None):
    """Rows of image | ground truth | prediction in the run's colours (palette: [C, 3] RGB;
    None: VOC's), as a Summary proto.

    Args:
      arrays: {'images': [n, h, w, 3] float32 BGR mean-subtracted, 'labels', 'preds': [n, h, w]}.
    """
    n = len(arrays['images'])
    rows = np.concatenate([inv_preprocess(arrays['images'], n, img_mean),
                           decode_labels(arrays['labels'], n, num_classes, palette),
                           decode_labels(arrays['preds'], n, num_classes, palette)], axis=2)
    values = []
    for i, row in enumerate(rows):
        buf = io.BytesIO()
        Image.fromarray(row).save(buf, format='PNG')
        values.append(tf1.Summary.Value(
            tag='image_label_prediction/image/%d' % i,
            image=tf1.Summary.Image(height=row.shape[0], width=row.shape[1], colorspace=3,
                                    encoded_image_string=buf.getvalue())))
    return tf1.Summary(value=values)


# ----------------------------------------------------------------------------- the run

def class_settings(args):
    """(class names, colours [C][R, G, B], server ids or None) of a run: --class-names FILE
    (checked against --num-classes) / --palette FILE, else --dataset's, else the defaults
    (VOC's names for 21 classes, else class_<i>; the VOC colours), by settings.resolve."""
    chosen = settings.resolve(None, None, args.num_classes, args.img_mean,
                              names_file=args.class_names, **dataset_cli.dataset_settings(args))
    palette = chosen['palette']
    if palette is None:
        palette = colormap.label_colours(args.num_classes).tolist()
    return chosen['class_names'], palette, chosen['server_ids']


def variables_digest(sess, variables):
    """SHA-256 (first 16 hex digits) of the variables' values in name order: workers of a
    synchronous run must agree on it bit for bit."""
    ordered = sorted(variables, key=variable_name)
    digest = hashlib.sha256()
    for v, value in zip(ordered, sess.run(ordered)):
        digest.update(variable_name(v).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def prepare(args, cluster, warn=warn_line, started=None):
    """The checks that need no graph: class names, the list, the snapshot to resume (else
    the initial weights), the validation list. Returns RunFacts."""
    from deeplab_resnet.training import validation
    names, palette, server_ids = class_settings(args)
    weights = (class_weights.read(args.class_weights, args.num_classes)
               if args.class_weights else None)
    datalist.require_list(args.data_list)
    train_list = provenance.list_info(args.data_list)
    geometry = snapshots.InputGeometry(args.batch_size * args.grad_update_every
                                       * len(cluster.devices), cluster.num_workers)
    latest, record = snapshots.check_resume(args, train_list, warn, geometry, cluster.is_chief,
                                            weights.values if weights else None)
    position = 0
    if latest is None:
        snapshots.initial_weights(args)   # fails early when they are missing
    else:
        step = (record or {}).get('step', int(latest.rsplit('-', 1)[1]))
        position = snapshots.resume_position(record, step, geometry, warn)
    val = (validation.Validation.from_args(args, names, train_list, warn, palette=palette)
           if args.val_list else None)
    return RunFacts(names, train_list, cluster, geometry, (latest, record), position, val,
                    time.time() if started is None else started, palette, server_ids, weights)


def train(args, log=print, warn=warn_line, started=None, stop=None, lease=None):
    """Runs training to args.num_steps; returns the process exit code (0; 3 diverged; 4 a
    worker lost; 130 / 143 stopped by Ctrl-C / SIGTERM). started: when the command started
    (time.time()), for the start-up time logged after the first update. stop: the caller's
    entered stopping.StopFlag (train_msc.py's, which also covers the imports), else one here.
    lease: the caller's held runlock lease on args.snapshot_dir (train_msc.py takes it before
    TensorFlow loads), else it is taken here."""
    if lease is None:   # the lease (one run per folder) also checks the folder can be written
        chief = distribute.is_chief(distribute.read_tf_config())
        lease = runlock.acquire(args.snapshot_dir, chief)
    else:
        lease = contextlib.nullcontext(lease)
    with lease, tf.Graph().as_default(), \
            (contextlib.nullcontext(stop) if stop else StopFlag()) as stop:
        tf1.set_random_seed(args.random_seed)
        np.random.seed(args.random_seed)
        if args.deterministic:
            devices.make_deterministic(args.random_seed)
        cluster = distribute.setup(args.num_replicas, session_config(args.threads),
                                   timeout_s=args.worker_timeout, log=log)
        facts = prepare(args, cluster, warn, started)
        devices.log_devices(log, warn)
        hparams = hparams_from_args(args, snapshots.from_scratch(args),
                                    precision.choose(args.precision, warn),
                                    facts.class_weights.values if facts.class_weights else None)
        graph = build_graph(args, facts, hparams)
        if facts.validation:
            facts.validation.build(args.num_classes)
        os.makedirs(args.snapshot_dir, exist_ok=True)
        return _run(args, facts, graph, stop, log, warn, hparams.precision)


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


def _run(args, facts, graph, stop, log, warn, arithmetic='float32'):
    cluster = facts.cluster
    writer = _NoWriter()
    with tf1.Session(cluster.target, config=cluster.config) as sess:
        run = Runner(sess, stop, cluster.run_options,
                     stall_s=STALL_S if cluster.num_workers > 1 else None)
        start = None
        try:
            run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            if graph.iterator_init is not None:
                run(graph.iterator_init)
            snaps = snapshots.Snapshots(args.snapshot_dir, graph.saver, args.keep_snapshots,
                                        graph.network_saver)
            start = _start(sess, run, args, facts, graph, snaps, log, warn)
            if cluster.is_chief:
                writer = events.EventWriter(args.snapshot_dir, sess.graph)
            loop = Loop(sess, run, args, facts, graph, start, snaps, writer, stop, log)
            if cluster.is_chief:
                run_summaries.write_run_start(writer, args, loop.record(), start.step,
                                              arithmetic)
            return loop.run_updates()
        except Stalled as e:
            _exit_stalled(args, cluster, stop, start, e, log)
        except CLUSTER_ERRORS as e:
            if cluster.num_workers == 1:
                raise
            return _cluster_error(args, cluster, start, e, log)
        except tf.errors.OpError as e:
            err = input_error_from_op_error(e)
            if err is not None:
                raise err
            raise
        finally:
            _close_writer(writer, warn, failing=sys.exc_info()[0] is not None)


def _close_writer(writer, warn, failing):
    """Flushes and closes the event writer without masking the error that ends the run
    (`failing`: a full disk fails the flush too); otherwise a failure is one warning line."""
    try:
        writer.close()
    except (InputError, RuntimeError, tf.errors.OpError, OSError) as e:
        if not failing:
            warn(str(e) if isinstance(e, InputError) else
                 'the TensorBoard events could not all be written (%s)' % e.__class__.__name__)


def _start(sess, run, args, facts, graph, snaps, log, warn):
    latest, record = facts.resume
    if facts.cluster.is_chief:
        snaps.recover()   # every start: takes over the kept snapshots, removes leftovers
    if latest:
        return snapshots.resume(sess, graph.saver, latest, record, graph.global_step,
                                facts.input_position, log)
    return snapshots.initialise(sess, args, graph.network_variables, graph.zero_residual,
                                log, warn, run)


def _exit_stalled(args, cluster, stop, start, error, log):
    """A stop while a collective waits for a peer: the session cannot be used any more, so
    the process exits at once (os._exit) after one line."""
    latest = checkpoints.latest_in_dir(args.snapshot_dir)
    log('%s %d: stopped while waiting for the other workers (%s; %s): the last snapshot is %s; '
        'start every worker again with the same command to resume'
        % (cluster.task_type, cluster.task_index, error,
           'they had not all started' if start is None else 'training', latest or 'none'))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(stop.exit_code)


def _cluster_error(args, cluster, start, error, log):
    latest = checkpoints.latest_in_dir(args.snapshot_dir)
    why = ('no answer within --worker-timeout %d s' % args.worker_timeout
           if isinstance(error, tf.errors.DeadlineExceededError)
           else 'a peer is unreachable or went away')
    log('error: %s %d: %s (%s) while %s; a worker has died, hangs or was not started. The last '
        'snapshot is %s; start every worker again with the same command to resume'
        % (cluster.task_type, cluster.task_index, type(error).__name__, why,
           'waiting for the other workers to start' if start is None
           else 'training (started at step %d)' % start.step, latest or 'none'))
    return EXIT_CLUSTER


def _format_step(step, num_steps, means, images):
    """The progress line; `means` holds the means over the steps since the last line."""
    seconds = means['seconds']
    eta = format_seconds((num_steps - step) * seconds)
    return ('step %d/%d  loss %.4f (xent %.4f, wd %.4f)  acc %.3f  lr %.3g  %.2f s/step  '
            '%.2f img/s  ETA %s' % (step, num_steps, means['total'], means['xent'],
                                    means['wd'], means['acc'], means['lr'], seconds,
                                    images / seconds if seconds > 0 else 0.0, eta))


def _divergence_hint(args):
    if snapshots.from_scratch(args) and args.optimizer == 'momentum':
        return ('; from scratch, momentum SGD at --learning-rate %g is unstable: use the '
                'demo\'s recipe (--optimizer adam --learning-rate 1e-3 --train-bn-params '
                '--zero-init-residual) or initial weights (--restore-from)'
                % args.learning_rate)
    return '; try a lower --learning-rate'


class Loop(object):
    """The update loop of one process, from `start` to args.num_steps: progress lines,
    summaries, snapshots (the chief), validation, and the stop between micro-batches."""

    def __init__(self, sess, run, args, facts, graph, start, snaps, writer, stop, log):
        self.sess, self.run, self.args, self.facts, self.graph = sess, run, args, facts, graph
        self.start, self.snaps, self.writer, self.stop, self.log = (start, snaps, writer, stop,
                                                                   log)
        self.chief = facts.cluster.is_chief
        self.step = start.step
        self.last_saved = start.step if start.resumed else None
        self.scalars = {'total': graph.loss.total, 'xent': graph.loss.cross_entropy,
                        'wd': graph.loss.weight_decay, 'acc': graph.loss.pixel_accuracy,
                        'lr': graph.ops.learning_rate}
        # One fetch signature for every micro-batch: each new one costs a graph optimisation.
        self.fetch = dict(self.scalars, summary=graph.scalar_summary,
                          arrays=graph.image_arrays,
                          op=graph.ops.apply if args.grad_update_every == 1
                          else graph.ops.accumulate)

    def position(self):
        """Examples of this pipeline's sequence consumed by the finished updates."""
        return (self.start.input_position
                + (self.step - self.start.step) * self.facts.geometry.examples_per_step)

    def run_updates(self):
        args, logged = self.args, {}
        self.stop.running()   # start-up is over: a signal now saves and stops
        while self.step < args.num_steps:
            if self.stop.signal is not None:
                return self.stopped()
            t0 = time.time()
            out = self.update()
            if out is None:
                return self.stopped()
            if not math.isfinite(out['total']):
                self.log('error: the loss is not finite (%r) at step %d; stopping. The last '
                         'good snapshot is the latest in %s%s' % (
                             out['total'], self.step + 1, args.snapshot_dir,
                             _divergence_hint(args)))
                return EXIT_DIVERGED
            self.step += 1
            if self.step == self.start.step + 1:
                self.log('first update finished %.1f s after the command started (imports, '
                         'graph, session, %s, the first step)'
                         % (time.time() - self.facts.started,
                            'resume' if self.start.resumed else 'initialisation'))
            for key, value in dict(out['means'], seconds=time.time() - t0, n=1).items():
                logged[key] = logged.get(key, 0.0) + value
            self.after_update(out, logged)
            if self.step % args.log_every == 0 or self.step == args.num_steps:
                logged = {}
        return self.finished()

    def update(self):
        """One update: k micro-batches and the apply. Returns the last micro-batch's fetches
        with 'means' (the scalars' means over the micro-batches), or None when a stop came
        between micro-batches (the update is dropped: batch-norm averages rolled back)."""
        k, graph = self.args.grad_update_every, self.graph
        if graph.bn_keep is not None:
            self.run(graph.bn_keep)
        means = dict.fromkeys(self.scalars, 0.0)
        for i in range(k):
            if i and self.stop.signal is not None:
                if graph.bn_rollback is not None:
                    self.run(graph.bn_rollback)
                return None
            out = self.run(self.fetch)
            for key in self.scalars:
                means[key] += out[key] / k
            if not math.isfinite(out['total']):
                return dict(out, means=means)
        if k > 1:
            self.run(graph.ops.apply)
        return dict(out, means=means)

    def after_update(self, out, logged):
        args, step = self.args, self.step
        self.writer.add_summary(out['summary'], step)
        due = step % args.save_pred_every == 0 or step == args.num_steps
        if due and self.chief:
            self.writer.add_summary(image_summary(out['arrays'], args.img_mean,
                                                  args.num_classes, self.facts.palette), step)
        if step % args.log_every == 0 or step == args.num_steps:
            n = logged['n']
            means = {key: value / n for key, value in logged.items()}
            self.log(_format_step(step, args.num_steps, means,
                                  args.batch_size * args.grad_update_every
                                  * self.facts.cluster.num_replicas))
        if due and self.chief:
            self.save()
        if self.facts.validation and (step % args.val_every == 0 or step == args.num_steps):
            self.validate()

    def record(self):
        args, facts = self.args, self.facts
        record = provenance.training_record(
            args, facts.train_list, self.start.init, self.step, facts.class_names,
            distribute.describe(facts.cluster), facts.palette, facts.server_ids,
            facts.class_weights)
        record['input'] = snapshots.input_record(self.position(), facts.geometry)
        return record

    def save(self):
        path = self.snaps.save(self.sess, self.step, self.record())
        self.last_saved = self.step
        self.log('saved snapshot %s' % path)

    def validate(self):
        result = self.facts.validation.run(self.run, self.stop, self.step,
                                           self.writer if self.chief else None,
                                           self.log if self.chief else (lambda text: None))
        if result is None or not self.chief:
            return
        best = self.snaps.best_record()
        best_miou = ((best or {}).get('validation') or {}).get('mean_iou')
        miou = result['mean_iou']
        best_so_far = max([v for v in (miou, best_miou) if v is not None], default=None)
        if best_so_far is not None:
            self.writer.add_summary(run_summaries.best_summary(best_so_far), self.step)
        if miou is not None and (best_miou is None or miou > best_miou):
            record = self.record()
            record['validation'] = result
            path = self.snaps.save_best(self.sess, self.step, record)
            self.log('new best validation mIoU %.4f (was %s): saved %s'
                     % (miou, 'none' if best_miou is None else '%.4f' % best_miou, path))

    def stopped(self):
        """After a stop: the chief saves the last finished update (unless saved)."""
        if self.chief and self.last_saved != self.step and self.step > self.start.step:
            self.save()
        self.log('interrupted at step %d (%s); run the same command to continue'
                 % (self.step, 'SIGTERM' if self.stop.exit_code == 143 else 'Ctrl-C'))
        return self.stop.exit_code

    def finished(self):
        cluster = self.facts.cluster
        if cluster.num_workers > 1:
            self.log('%s %d: finished at step %d; network variables digest %s (equal on '
                     'every worker)' % (cluster.task_type, cluster.task_index, self.step,
                                        variables_digest(self.sess,
                                                         self.graph.network_variables)))
        return 0
