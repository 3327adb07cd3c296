"""The training input pipeline as it was at a907866 (PIL decoding in `tf.numpy_function`, then
scale, mirror, pad and crop of the whole image in TensorFlow), frozen here as the yardstick of
deeplab_resnet.data.image_reader: benchmarks/speed.py times both in one run, and
tests/test_data_reader.py checks that the current pipeline gives the same pixels. Not used by the
scripts; do not change it to follow the package.
"""
import numpy as np
import tensorflow as tf

from deeplab_resnet.common.constants import IGNORE_LABEL, IMG_MEAN_BGR, SCALE_RANGE
from deeplab_resnet.data import imageio

tf1 = tf.compat.v1


def _decode_pair(image_path, label_path):
    image = imageio.read_image(image_path.decode('utf-8'))
    label_path = label_path.decode('utf-8')
    label = (imageio.read_label(label_path) if label_path
             else np.zeros(image.shape[:2], np.uint8))
    return image, label[:, :, None]


def _decode_example(image_path, label_path):
    image, label = tf.numpy_function(_decode_pair, [image_path, label_path],
                                     [tf.uint8, tf.uint8], stateful=False)
    image.set_shape([None, None, 3])
    label.set_shape([None, None, 1])
    return image, label


def _draw_seed(seed, position, salt):
    return tf.stack([tf.cast(position, tf.int64), tf.constant(seed, tf.int64) * 8 + salt])


def _random_scale(image, label, seed, scale_set=None):
    if scale_set:
        idx = tf.random.stateless_uniform([], seed, 0, len(scale_set), dtype=tf.int32)
        scale = tf.gather(tf.constant(scale_set, tf.float32), idx)
    else:
        scale = tf.random.stateless_uniform([], seed, SCALE_RANGE[0], SCALE_RANGE[1])
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new_shape = tf.maximum(tf.cast(shape * scale, tf.int32), 1)
    image = tf1.image.resize_bilinear(image[None], new_shape)[0]
    label = tf1.image.resize_nearest_neighbor(label[None], new_shape,
                                              half_pixel_centers=True)[0]
    return image, label


def _random_mirror(image, label, seed):
    flip = tf.random.stateless_uniform([], seed, 0, 1.0) < 0.5
    return (tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image),
            tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label))


def _random_crop_and_pad(image, label, crop_h, crop_w, seed, ignore_label):
    label = tf.cast(label, tf.float32) - ignore_label
    combined = tf.concat([image, label], axis=2)
    shape = tf.shape(combined)
    combined = tf.image.pad_to_bounding_box(combined, 0, 0, tf.maximum(crop_h, shape[0]),
                                            tf.maximum(crop_w, shape[1]))
    combined = tf.image.stateless_random_crop(combined, [crop_h, crop_w, 4], seed)
    image = combined[:, :, :3]
    label = tf.cast(combined[:, :, 3:] + ignore_label, tf.uint8)
    image.set_shape([crop_h, crop_w, 3])
    label.set_shape([crop_h, crop_w, 1])
    return image, label


def _shuffled_index(position, num_examples, seed):
    epoch = position // num_examples
    return tf.random.experimental.index_shuffle(
        position % num_examples, tf.stack([tf.constant(seed, tf.int64), epoch]),
        num_examples - 1)


def training_dataset(examples, input_size, batch_size, random_scale=False,
                     random_mirror=False, seed=0, scale_set=None, ignore_label=IGNORE_LABEL,
                     img_mean=IMG_MEAN_BGR, shuffle=True, start=0, num_parallel_calls=None):
    """The a907866 ImageReader.training_dataset over `examples` (datalist entries):
    ([batch, h, w, 3] float32 BGR - mean, [batch, h, w, 1] uint8) batches from `start`."""
    num_parallel_calls = num_parallel_calls or tf.data.AUTOTUNE
    image_paths = tf.constant([ex.image for ex in examples])
    label_paths = tf.constant([ex.label or '' for ex in examples])
    n = len(examples)

    def locate(position):
        index = _shuffled_index(position, n, seed) if shuffle else position % n
        return image_paths[index], label_paths[index], position

    def decode(image_path, label_path, position):
        return _decode_example(image_path, label_path) + (position,)

    def augment(image_rgb, label, position):
        image = (tf.reverse(tf.cast(image_rgb, tf.float32), axis=[-1])
                 - tf.constant(img_mean, tf.float32))
        if random_scale:
            image, label = _random_scale(image, label, _draw_seed(seed, position, 1),
                                         scale_set)
        if random_mirror:
            image, label = _random_mirror(image, label, _draw_seed(seed, position, 2))
        return _random_crop_and_pad(image, label, input_size[0], input_size[1],
                                    _draw_seed(seed, position, 3), ignore_label)

    ds = tf.data.Dataset.range(int(start), np.iinfo(np.int64).max).map(locate)
    ds = ds.map(decode, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.map(augment, num_parallel_calls=num_parallel_calls, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
