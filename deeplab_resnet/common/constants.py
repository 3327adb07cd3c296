"""Constants fixed by the DeepLab-v2 paper, the Caffe reference model and PASCAL VOC.

Everything the scripts and the package share as a fixed number lives here, named once.
"""

# Caffe / ImageNet mean in BGR order (the order the converted Caffe weights expect).
IMG_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
CHANNEL_ORDER = 'BGR'

IGNORE_LABEL = 255
NUM_CLASSES_VOC = 21

VOC_CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
    'sheep', 'sofa', 'train', 'tvmonitor',
)

# Network.
BN_EPSILON = 1e-5           # Caffe BatchNorm default (slim's 1e-3 is not Caffe's).
BN_DECAY = 0.999            # Caffe moving_average_fraction, slim batch_norm default.
RESNET101_BLOCKS = (3, 4, 23, 3)
ASPP_RATES = (6, 12, 18, 24)
ASPP_INIT_STD = 0.01   # DeepLab-v2 prototxt: gaussian filler, std 0.01, for fc1_voc12_c*
# Caffe layer names of the classifier: the ASPP branches fc1_voc12_c0..c3 (one per rate),
# summed into the logits fc1_voc12. Here, not in model.py, so that the TensorFlow-free modules
# (convert.py before a model has parsed, the PyTorch benchmark) can name them too.
LOGITS = 'fc1_voc12'
ASPP_PREFIX = LOGITS + '_c'
ASPP_LAYERS = tuple('%s%d' % (ASPP_PREFIX, i) for i in range(len(ASPP_RATES)))
TRAIN_SCALES = (1.0, 0.75, 0.5)   # multi-scale towers, fused by element-wise max.

# Optimisation (DeepLab-v2 VOC recipe, the original project's train_msc.py defaults).
LR_MULT_BACKBONE = 1.0
LR_MULT_ASPP_WEIGHTS = 10.0
LR_MULT_ASPP_BIASES = 20.0
OPTIMIZERS = ('momentum', 'adam')   # train_msc.py --optimizer; momentum is the paper's
SCALE_RANGE = (0.5, 1.5)    # random scale, uniform (the original TF project)
CAFFE_SCALE_SET = (0.5, 0.75, 1.0, 1.25, 1.5)   # the Caffe recipe's discrete scales
CLASS_WEIGHT_METHODS = ('median-frequency', 'inverse-log')   # check --weights-method
ENET_WEIGHT_C = 1.02   # ENet (Paszke et al. 2016): class weight 1 / ln(c + p(class))

# Dense CRF, DeepLab-v2 ResNet-101 VOC settings (the values of the authors' DeepLab-v2 test
# configuration, also used by kazuto1011/deeplab-pytorch): 10 mean-field iterations, positional
# (Gaussian) kernel w=3, std 1 px; bilateral kernel w=4, std 67 px, colour std 3.
CRF_ITERATIONS = 10
CRF_POS_W = 3.0
CRF_POS_XY_STD = 1.0
CRF_BI_W = 4.0
CRF_BI_XY_STD = 67.0
CRF_BI_RGB_STD = 3.0
# DeepLab-v2's CRF search (evaluate_msc_with_CRF.py --crf-search): the Gaussian kernel (w2,
# sigma_gamma) held fixed (here at --crf-pos-*), w1, sigma_alpha, sigma_beta searched on 100 val
# images, this coarse grid (128 settings) then a finer round around its best (best +- half a
# step per axis: 3 x 3 x 3 = 27 settings, one of them the best itself); 155 settings.
CRF_SEARCH_IMAGES = 100
CRF_SEARCH_BI_W = (3.0, 4.0, 5.0, 6.0)                                     # w1
CRF_SEARCH_BI_XY_STD = (30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)   # sigma_alpha
CRF_SEARCH_BI_RGB_STD = (3.0, 4.0, 5.0, 6.0)                               # sigma_beta

# Files.
CHECKPOINT_NAME = 'model.ckpt'   # <dir>/model.ckpt (convert.py), <dir>/model.ckpt-<step> (training)
DEFAULT_INIT_CHECKPOINT = './deeplab_resnet.ckpt'   # the original project's --restore-from
