"""Reading and writing Caffe's binary NetParameter (.caffemodel) without Caffe or caffe_pb2.

A hand-written decoder of the protobuf wire format, reduced to what weight conversion needs:
each layer's name, type and parameter blobs.

  NetParameter        layer = 100 (LayerParameter, V2); layers = 2 (V1LayerParameter, legacy)
  LayerParameter      name = 1, type = 2 (string), blobs = 7
  V1LayerParameter    name = 4, type = 5 (enum LayerType), blobs = 6
  BlobProto           shape = 7 (BlobShape: dim = 1, int64, packed or not),
                      data = 5 (float, packed or not), double_data = 8,
                      legacy num = 1, channels = 2, height = 3, width = 4

Every other field is skipped by its wire type. Packed float data is decoded with
np.frombuffer (a 170 MB model parses in well under a second); unpacked repeated floats, which
old writers may produce, are decoded run by run with NumPy as well.

Blob shapes follow Caffe's Blob::FromProto: the legacy (num, channels, height, width) when any
of those four is set, else BlobShape's dims.
"""
import collections

import numpy as np

from deeplab_resnet.common.errors import InputError

CaffeLayer = collections.namedtuple('CaffeLayer', ['name', 'type', 'blobs'])
"""One layer of a caffemodel: name (str), type (str, e.g. 'Convolution'; V1 enums are given
their V2 names) and blobs (list of np.float32 arrays, in the stored shapes)."""

# Wire types.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5

# NetParameter's fields -> the wire types they may use (repeated scalars may be packed). Any
# other field number at the top level before the first layer means the file is not a
# NetParameter.
_NET_FIELDS = {
    1: (_BYTES,),               # name
    2: (_BYTES,),               # layers (V1LayerParameter)
    3: (_BYTES,),               # input
    4: (_VARINT, _BYTES),       # input_dim
    5: (_VARINT,),              # force_backward
    6: (_BYTES,),               # state
    7: (_VARINT,),              # debug_info
    8: (_BYTES,),               # input_shape
    100: (_BYTES,),             # layer (LayerParameter)
}
_NET_LAYER, _NET_LAYERS_V1 = 100, 2

# V1LayerParameter.LayerType -> the V2 type string (Caffe's UpgradeV1LayerType).
V1_LAYER_TYPES = {
    0: '', 1: 'Accuracy', 2: 'BNLL', 3: 'Concat', 4: 'Convolution', 5: 'Data', 6: 'Dropout',
    7: 'EuclideanLoss', 8: 'Flatten', 9: 'HDF5Data', 10: 'HDF5Output', 11: 'Im2col',
    12: 'ImageData', 13: 'InfogainLoss', 14: 'InnerProduct', 15: 'LRN',
    16: 'MultinomialLogisticLoss', 17: 'Pooling', 18: 'ReLU', 19: 'Sigmoid', 20: 'Softmax',
    21: 'SoftmaxWithLoss', 22: 'Split', 23: 'TanH', 24: 'WindowData', 25: 'Eltwise',
    26: 'Power', 27: 'SigmoidCrossEntropyLoss', 28: 'HingeLoss', 29: 'MemoryData',
    30: 'ArgMax', 31: 'Threshold', 32: 'DummyData', 33: 'Slice', 34: 'MVN', 35: 'AbsVal',
    36: 'Silence', 37: 'ContrastiveLoss', 38: 'Exp', 39: 'Deconvolution',
}

_FLOAT_TAG = (5 << 3) | _FIXED32     # BlobProto.data, one unpacked element: 0x2d
_DOUBLE_TAG = (8 << 3) | _FIXED64    # BlobProto.double_data, one unpacked element: 0x41


class _Malformed(Exception):
    def __init__(self, reason, pos):
        Exception.__init__(self, reason)
        self.reason = reason
        self.pos = pos


# ---------------------------------------------------------------------------------------------
# Decoding.

def _varint(buf, pos, end):
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Malformed('truncated varint', pos)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7f) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Malformed('varint longer than 10 bytes', pos)


def _field(buf, pos, end):
    """One field at pos -> (field number, wire type, value, value_end, next_pos).

    value is the integer for varints, else the start offset of the payload (value_end its end).
    """
    key, p = _varint(buf, pos, end)
    number, wire = key >> 3, key & 7
    if number == 0:
        raise _Malformed('field number 0', pos)
    if wire == _VARINT:
        value, p = _varint(buf, p, end)
        return number, wire, value, p, p
    if wire == _BYTES:
        size, p = _varint(buf, p, end)
        if p + size > end:
            raise _Malformed('length-delimited field %d runs past its end' % number, pos)
        return number, wire, p, p + size, p + size
    if wire == _FIXED32:
        if p + 4 > end:
            raise _Malformed('truncated 32-bit field %d' % number, pos)
        return number, wire, p, p + 4, p + 4
    if wire == _FIXED64:
        if p + 8 > end:
            raise _Malformed('truncated 64-bit field %d' % number, pos)
        return number, wire, p, p + 8, p + 8
    raise _Malformed('invalid wire type %d (field %d)' % (wire, number), pos)


def _string(buf, start, end):
    try:
        return bytes(buf[start:end]).decode('utf-8')
    except UnicodeDecodeError:
        raise _Malformed('a layer name or type that is not UTF-8', start)


def _int64(value):
    return value - (1 << 64) if value >= (1 << 63) else value


def _packed_varints(buf, start, end):
    values = []
    pos = start
    while pos < end:
        value, pos = _varint(buf, pos, end)
        values.append(_int64(value))
    return values


def _unpacked_run(buf, tag_pos, end, tag, itemsize):
    """A run of consecutive one-byte-tagged fixed-size elements starting at tag_pos
    (tag, value, tag, value, ...) -> (raw little-endian values as bytes array, next_pos)."""
    record = itemsize + 1
    count = (end - tag_pos) // record
    raw = np.frombuffer(buf, np.uint8, count * record, tag_pos).reshape(count, record)
    not_tag = np.flatnonzero(raw[:, 0] != tag)
    run = int(not_tag[0]) if not_tag.size else count
    return raw[:run, 1:], tag_pos + run * record


def _parse_blob_shape(buf, start, end):
    dims = []
    pos = start
    while pos < end:
        number, wire, value, vend, pos = _field(buf, pos, end)
        if number == 1:
            if wire == _VARINT:
                dims.append(_int64(value))
            elif wire == _BYTES:
                dims.extend(_packed_varints(buf, value, vend))
            else:
                raise _Malformed('BlobShape.dim with wire type %d' % wire, value)
    return dims


def _parse_blob(buf, start, end):
    floats, doubles = [], []
    legacy = {}
    dims = None
    pos = start
    while pos < end:
        tag_pos = pos
        number, wire, value, vend, pos = _field(buf, pos, end)
        if number == 5:
            if wire == _BYTES:
                if (vend - value) % 4:
                    raise _Malformed('packed float data of %d bytes' % (vend - value), value)
                floats.append(np.frombuffer(buf, '<f4', (vend - value) // 4, value))
            elif wire == _FIXED32:
                if value - tag_pos == 1:   # one-byte tag: decode the whole run at once
                    raw, pos = _unpacked_run(buf, tag_pos, end, _FLOAT_TAG, 4)
                    floats.append(raw.copy().view('<f4').reshape(-1))
                else:
                    floats.append(np.frombuffer(buf, '<f4', 1, value))
            else:
                raise _Malformed('BlobProto.data with wire type %d' % wire, tag_pos)
        elif number == 8:
            if wire == _BYTES:
                if (vend - value) % 8:
                    raise _Malformed('packed double data of %d bytes' % (vend - value), value)
                doubles.append(np.frombuffer(buf, '<f8', (vend - value) // 8, value))
            elif wire == _FIXED64:
                if value - tag_pos == 1:
                    raw, pos = _unpacked_run(buf, tag_pos, end, _DOUBLE_TAG, 8)
                    doubles.append(raw.copy().view('<f8').reshape(-1))
                else:
                    doubles.append(np.frombuffer(buf, '<f8', 1, value))
            else:
                raise _Malformed('BlobProto.double_data with wire type %d' % wire, tag_pos)
        elif number == 7:
            if wire != _BYTES:
                raise _Malformed('BlobProto.shape with wire type %d' % wire, tag_pos)
            dims = (dims or []) + _parse_blob_shape(buf, value, vend)
        elif number in (1, 2, 3, 4):
            if wire != _VARINT:
                raise _Malformed('legacy blob dimension with wire type %d' % wire, tag_pos)
            legacy[number] = _int64(value)

    if doubles and not floats:
        data = np.concatenate(doubles).astype(np.float32)
    elif floats:
        data = np.concatenate(floats).astype(np.float32)   # a copy, native byte order
    else:
        data = np.zeros(0, np.float32)
    if legacy:
        shape = tuple(legacy.get(i, 0) for i in (1, 2, 3, 4))
    elif dims is not None:
        shape = tuple(dims)
    else:
        shape = (data.size,)
    if any(d < 0 for d in shape):
        raise _Malformed('negative blob dimension %s' % (shape,), start)
    count = int(np.prod(shape, dtype=np.int64))
    if count != data.size:
        raise _Malformed('blob of shape %s holds %d values' % (shape, data.size), start)
    return data.reshape(shape)


def _parse_layer(buf, start, end, v1):
    name_field, type_field, blobs_field = (4, 5, 6) if v1 else (1, 2, 7)
    name, layer_type, blobs = '', '', []
    pos = start
    while pos < end:
        tag_pos = pos
        number, wire, value, vend, pos = _field(buf, pos, end)
        if number == name_field and wire == _BYTES:
            name = _string(buf, value, vend)
        elif number == type_field:
            if v1 and wire == _VARINT:
                layer_type = V1_LAYER_TYPES.get(value, 'V1LayerType%d' % value)
            elif not v1 and wire == _BYTES:
                layer_type = _string(buf, value, vend)
            else:
                raise _Malformed('layer type with wire type %d' % wire, tag_pos)
        elif number == blobs_field:
            if wire != _BYTES:
                raise _Malformed('layer blobs with wire type %d' % wire, tag_pos)
            blobs.append(_parse_blob(buf, value, vend))
    return CaffeLayer(name, layer_type, blobs)


def _looks_like_text(data):
    head = data[:256]
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def parse_caffemodel(data, source='<bytes>'):
    """Binary NetParameter (bytes) -> list of CaffeLayer, in file order (V2 `layer` and V1
    `layers` both, as they come). Raises InputError naming `source` if it is not one."""
    end = len(data)
    layers = []
    pos = 0
    try:
        while pos < end:
            tag_pos = pos
            number, wire, value, vend, pos = _field(data, pos, end)
            if number in _NET_FIELDS:
                if wire not in _NET_FIELDS[number]:
                    raise _Malformed('NetParameter field %d with wire type %d'
                                     % (number, wire), tag_pos)
            elif not layers:
                # Before any layer, an unknown field means this is not a NetParameter; after
                # valid layers it may be a Caffe fork's extension, skipped as protobuf does.
                raise _Malformed('field %d (wire type %d) is not part of a NetParameter'
                                 % (number, wire), tag_pos)
            if number in (_NET_LAYER, _NET_LAYERS_V1):
                layers.append(_parse_layer(data, value, vend, v1=(number == _NET_LAYERS_V1)))
    except _Malformed as e:
        hint = ''
        if _looks_like_text(data):
            hint = ' (it looks like a text file, e.g. a .prototxt; a binary .caffemodel is needed)'
        raise InputError('%s: not a Caffe model (.caffemodel): %s at byte %d%s'
                         % (source, e.reason, e.pos, hint))
    if not layers:
        what = 'empty file' if not end else 'no layers found'
        raise InputError('%s: not a Caffe model (.caffemodel): %s' % (source, what))
    return layers


def read_caffemodel(path):
    """A .caffemodel file -> list of CaffeLayer(name, type, [np.float32 arrays]).

    Raises InputError (one line naming the file) for a missing or unreadable file and for
    anything that is not a binary Caffe NetParameter (random bytes, an image, an empty or
    truncated file, a text prototxt).
    """
    return parse_caffemodel(read_bytes(path), path)


def read_bytes(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except IsADirectoryError:
        raise InputError('%s: is a directory, not a .caffemodel file' % path)
    except OSError as e:
        raise InputError('%s: cannot read (%s)' % (path, e.strerror or e.__class__.__name__))


# ---------------------------------------------------------------------------------------------
# Encoding (V2 format, packed floats): used to make synthetic models for the tests.

def encode_varint(value):
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        b = value & 0x7f
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_bytes_field(number, payload):
    return encode_varint((number << 3) | _BYTES) + encode_varint(len(payload)) + payload


def encode_blob(array):
    """np array -> BlobProto bytes: BlobShape with packed dims, packed float data."""
    array = np.asarray(array, dtype='<f4')
    shape = encode_bytes_field(1, b''.join(encode_varint(int(d)) for d in array.shape))
    return encode_bytes_field(7, shape) + encode_bytes_field(5, array.tobytes())


def encode_layer(name, layer_type, blobs):
    """-> the bytes of one NetParameter `layer` (field 100) entry."""
    payload = (encode_bytes_field(1, name.encode('utf-8'))
               + encode_bytes_field(2, layer_type.encode('utf-8'))
               + b''.join(encode_bytes_field(7, encode_blob(b)) for b in blobs))
    return encode_bytes_field(100, payload)


def write_caffemodel(path, layers, net_name='synthetic'):
    """Writes a V2 binary NetParameter: layers is an iterable of (name, type, [arrays])."""
    with open(path, 'wb') as f:
        f.write(encode_bytes_field(1, net_name.encode('utf-8')))
        for name, layer_type, blobs in layers:
            f.write(encode_layer(name, layer_type, blobs))
