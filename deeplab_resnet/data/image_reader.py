"""The input pipeline: list file -> tf.data -> [N, H, W, 3] float32 BGR mean-subtracted images
and [N, H, W, 1] uint8 labels.

Images: JPEGs decode in TensorFlow (no Python, so the decoding threads run in parallel), with
the IDCT and upsampling PIL uses, so the pixels are PIL's; any other image, and any file
TensorFlow's decoder refuses, goes to PIL (imageio), which decodes it or names the file.
Labels always go through PIL (in `tf.numpy_function`): a palette PNG must be read as its
indices, and TensorFlow's PNG decoder gives its colours. A training example is cut to its
crop as early as the arithmetic allows: the random scale resizes the whole image, but the
mirror, the crop, the padding and the BGR order touch only the crop window, and without a
random scale only the window is converted to float. The crops are those of the whole-image
pipeline of a907866 (benchmarks/pipeline_reference.py), pixel for pixel (tests/test_data_reader.py).
Every listed file is checked to exist before the dataset is built. Training can check every
label mask as it is decoded (`num_classes`): a value that is neither a class nor the ignore
label stops the run at the example that holds it, naming the file, with no scan of the whole
list before the first step (evaluation checks its masks up front, labels.py).
"""
import os

import numpy as np
import tensorflow as tf

from deeplab_resnet.common.constants import IGNORE_LABEL, IMG_MEAN_BGR, SCALE_RANGE
from deeplab_resnet.common.errors import InputError
from deeplab_resnet.data import datalist, imageio, labels
from deeplab_resnet.data.labels import out_of_range_values

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


def _named_input_errors(read):
    """read(...) with an InputError turned into the ValueError that carries ERROR_MARKER
    through Session.run (input_error_from_op_error turns it back)."""
    def wrapped(*args):
        try:
            return read(*args)
        except InputError as e:
            raise ValueError(ERROR_MARKER + str(e))
    return wrapped


@_named_input_errors
def _pil_image(image_path):
    """imageio.read_image in tf.numpy_function: [H, W, 3] uint8 RGB."""
    return imageio.read_image(image_path.decode('utf-8'))


def out_of_range_in_mask(mask, num_classes, ignore_label):
    """Sorted values of a [H, W] uint8 mask that are neither classes 0..C-1 nor the ignore
    label: the values present, from a histogram of the 256 (no sort of the pixels), through
    the one validator's labels.out_of_range_values."""
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    return out_of_range_values(present, num_classes, ignore_label)


@_named_input_errors
def _pil_label(label_path, image_path, image_hw, num_classes=0, ignore_label=IGNORE_LABEL):
    """imageio.read_label in tf.numpy_function, checked against the image's size:
    [H, W, 1] uint8 (zeros for an unlabelled image, flagged by label_path == b'').
    num_classes > 0: a value that is neither a class 0..C-1 nor the ignore label is an
    InputError naming the mask (labels.bad_values_message)."""
    label_path = label_path.decode('utf-8')
    if not label_path:
        return np.zeros(tuple(image_hw) + (1,), np.uint8)
    label = imageio.read_label(label_path)
    if label.shape != tuple(image_hw):
        raise InputError('%s: label size %dx%d differs from image %s (%dx%d)' % (
            label_path, label.shape[0], label.shape[1], image_path.decode('utf-8'),
            image_hw[0], image_hw[1]))
    if num_classes:
        bad = out_of_range_in_mask(label, int(num_classes), int(ignore_label))
        if bad:
            raise InputError(labels.bad_values_message(label_path, bad, int(num_classes),
                                                       int(ignore_label)))
    return label[:, :, None]


JPEG_START = b'\xff\xd8'   # the SOI marker


def _is_rgb_or_grey_jpeg(contents):
    """True for a JPEG (SOI marker) of 1 or 3 components: what decode_jpeg gives as PIL
    does (CMYK ones are left to PIL's own conversion). Raises on a corrupt header."""
    return tf.cond(tf.equal(tf.strings.substr(contents, 0, 2), JPEG_START),
                   lambda: tf.not_equal(tf.image.extract_jpeg_shape(contents)[2], 4),
                   lambda: tf.constant(False))


def _tf_decode_jpeg(contents):
    """[H, W, 3] uint8 RGB; INTEGER_ACCURATE is libjpeg's 'islow' IDCT, PIL's (TensorFlow's
    default differs), with the same fancy upsampling: the pixels equal PIL's."""
    return tf.io.decode_jpeg(contents, channels=3, dct_method='INTEGER_ACCURATE')


def read_image(image_path):
    """tf string path -> [H, W, 3] uint8 RGB, the pixels of imageio.read_image.

    JPEGs decode in TensorFlow. Its decoder cannot name the file it fails on, so it is tried
    in a one-element dataset whose errors are dropped: a file it does not decode (truncated,
    corrupt, not a JPEG, CMYK) goes to PIL, which decodes it as before or raises the named
    InputError."""
    tried = (tf.data.Dataset.from_tensors(image_path).map(tf.io.read_file)
             .filter(_is_rgb_or_grey_jpeg).map(_tf_decode_jpeg).ignore_errors()
             .map(lambda image: (image, True)))
    nothing = tf.data.Dataset.from_tensors((tf.zeros([0, 0, 3], tf.uint8), False))
    decoded, ok = tried.concatenate(nothing).take(1).get_single_element()
    image = tf.cond(ok, lambda: decoded,
                    lambda: tf.numpy_function(_pil_image, [image_path], tf.uint8,
                                              stateful=False))
    image.set_shape([None, None, 3])
    return image


def read_label(label_path, image_path, image_hw, num_classes=None, ignore_label=IGNORE_LABEL):
    """tf strings and the image's [2] int32 size -> [H, W, 1] uint8 label indices (zeros when
    label_path is empty); an InputError naming the file when it is no index mask, its size
    differs from the image's or (with num_classes) it holds a value out of range."""
    label = tf.numpy_function(_pil_label, [label_path, image_path, image_hw,
                                           num_classes or 0, ignore_label], tf.uint8,
                              stateful=False)
    label.set_shape([None, None, 1])
    return label


def decode_example(image_path, label_path, num_classes=None, ignore_label=IGNORE_LABEL):
    """tf strings -> (image [H, W, 3] uint8 RGB, label [H, W, 1] uint8); with num_classes,
    an out-of-range label value fails the pipeline (an InputError at Session.run, see
    input_error_from_op_error) at the example that holds it."""
    image = read_image(image_path)
    return image, read_label(label_path, image_path, tf.shape(image)[:2], num_classes,
                             ignore_label)


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


def scaled_size(image_hw, seed, scale_set=None):
    """[2] int32 size of an [H, W] image after its random scale: one factor uniform in
    SCALE_RANGE, or drawn from `scale_set` (the Caffe recipe's discrete scales), floored, at
    least 1. seed: [2] int64 stateless seed (draw_seed)."""
    if scale_set:
        idx = tf.random.stateless_uniform([], seed, 0, len(scale_set), dtype=tf.int32)
        scale = tf.gather(tf.constant(scale_set, tf.float32), idx)
    else:
        scale = tf.random.stateless_uniform([], seed, SCALE_RANGE[0], SCALE_RANGE[1])
    return tf.maximum(tf.cast(tf.cast(image_hw, tf.float32) * scale, tf.int32), 1)


def subtract_mean(image_rgb, mean_rgb):
    """[H, W, 3] uint8 -> float32 minus the [3] mean. The mean is tiled along a row first:
    broadcasting a 3-vector over the innermost axis runs element by element, a row-long one
    vectorises (the same floats, half the time)."""
    width = tf.shape(image_rgb)[1]
    mean_row = tf.reshape(tf.tile(mean_rgb, [width]), [1, width, 3])
    return tf.cast(image_rgb, tf.float32) - mean_row


def mirror_draw(seed):
    """Whether to flip left-right (probability 0.5): [] bool; seed: [2] int64."""
    return tf.random.stateless_uniform([], seed, 0, 1.0) < 0.5


def crop_offset(size, crop_h, crop_w, seed):
    """[2] int32 top-left corner of the random crop in an image of `size` ([2] int32) padded
    bottom/right to at least the crop: the offset tf.image.stateless_random_crop draws for an
    [H, W, 4] tensor (image and label stacked, as the crops were first taken), so a seed
    keeps its crops. seed: [2] int64."""
    padded = tf.maximum(size, [crop_h, crop_w])
    limit = tf.concat([padded - [crop_h, crop_w] + 1, [1]], axis=0)
    draw = tf.random.stateless_uniform([3], seed, maxval=tf.int32.max, dtype=tf.int32)
    return (draw % limit)[:2]


def nearest_source(positions, in_size, out_size):
    """Input index of each output position of a nearest-neighbour resize from in_size to
    out_size with centre-aligned pixels: floor((p + 0.5) * in / out), clipped, in float32 as
    tf.image's ResizeNearestNeighbor (half_pixel_centers) computes it. [n] int32."""
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    index = tf.cast(tf.floor((tf.cast(positions, tf.float32) + 0.5) * scale), tf.int32)
    return tf.clip_by_value(index, 0, in_size - 1)


def pad_to(tensor, crop_h, crop_w, value):
    """Pads [h, w, C] bottom/right with `value` to [crop_h, crop_w, C] (static shape)."""
    shape = tf.shape(tensor)
    padded = tf.pad(tensor, [[0, crop_h - shape[0]], [0, crop_w - shape[1]], [0, 0]],
                    constant_values=value)
    padded.set_shape([crop_h, crop_w, tensor.shape[-1]])
    return padded


def training_crop(image_rgb, label, position, seed, crop_h, crop_w, random_scale=False,
                  random_mirror=False, scale_set=None, ignore_label=IGNORE_LABEL,
                  img_mean=IMG_MEAN_BGR):
    """One training example, example `position` of the run's sequence: the image scaled by
    a random factor (random_scale; bilinear, the label nearest), mirrored (random_mirror),
    padded bottom/right to at least the crop (image with 0, the mean after its subtraction;
    label with the ignore label) and cropped at a random place; each draw from
    draw_seed(seed, position, 1 / 2 / 3).

    Args: image_rgb [H, W, 3] uint8 RGB, label [H, W, 1] uint8, position [] int64.
    Returns: [crop_h, crop_w, 3] float32 BGR minus img_mean, [crop_h, crop_w, 1] uint8.

    Only the bilinear resize works on the whole image; the rest works on the crop window
    (the part of it inside the scaled image: rows x cols), which gives the same values:
    - the mean is subtracted before the resize (resizing first would round differently);
      subtracting the RGB-ordered mean and reversing the channels of the window gives the
      floats of reversing first;
    - the window of the mirrored image is the mirrored window at the mirrored column;
    - the label's nearest-neighbour resize is a choice of source pixels, made for the
      window's pixels alone (nearest_source).
    """
    mean_rgb = tf.constant(tuple(img_mean)[::-1], tf.float32)
    in_size = tf.shape(image_rgb)[:2]
    size = (scaled_size(in_size, draw_seed(seed, position, 1), scale_set) if random_scale
            else in_size)
    flip = mirror_draw(draw_seed(seed, position, 2)) if random_mirror else tf.constant(False)
    top, left = tf.unstack(crop_offset(size, crop_h, crop_w, draw_seed(seed, position, 3)))
    rows = tf.minimum(crop_h, size[0] - top)
    cols = tf.minimum(crop_w, size[1] - left)
    first_col = tf.where(flip, size[1] - left - cols, left)   # of the unmirrored image

    if random_scale:
        image = tf1.image.resize_bilinear(subtract_mean(image_rgb, mean_rgb)[None], size)[0]
        image = image[top:top + rows, first_col:first_col + cols]
    else:
        image = subtract_mean(image_rgb[top:top + rows, first_col:first_col + cols], mean_rgb)
    # Channels to BGR, and the columns too when mirrored (ReverseV2 takes the axes as data).
    image = tf.reverse(image, tf.boolean_mask([1, 2], tf.stack([flip, True])))

    column = tf.range(cols)
    column = first_col + tf.where(flip, cols - 1 - column, column)
    label = tf.gather(tf.gather(label, nearest_source(tf.range(top, top + rows), in_size[0],
                                                      size[0])),
                      nearest_source(column, in_size[1], size[1]), axis=1)
    return (pad_to(image, crop_h, crop_w, 0.0),
            pad_to(label, crop_h, crop_w, tf.constant(ignore_label, tf.uint8)))


def available_cpus():
    """CPUs this process may run on (its affinity mask, e.g. a Slurm or taskset share), or
    os.cpu_count() where the mask is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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

    The original's call shape works unchanged: ImageReader(data_dir, data_list, input_size,
    random_scale, random_mirror, ignore_label, img_mean, coord), then .dequeue(n) for training
    batches, or (input_size None) .image and .label, one full image at a time.

    Args:
      data_dir: directory the list's paths are relative to.
      data_list: list file path.
      input_size: (h, w) crop for training, or None for full images (evaluation).
      random_scale, random_mirror: training augmentation.
      ignore_label: label padding value.
      img_mean: BGR mean subtracted from images.
      coord: the original's tf.train.Coordinator, accepted and unused (tf.data has no queue
        runners to coordinate).
    Keyword-only:
      shuffle: visit the list in a new permutation every epoch (training).
      scale_set: optional discrete scale set for random_scale.
      seed: the run's seed: the training sequence (order and augmentation) is a function of
        it alone (default DEFAULT_SEED), the same for any thread count and on resume.
      need_labels: refuse lines without a label path.
      num_classes: training: stop at the first decoded mask holding a value that is neither
        a class 0..C-1 nor ignore_label (None: no check, e.g. --ignore-out-of-range; the loss
        then ignores such pixels).
      num_parallel_calls: decoding parallelism (tf.data.AUTOTUNE by default).
      num_parallel_calls: examples prepared in parallel (tf.data.AUTOTUNE by default, on
        a private pool of one thread per available CPU; a number also sizes that pool).
    All listed files are checked to exist on construction (InputError otherwise).
    """

    DEFAULT_SEED = 0

    def __init__(self, data_dir, data_list, input_size, random_scale=False,
                 random_mirror=False, ignore_label=IGNORE_LABEL, img_mean=IMG_MEAN_BGR,
                 coord=None, *, shuffle=None, scale_set=None, seed=None, need_labels=True,
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
        self.pipeline_threads = (num_parallel_calls if num_parallel_calls
                                 else available_cpus())
        self._next_full_image = None

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
        return training_crop(image_rgb, label, position, self.seed, self.input_size[0],
                             self.input_size[1], self.random_scale, self.random_mirror,
                             self.scale_set, self.ignore_label, self.img_mean)

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

        def example(position):
            index = (shuffled_index(position, n, self.seed) if self.shuffle
                     else position % n)
            image, label = decode_example(image_paths[index], label_paths[index],
                                          self.num_classes, self.ignore_label)
            return self._train_map(image, label, position)

        ds = tf.data.Dataset.range(int(start), np.iinfo(np.int64).max)
        ds = ds.map(example, num_parallel_calls=self.num_parallel_calls, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        return ds.with_options(self.threading_options())

    def threading_options(self):
        """tf.data options: a private pool of threads for the pipeline, one per CPU this
        process may use, so that its parallelism does not depend on the Session's inter-op
        threads (2 with --threads N)."""
        options = tf.data.Options()
        options.threading.private_threadpool_size = self.pipeline_threads
        return options

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
        ds = self.full_images(repeat, with_rgb, shard).batch(1)
        return ds.prefetch(tf.data.AUTOTUNE).with_options(self.threading_options())

    def full_images(self, repeat=None, with_rgb=False, shard=None):
        """Unbatched dataset of the list's full images in list order (endless with repeat):
        ([H, W, 3] float32 BGR minus the mean, [H, W, 1] uint8 label), with with_rgb also the
        decoded [H, W, 3] uint8 RGB image."""
        examples = self.shard_examples(shard)
        ds = tf.data.Dataset.from_tensor_slices(
            (tf.constant([ex.image for ex in examples]),
             tf.constant([ex.label or '' for ex in examples])))
        if repeat:
            ds = ds.repeat()
        ds = ds.map(decode_example, num_parallel_calls=self.num_parallel_calls,
                    deterministic=True)
        if with_rgb:
            return ds.map(lambda img, lab: self._eval_map(img, lab) + (img,))
        return ds.map(self._eval_map)

    def _full_image(self):
        """(image, label) of the original's full-image reader: one get_next of an endless
        iterator over the list in order, made once, so .image and .label are one example."""
        if self.input_size is not None:
            raise AttributeError('.image and .label are for a full-image reader '
                                 '(input_size=None); a training reader has .dequeue(n)')
        if self._next_full_image is None:
            ds = self.full_images(repeat=True).with_options(self.threading_options())
            self._next_full_image = tf1.data.make_one_shot_iterator(ds).get_next()
        return self._next_full_image

    @property
    def image(self):
        """The original's full-image reader: [H, W, 3] float32, BGR, mean-subtracted."""
        return self._full_image()[0]

    @property
    def label(self):
        """The original's full-image reader: [H, W, 1] uint8, the image's label."""
        return self._full_image()[1]

    def dequeue(self, num_elements, start=0):
        """The original API: a (images, labels) batch of training crops from a one-shot
        iterator, as tensors in the current graph."""
        return tf1.data.make_one_shot_iterator(
            self.dataset(num_elements, start=start)).get_next()
