"""A user's script written against the original project (DrSleep/tensorflow-deeplab-resnet),
in the style of its train_msc.py, evaluate.py and inference.py: tf.compat.v1 names, a queue
coordinator, three towers sharing variables by variable_scope reuse, prepare_label,
tf.py_func summaries through decode_labels and inv_preprocess, a Saver snapshot, then the
snapshot restored by a second graph that segments an image into a colour mask.

Run by tests/test_package_original_api.py in a subprocess (disable_v2_behavior is
process-wide): python original_api_script.py DATA_DIR DATA_LIST IMAGE OUT_DIR
Writes OUT_DIR/facts.npz, OUT_DIR/model.ckpt-2.* and OUT_DIR/mask.png.
"""
import os
import sys

import numpy as np
import tensorflow.compat.v1 as tf
from PIL import Image

from deeplab_resnet import (DeepLabResNetModel, ImageReader, decode_labels, inv_preprocess,
                            prepare_label)

tf.disable_v2_behavior()

IMG_MEAN = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float32)
NUM_CLASSES = 3
BATCH_SIZE = 2
INPUT_SIZE = (33, 33)
SAVE_NUM_IMAGES = 2


def train(data_dir, data_list, out_dir):
    h, w = INPUT_SIZE
    coord = tf.train.Coordinator()
    with tf.name_scope('create_inputs'):
        reader = ImageReader(data_dir, data_list, INPUT_SIZE, True, True, 255, IMG_MEAN, coord)
        image_batch, label_batch = reader.dequeue(BATCH_SIZE)
        image_batch075 = tf.image.resize_images(image_batch, [int(h * 0.75), int(w * 0.75)])
        image_batch05 = tf.image.resize_images(image_batch, [int(h * 0.5), int(w * 0.5)])
    with tf.variable_scope('', reuse=False):
        net = DeepLabResNetModel({'data': image_batch}, is_training=True,
                                 num_classes=NUM_CLASSES)
    with tf.variable_scope('', reuse=True):
        net075 = DeepLabResNetModel({'data': image_batch075}, is_training=True,
                                    num_classes=NUM_CLASSES)
    with tf.variable_scope('', reuse=True):
        net05 = DeepLabResNetModel({'data': image_batch05}, is_training=True,
                                   num_classes=NUM_CLASSES)
    out100 = net.layers['fc1_voc12']
    out075 = net075.layers['fc1_voc12']
    out05 = net05.layers['fc1_voc12']
    size100 = tf.shape(out100)[1:3, ]
    fused = tf.reduce_max(tf.stack([out100, tf.image.resize_images(out075, size100),
                                    tf.image.resize_images(out05, size100)]), axis=0)

    def pixel_loss(logits, labels_small):
        gt_all = tf.reshape(labels_small, [-1, ])
        keep = tf.squeeze(tf.where(tf.less_equal(gt_all, NUM_CLASSES - 1)), 1)
        gt = tf.cast(tf.gather(gt_all, keep), tf.int32)
        pred = tf.gather(tf.reshape(logits, [-1, NUM_CLASSES]), keep)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(logits=pred,
                                                                             labels=gt))

    losses = []
    for logits in (fused, out100, out075, out05):
        labels_small = prepare_label(label_batch, tf.stack(logits.get_shape()[1:3]),
                                     num_classes=NUM_CLASSES, one_hot=False)
        losses.append(pixel_loss(logits, labels_small))
    l2 = [0.0005 * tf.nn.l2_loss(v) for v in tf.trainable_variables() if 'weights' in v.name]
    loss = tf.add_n(losses) + tf.add_n(l2)

    up = tf.image.resize_bilinear(fused, tf.shape(image_batch)[1:3, ])
    pred = tf.expand_dims(tf.argmax(up, axis=3), axis=3)
    images_summary = tf.py_func(inv_preprocess, [image_batch, SAVE_NUM_IMAGES, IMG_MEAN],
                                tf.uint8)
    labels_summary = tf.py_func(decode_labels, [label_batch, SAVE_NUM_IMAGES, NUM_CLASSES],
                                tf.uint8)
    preds_summary = tf.py_func(decode_labels, [pred, SAVE_NUM_IMAGES, NUM_CLASSES], tf.uint8)
    summary = tf.summary.image('images', tf.concat(axis=2, values=[
        images_summary, labels_summary, preds_summary]), max_outputs=SAVE_NUM_IMAGES)

    train_op = tf.train.MomentumOptimizer(1e-4, 0.9).minimize(loss,
                                                              var_list=tf.trainable_variables())
    moving_mean = [v for v in tf.global_variables() if v.op.name == 'bn_conv1/moving_mean'][0]
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    threads = tf.train.start_queue_runners(coord=coord, sess=sess)   # none: tf.data
    before = sess.run(moving_mean)
    for _ in range(2):
        fetched = sess.run([image_batch, label_batch, images_summary, labels_summary,
                            preds_summary, summary, loss, train_op])
    after = sess.run(moving_mean)
    saver = tf.train.Saver(var_list=tf.global_variables(), max_to_keep=10)
    saver.save(sess, os.path.join(out_dir, 'model.ckpt'), global_step=2)
    coord.request_stop()
    coord.join(threads)
    sess.close()
    images, labels, image_rows, label_rows, pred_rows, _, loss_value, _ = fetched
    return dict(before=before, after=after, images=images, labels=labels,
                image_rows=image_rows, label_rows=label_rows, pred_rows=pred_rows,
                loss=loss_value, trainable=len(tf.trainable_variables()))


def evaluate_first(data_dir, data_list):
    """evaluate.py's reader: full images, one at a time, .image and .label."""
    reader = ImageReader(data_dir, data_list, None, False, False, 255, IMG_MEAN,
                         tf.train.Coordinator())
    image, label = reader.image, reader.label
    with tf.Session() as sess:
        first = sess.run([image, label])
        second_image = sess.run(image)
    return dict(eval_image=first[0], eval_label=first[1], eval_second_image=second_image)


def segment(image_path, checkpoint, out_dir):
    """inference.py: one image, RGB -> BGR minus the mean, argmax, decode_labels."""
    img = tf.image.decode_jpeg(tf.read_file(image_path), channels=3)
    img_r, img_g, img_b = tf.split(axis=2, num_or_size_splits=3, value=img)
    img = tf.cast(tf.concat(axis=2, values=[img_b, img_g, img_r]), dtype=tf.float32)
    img -= IMG_MEAN
    net = DeepLabResNetModel({'data': tf.expand_dims(img, axis=0)}, is_training=False,
                             num_classes=NUM_CLASSES)
    out = tf.image.resize_bilinear(net.layers['fc1_voc12'], tf.shape(img)[0:2, ])
    pred = tf.expand_dims(tf.argmax(out, axis=3), axis=3)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        tf.train.Saver(var_list=tf.global_variables()).restore(sess, checkpoint)
        restored_mean = sess.run([v for v in tf.global_variables()
                                  if v.op.name == 'bn_conv1/moving_mean'][0])
        preds = sess.run(pred)
    msk = decode_labels(preds, num_classes=NUM_CLASSES)
    Image.fromarray(msk[0]).save(os.path.join(out_dir, 'mask.png'))
    return dict(preds=preds, restored_mean=restored_mean)


def main(data_dir, data_list, image_path, out_dir):
    facts = {}
    with tf.Graph().as_default():
        tf.set_random_seed(1234)
        facts.update(train(data_dir, data_list, out_dir))
    with tf.Graph().as_default():
        facts.update(evaluate_first(data_dir, data_list))
    with tf.Graph().as_default():
        facts.update(segment(image_path, os.path.join(out_dir, 'model.ckpt-2'), out_dir))
    np.savez(os.path.join(out_dir, 'facts.npz'), **facts)
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
