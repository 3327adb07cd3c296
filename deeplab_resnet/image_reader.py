"""The input pipeline: list file -> tf.data -> [N, H, W, 3] float32 BGR mean-subtracted images
and [N, H, W, 1] uint8 labels.

Decoding goes through PIL (in `tf.numpy_function`, parallel) because a palette PNG must be read
as its indices, which TensorFlow's PNG decoder cannot do; augmentation is TensorFlow ops.
Every listed file is checked to exist before the dataset is built. Training can check every
label mask as it is decoded (`num_classes`): a value that is neither a class nor the ignore
label stops the run at the batch that holds it, naming the file, with no scan of the whole list
before the first step (evaluation checks its masks up front, labels.py).
"""
import functools

import numpy as np
import tensorflow as tf

from deeplab_resnet import datalist, imageio, labels
from deeplab_resnet.constants import IGNORE_LABEL, IMG_MEAN_BGR, SCALE_RANGE
from deeplab_resnet.errors import InputError

tf1 = tf.compat.v1

ERROR_MARKER = 'DEEPLAB_INPUT_ERROR: '


def input_error_from_op_error(err):
    """An InputError raised inside the pipeline reaches Session.run as a tf OpError; returns
    the InputError (its one-line message), or None if the OpError is something else."""
    text = getattr(err, 'message', str(err))
    if ERROR_MARKER in text:
        message = text.split(ERROR_MARKER, 1)[1].splitlines()[0]
        return InputError(message.rstrip('\'"'))
    return None


def out_of_range_in_mask(mask, num_classes, ignore_label):
    """Sorted values of a [H, W] uint8 mask that are neither classes 0..C-1 nor the ignore
    label (a histogram of the 256 values: no sort of the pixels)."""
    counts = np.bincount(mask.ravel(), minlength=256)
    return [v for v in np.flatnonzero(counts).tolist() if v >= num_classes and v != ignore_label]


def _decode_pair(image_path, label_path, num_classes=None, ignore_label=IGNORE_LABEL):
    """PIL decode (runs in tf.numpy_function). Returns RGB uint8 [H, W, 3], labels uint8
    [H, W, 1] (zeros [H, W, 1] for an unlabelled image, flagged by label_path == b'').
    num_classes: when set, a label value outside 0..C-1 that is not the ignore label is an
    InputError naming the mask (labels.bad_values_message)."""
    image_path = image_path.decode('utf-8')
    label_path = label_path.decode('utf-8')
    try:
        image = imageio.read_image(image_path)
        if label_path:
            label = imageio.read_label(label_path)
            if label.shape != image.shape[:2]:
                raise InputError('%s: label size %dx%d differs from image %s (%dx%d)' % (
                    label_path, label.shape[0], label.shape[1], image_path,
                    image.shape[0], image.shape[1]))
            if num_classes:
                bad = out_of_range_in_mask(label, num_classes, ignore_label)
                if bad:
                    raise InputError(labels.bad_values_message(label_path, bad, num_classes,
                                                               ignore_label))
        else:
            label = np.zeros(image.shape[:2], np.uint8)
    except InputError as e:
        raise ValueError(ERROR_MARKER + str(e))
    return image, label[:, :, None]


def decode_example(image_path, label_path, num_classes=None, ignore_label=IGNORE_LABEL):
    """tf strings -> (image [H, W, 3] uint8 RGB, label [H, W, 1] uint8); with num_classes,
    an out-of-range label value fails the pipeline (an InputError at Session.run, see
    input_error_from_op_error) at the example that holds it."""
    decode = functools.partial(_decode_pair, num_classes=num_classes, ignore_label=ignore_label)
    image, label = tf.numpy_function(decode, [image_path, label_path],
                                     [tf.uint8, tf.uint8], stateful=False)
    image.set_shape([None, None, 3])
    label.set_shape([None, None, 1])
    return image, label


def preprocess_image(image_rgb, img_mean=IMG_MEAN_BGR):
    """[..., H, W, 3] uint8 RGB -> float32 BGR minus the mean."""
    bgr = tf.reverse(tf.cast(image_rgb, tf.float32), axis=[-1])
    return bgr - tf.constant(img_mean, tf.float32)


def draw_seed(seed, position, salt):
    """The stateless seed ([2] int64) of one random draw: a function of the run's seed, the
    example's position in the run's sequence and which draw it is (`salt`), so that every
    crop, flip and scale is the same whatever the threads and whenever the run is resumed."""
    return tf.stack([tf.cast(position, tf.int64),
                     tf.constant(seed, tf.int64) * 8 + salt])


def random_scale(image, label, seed, scale_set=None):
    """Scales image (bilinear) and label (nearest) by one random factor: uniform in
    SCALE_RANGE, or drawn from `scale_set` (the Caffe recipe's discrete scales).
    seed: [2] int64 stateless seed (draw_seed)."""
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


def random_mirror(image, label, seed):
    """Left-right flip of both with probability 0.5; seed: [2] int64 stateless seed."""
    flip = tf.random.stateless_uniform([], seed, 0, 1.0) < 0.5
    return (tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image),
            tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label))


def random_crop_and_pad(image, label, crop_h, crop_w, seed, ignore_label=IGNORE_LABEL):
    """Pads bottom/right to at least the crop size (image with 0 = the mean after mean
    subtraction, label with the ignore label) and takes a random crop.

    Args: image [H, W, 3] float32 (mean-subtracted), label [H, W, 1] uint8, seed [2] int64.
    Returns: [crop_h, crop_w, 3] float32, [crop_h, crop_w, 1] uint8.
    """
    label = tf.cast(label, tf.float32) - ignore_label   # so that padding 0 becomes ignore
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


def shuffled_index(position, num_examples, seed):
    """The example at `position` of a run's sequence: epoch e = position // n visits the list
    in a permutation drawn from (seed, e) (tf.random.experimental.index_shuffle), so the
    sequence is a pure function of the seed and can start anywhere."""
    epoch = position // num_examples
    return tf.random.experimental.index_shuffle(
        position % num_examples, tf.stack([tf.constant(seed, tf.int64), epoch]),
        num_examples - 1)


class ImageReader(object):
    """tf.data reader of a list file (the original project's ImageReader, without queues).

    Args:
      data_dir: directory the list's paths are relative to.
      data_list: list file path.
      input_size: (h, w) crop for training, or None for full images (evaluation).
      random_scale, random_mirror: training augmentation.
      ignore_label: label padding value.
      img_mean: BGR mean subtracted from images.
      shuffle: visit the list in a new permutation every epoch (training).
      scale_set: optional discrete scale set for random_scale.
      seed: the run's seed: the training sequence (order and augmentation) is a function of
        it alone (default DEFAULT_SEED), the same for any thread count and on resume.
      need_labels: refuse lines without a label path.
      num_classes: training: stop at the first decoded mask holding a value that is neither
        a class 0..C-1 nor ignore_label (None: no check, e.g. --ignore-out-of-range; the loss
        then ignores such pixels).
      num_parallel_calls: decoding parallelism (tf.data.AUTOTUNE by default).
    All listed files are checked to exist on construction (InputError otherwise).
    """

    DEFAULT_SEED = 0

    def __init__(self, data_dir, data_list, input_size, random_scale=False,
                 random_mirror=False, ignore_label=IGNORE_LABEL, img_mean=IMG_MEAN_BGR,
                 shuffle=None, scale_set=None, seed=None, need_labels=True,
                 num_parallel_calls=None, num_classes=None):
        self.examples = datalist.load_examples(data_list, data_dir, need_labels)
        if input_size is not None:   # training: a bad file found now, not at its first step
            imageio.check_headers(self.examples, data_list)
        self.data_list = data_list
        self.input_size = input_size
        self.random_scale = random_scale
        self.random_mirror = random_mirror
        self.ignore_label = ignore_label
        self.img_mean = tuple(img_mean)
        self.shuffle = (input_size is not None) if shuffle is None else shuffle
        self.scale_set = scale_set
        self.seed = self.DEFAULT_SEED if seed is None else int(seed)
        self.num_parallel_calls = num_parallel_calls or tf.data.AUTOTUNE
        self.num_classes = num_classes

    def __len__(self):
        return len(self.examples)

    @property
    def image_paths(self):
        return [ex.image for ex in self.examples]

    def shard_examples(self, shard=None):
        """This input pipeline's examples: every count-th from index on (one worker's part of
        the list in multi-worker training); all of them without a shard."""
        if shard is None or shard[0] <= 1:
            return self.examples
        count, index = shard
        if len(self.examples) < count:
            raise InputError('%s: %d entries cannot be shared by %d workers'
                             % (self.data_list, len(self.examples), count))
        return self.examples[index::count]

    def _train_map(self, image_rgb, label, position):
        image = preprocess_image(image_rgb, self.img_mean)
        if self.random_scale:
            image, label = random_scale(image, label, draw_seed(self.seed, position, 1),
                                        self.scale_set)
        if self.random_mirror:
            image, label = random_mirror(image, label, draw_seed(self.seed, position, 2))
        return random_crop_and_pad(image, label, self.input_size[0], self.input_size[1],
                                   draw_seed(self.seed, position, 3), self.ignore_label)

    def _eval_map(self, image_rgb, label):
        return preprocess_image(image_rgb, self.img_mean), label

    def training_dataset(self, batch_size, shard=None, start=0):
        """The endless training sequence from `start` (examples of this pipeline consumed so
        far): ([batch, h, w, 3] float32 BGR - mean, [batch, h, w, 1] uint8) batches, shuffled
        per epoch, augmented and cropped. Example p of the sequence is the same whatever the
        thread timing and wherever the sequence starts (shuffled_index, draw_seed)."""
        examples = self.shard_examples(shard)
        image_paths = tf.constant([ex.image for ex in examples])
        label_paths = tf.constant([ex.label or '' for ex in examples])
        n = len(examples)

        def locate(position):
            index = (shuffled_index(position, n, self.seed) if self.shuffle
                     else position % n)
            return image_paths[index], label_paths[index], position

        def decode(image_path, label_path, position):
            return decode_example(image_path, label_path, self.num_classes,
                                  self.ignore_label) + (position,)

        ds = tf.data.Dataset.range(int(start), np.iinfo(np.int64).max).map(locate)
        ds = ds.map(decode, num_parallel_calls=self.num_parallel_calls, deterministic=True)
        ds = ds.map(self._train_map, num_parallel_calls=self.num_parallel_calls,
                    deterministic=True)
        return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    def dataset(self, batch_size=1, repeat=None, with_rgb=False, shard=None, start=0):
        """Dataset of (images, labels) batches.

        Training (input_size set): training_dataset(batch_size, shard, start), endless.
        Evaluation (input_size None): one pass in list order (endless with repeat), full
          images, batch 1; with_rgb adds the decoded [1, H, W, 3] uint8 RGB image (for CRF
          and overlays).
        shard: (count, index): this worker's part of the list (shard_examples).
        """
        if self.input_size is not None:
            return self.training_dataset(batch_size, shard, start)
        examples = self.shard_examples(shard)
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.constant([ex.image for ex in examples]),
             tf.constant([ex.label or '' for ex in examples])))
        if repeat:
            ds = ds.repeat()
        ds = ds.map(decode_example, num_parallel_calls=self.num_parallel_calls,
                    deterministic=True)
        if with_rgb:
            ds = ds.map(lambda img, lab: self._eval_map(img, lab) + (img,))
        else:
            ds = ds.map(self._eval_map)
        return ds.batch(1).prefetch(tf.data.AUTOTUNE)

    def dequeue(self, num_elements, start=0):
        """The original API: a (images, labels) batch of training crops from a one-shot
        iterator, as tensors in the current graph."""
        return tf1.data.make_one_shot_iterator(
            self.dataset(num_elements, start=start)).get_next()
