"""The resizing conventions every graph shares, and the original project's prepare_label.

Images and logits are resized bilinearly with align_corners=True, as Caffe's Interp layer;
labels are resized with centre-aligned nearest neighbour (half_pixel_centers), so a
downsampled label never shifts by a pixel.
"""
import tensorflow as tf

tf1 = tf.compat.v1
# The suite uses tf.compat.v1 on purpose: TensorFlow's deprecation notices are noise here.
tf.get_logger().setLevel('ERROR')


def resize_bilinear(x, size):
    """[N, H, W, C] float -> [N, size[0], size[1], C] float32, align_corners=True."""
    return tf1.image.resize_bilinear(x, size, align_corners=True)


def resize_labels(labels, size):
    """[N, H, W, 1] integer labels -> [N, size[0], size[1], 1], centre-aligned nearest."""
    return tf1.image.resize_nearest_neighbor(labels, size, half_pixel_centers=True)


def scaled_size(size_hw, scale):
    """int(h * scale), int(w * scale) for a dynamic [2] int32 size (as the original)."""
    return tf.cast(tf.cast(size_hw, tf.float32) * scale, tf.int32)


def prepare_label(input_batch, new_size, num_classes, one_hot=True):
    """Resizes labels to the logits' size (centre-aligned nearest) and optionally one-hot
    encodes them (TensorFlow).

    Args:
      input_batch: [N, H, W, 1] integer labels.
      new_size: [2] int32 (h, w).
    Returns: [N, h, w] int32, or [N, h, w, num_classes] float32 one-hot (ignored pixels all 0).
    """
    labels = tf.squeeze(resize_labels(input_batch, new_size), axis=[3])
    labels = tf.cast(labels, tf.int32)
    if one_hot:
        return tf.one_hot(labels, depth=num_classes)
    return labels
