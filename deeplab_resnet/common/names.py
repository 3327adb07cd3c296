"""Default class names: the VOC names for 21 classes, 'class_<i>' otherwise (NumPy-free)."""
from deeplab_resnet.common.constants import VOC_CLASS_NAMES


def class_names(num_classes, names=None):
    """Class names: the given list, the VOC names for 21 classes, else 'class_<i>'."""
    if names is not None:
        names = list(names)
        if len(names) != num_classes:
            raise ValueError('%d class names given for %d classes' % (len(names), num_classes))
        return names
    if num_classes == len(VOC_CLASS_NAMES):
        return list(VOC_CLASS_NAMES)
    return ['class_%d' % i for i in range(num_classes)]
