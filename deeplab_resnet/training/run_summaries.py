"""TensorBoard summaries that describe a training run rather than a step: its hyperparameters
for the HParams dashboard, its command line and provenance record as text, and the PNG /
text Summary values validation and the trainer write.

HParams: each run (each --snapshot-dir; several under one ``tensorboard --logdir``) writes
once per process start (a fresh start and every resume) the plugin's experiment
(hparams_config_pb: the hyperparameter names and the metrics below) and its session start
(hparams_pb: the values, the trial id = --snapshot-dir as given), as Summary protos a
tf.compat.v1 FileWriter takes. The metrics are ordinary scalar tags of the same run, so the
dashboard shows the latest value of each: METRIC_TAGS.
"""
import json
import os
import shlex
import sys
import time

import tensorflow as tf

tf1 = tf.compat.v1

BEST_MIOU_TAG = 'validation/best_mean_iou'
METRIC_TAGS = ((BEST_MIOU_TAG, 'best validation mIoU'),
               ('validation/mean_iou', 'validation mIoU'),
               ('loss/total', 'training loss'))
COMMAND_TAG = 'run/command'
RECORD_TAG = 'run/provenance'
OMITTED_RECORD_KEYS = ('train_images',)   # the image list: thousands of names


def run_hparams(args, init, precision=None, class_weights=None):
    """The hyperparameters a run is compared by: {name: bool | int | float | str}.

    Args: args (train_msc's flags), init (provenance.initialisation: the initial weights),
      precision (the arithmetic precision.choose settled on; default args.precision),
      class_weights (the record's 'class_weights' entry: path, sha256, values; or None)."""
    # TensorBoard's dashboard sorts them by name and shows the first five at first: batch,
    # crop, data_list, init, learning_rate (the loss's opt-in settings sort after it: loss_*).
    return {
        'learning_rate': float(args.learning_rate),
        'optimizer': str(args.optimizer),
        'batch': '%dx%d' % (args.batch_size, args.grad_update_every),
        'crop': '%dx%d' % tuple(args.input_size),
        'scales': ','.join('%g' % s for s in args.scales),
        'weight_decay': float(args.weight_decay),
        'precision': str(precision or args.precision),
        'init': str((init or {}).get('description') or 'none'),
        'data_list': str(args.data_list),
        'random_scale': bool(args.random_scale),
        'num_steps': int(args.num_steps),
        'loss_class_weights': ('sha256 %s' % class_weights['sha256'][:12] if class_weights
                               else 'none'),
        'loss_class_weight_values': (','.join('%.4g' % v for v in class_weights['values'])
                                     if class_weights else 'none'),
        'loss_top_k_pixels': float(args.top_k_pixels or 1.0),
        'loss_top_k_pixels_warmup': int(args.top_k_pixels_warmup),
    }


def _tf_summary(pb):
    """tensorboard.compat.proto Summary -> tf.compat.v1.Summary (the same wire format)."""
    return tf1.Summary.FromString(pb.SerializeToString())


def hparams_summaries(hparams, trial_id, start_time_secs=None):
    """[experiment Summary, session-start Summary] of the HParams plugin."""
    from tensorboard.plugins.hparams import summary_v2 as hp
    config = hp.hparams_config_pb(
        hparams=[hp.HParam(name) for name in hparams],
        metrics=[hp.Metric(tag, display_name=name) for tag, name in METRIC_TAGS],
        time_created_secs=start_time_secs)
    start = hp.hparams_pb(hparams, trial_id=trial_id, start_time_secs=start_time_secs)
    return [_tf_summary(config), _tf_summary(start)]


def text_value(tag, text):
    """A Summary.Value for TensorBoard's text dashboard (Markdown)."""
    metadata = tf1.SummaryMetadata(
        plugin_data=tf1.SummaryMetadata.PluginData(plugin_name='text'))
    return tf1.Summary.Value(tag=tag, metadata=metadata,
                             tensor=tf.make_tensor_proto(text.encode('utf-8'), tf.string))


def png_value(tag, png, height, width):
    """A Summary.Value for the images dashboard from PNG bytes."""
    return tf1.Summary.Value(tag=tag, image=tf1.Summary.Image(
        height=height, width=width, colorspace=4 if png[25:26] == b'\x06' else 3,
        encoded_image_string=png))


def rgb_value(tag, rgb):
    """A Summary.Value for the images dashboard from [H, W, 3] uint8 RGB."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format='PNG')
    return png_value(tag, buf.getvalue(), rgb.shape[0], rgb.shape[1])


def _code_block(text):
    """Markdown: `text` verbatim (every line indented four spaces)."""
    return '\n'.join('    ' + line for line in text.splitlines())


def command_line(argv=None):
    return ' '.join(shlex.quote(a) for a in (sys.argv if argv is None else argv))


def write_run_start(writer, args, record, step, precision=None, argv=None):
    """Writes the HParams experiment and session start, the command line and the provenance
    record (without its image list) at `step` (the run's first step in this process)."""
    hparams = run_hparams(args, record.get('initialised_from'), precision,
                          record.get('class_weights'))
    trial = os.path.normpath(args.snapshot_dir)
    for summary in hparams_summaries(hparams, trial, time.time()):
        writer.add_summary(summary, step)
    shown = {k: v for k, v in record.items() if k not in OMITTED_RECORD_KEYS}
    writer.add_summary(tf1.Summary(value=[
        text_value(COMMAND_TAG, _code_block(command_line(argv))),
        text_value(RECORD_TAG, _code_block(json.dumps(shown, indent=2)))]), step)
    writer.flush()


def best_summary(value):
    """The best validation mIoU so far, as a Summary (BEST_MIOU_TAG)."""
    return tf1.Summary(value=[tf1.Summary.Value(tag=BEST_MIOU_TAG, simple_value=value)])
