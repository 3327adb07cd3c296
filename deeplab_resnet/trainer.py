"""The training loop of train_msc.py: graph, restore / resume, steps, snapshots, summaries.

Graph mode with a Session. One step = `grad_update_every` micro-batches whose mean gradient
makes one momentum-SGD update. Snapshots hold the network, the momentum slots and the global
step, so restarting the same command continues the schedule where it stopped.
"""
import io
import math
import os
import signal
import sys
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab_resnet import checkpoints, losses, msc, optim
from deeplab_resnet.errors import InputError
from deeplab_resnet.image_reader import ImageReader, input_error_from_op_error
from deeplab_resnet.progress import format_seconds
from deeplab_resnet.utils import (decode_labels, inv_preprocess, resize_bilinear,
                                  session_config)

tf1 = tf.compat.v1

CKPT_NAME = 'model.ckpt'
MAX_TO_KEEP = 10


class TrainGraph(object):
    """Everything one training process runs, built in the current graph.

    Attributes: reader, images, labels, msc, loss (losses.MSCLoss), ops (optim.TrainOps),
    global_step, network_variables, scalar_summary, image_arrays, saver.
    """

    def __init__(self, args):
        self.args = args
        self.reader = ImageReader(args.data_dir, args.data_list, args.input_size,
                                  args.random_scale, args.random_mirror, args.ignore_label,
                                  args.img_mean, scale_set=args.scale_set,
                                  seed=args.random_seed)
        self.images, self.labels = self.reader.dequeue(args.batch_size)
        self.global_step = tf1.train.get_or_create_global_step()
        self.msc = msc.multi_scale_logits(self.images, args.num_classes, args.is_training,
                                          args.scales)
        self.network_variables = checkpoints.model_variables()
        self.loss = losses.msc_loss(self.msc, self.labels, args.num_classes,
                                    self.network_variables, args.weight_decay, args.scales)
        trainable = [v for v in self.network_variables if v in tf1.trainable_variables()]
        self.ops = optim.build_train_ops(self.loss.total, trainable, args.learning_rate,
                                         args.momentum, args.num_steps, args.power,
                                         args.grad_update_every, self.global_step)
        self.scalar_summary = self._scalar_summaries()
        self.image_arrays = self._image_summary_inputs()
        self.saver = tf1.train.Saver(var_list=tf1.global_variables(), max_to_keep=MAX_TO_KEEP)

    def _scalar_summaries(self):
        s = [tf1.summary.scalar('loss/total', self.loss.total),
             tf1.summary.scalar('loss/cross_entropy', self.loss.cross_entropy),
             tf1.summary.scalar('loss/weight_decay', self.loss.weight_decay),
             tf1.summary.scalar('learning_rate', self.ops.learning_rate),
             tf1.summary.scalar('pixel_accuracy', self.loss.pixel_accuracy)]
        s += [tf1.summary.scalar('loss/' + name, t) for name, t in self.loss.terms.items()]
        return tf1.summary.merge(s)

    def _image_summary_inputs(self):
        """The tensors the image summary is drawn from, fetched with every step (so that the
        session keeps one compiled signature): images, labels and predictions at crop size."""
        n = self.args.save_num_images
        size = tf.shape(self.images)[1:3]
        preds = tf.argmax(resize_bilinear(self.msc.fused, size), axis=3, output_type=tf.int32)
        return {'images': self.images[:n], 'labels': self.labels[:n, :, :, 0],
                'preds': preds[:n]}


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


def restore_or_resume(sess, graph, args, log=print):
    """Resumes from the latest snapshot in args.snapshot_dir if there is one (everything:
    network, momentum, step); else initialises the network from args.restore_from (network
    variables only; ASPP skipped with --not-restore-last); else keeps the He initialisation.
    Returns the global step to start from."""
    latest = checkpoints.latest_in_dir(args.snapshot_dir)
    if latest:
        graph.saver.restore(sess, latest)
        step = int(sess.run(graph.global_step))
        log('resumed from %s at step %d' % (latest, step))
        return step
    if args.restore_from and args.restore_from.lower() != 'none':
        prefix = checkpoints.resolve_checkpoint(args.restore_from)
        restored = checkpoints.restore_variables(sess, prefix, graph.network_variables,
                                                 skip_aspp=args.not_restore_last,
                                                 class_hint=checkpoints.TRAINING_HINT)
        log('initialised %d network variables from %s%s; training starts at step 0' % (
            len(restored), prefix,
            ' (classifier fc1_voc12 left afresh: --not-restore-last)'
            if args.not_restore_last else ''))
    else:
        log('training from scratch (He initialisation); step 0')
    return 0


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
    path = graph.saver.save(sess, os.path.join(graph.args.snapshot_dir, CKPT_NAME),
                            global_step=step, write_meta_graph=False)
    log('saved snapshot %s' % path)
    return path


def _format_step(step, num_steps, fetched, seconds, images):
    eta = format_seconds((num_steps - step) * seconds)
    return ('step %d/%d  loss %.4f (xent %.4f, wd %.4f)  acc %.3f  lr %.3g  %.2f s/step  '
            '%.2f img/s  ETA %s' % (step, num_steps, fetched['total'], fetched['xent'],
                                    fetched['wd'], fetched['acc'], fetched['lr'], seconds,
                                    images / seconds if seconds > 0 else 0.0, eta))


def train(args, log=print):
    """Runs training to args.num_steps; returns the process exit code."""
    with tf.Graph().as_default():
        tf1.set_random_seed(args.random_seed)
        np.random.seed(args.random_seed)
        graph = TrainGraph(args)
        os.makedirs(args.snapshot_dir, exist_ok=True)
        return _run(graph, args, log)


def _run(graph, args, log):
    with tf1.Session(config=session_config(args.threads)) as sess, StopFlag() as stop:
        sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
        step = restore_or_resume(sess, graph, args, log)
        writer = tf1.summary.FileWriter(args.snapshot_dir, graph=sess.graph)
        return _loop(sess, graph, args, step, writer, stop, log)


def _loop(sess, graph, args, step, writer, stop, log):
    k = args.grad_update_every
    scalars = {'total': graph.loss.total, 'xent': graph.loss.cross_entropy,
               'wd': graph.loss.weight_decay, 'acc': graph.loss.pixel_accuracy,
               'lr': graph.ops.learning_rate}
    # One fetch signature for every micro-batch: each new one costs a graph optimisation.
    fetch = dict(scalars, summary=graph.scalar_summary, arrays=graph.image_arrays,
                 op=graph.ops.apply if k == 1 else graph.ops.accumulate)
    last_saved = step
    try:
        while step < args.num_steps:
            start = time.time()
            want_images = (step + 1) % args.save_pred_every == 0 or step + 1 == args.num_steps
            totals = {}
            for _ in range(k):
                out = sess.run(fetch)
                for key in scalars:
                    totals[key] = totals.get(key, 0.0) + out[key] / k
                if not math.isfinite(out['total']):
                    log('error: the loss is not finite (%r) at step %d; stopping. The last good '
                        'snapshot is the latest in %s' % (out['total'], step + 1,
                                                         args.snapshot_dir))
                    return 3
            if k > 1:
                sess.run(graph.ops.apply)
            step += 1
            seconds = time.time() - start
            writer.add_summary(out['summary'], step)
            if want_images:
                writer.add_summary(image_summary(out['arrays'], args), step)
            if step % args.log_every == 0 or step == args.num_steps:
                log(_format_step(step, args.num_steps, totals, seconds, args.batch_size * k))
            if step % args.save_pred_every == 0 or step == args.num_steps:
                save_snapshot(sess, graph, step, log)
                last_saved = step
            if stop.signal is not None:
                if last_saved != step:
                    save_snapshot(sess, graph, step, log)
                log('interrupted at step %d; run the same command to continue' % step)
                return 130
    except tf.errors.OpError as e:
        err = input_error_from_op_error(e)
        if err is not None:
            raise err
        raise
    finally:
        writer.flush()
        writer.close()
    return 0
