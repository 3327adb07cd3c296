"""Writes torch.save files (.pth) for tests, without PyTorch, following torch/serialization.py.

pickle.Pickler names a global by its module and qualified name, and checks that importing it
gives the same object, so it cannot name torch._utils._rebuild_tensor_v2 or torch.FloatStorage
without torch. stand_in_torch() puts two small stand-in modules `torch` and `torch._utils` in
sys.modules while a file is written (and restores sys.modules after), so that the pickles hold
exactly the globals PyTorch's do:

  tensor  -> REDUCE torch._utils._rebuild_tensor_v2 (storage, offset, size, stride, False,
             OrderedDict())                 offset, size, stride in elements
  storage -> persistent id ('storage', torch.<T>Storage, key, 'cpu', element count)
             (+ view metadata None in the legacy layout)

Layouts: write_zip (PyTorch >= 1.6: a stored zip archive ARCHIVE/data.pkl, ARCHIVE/data/<key>,
ARCHIVE/byteorder, ARCHIVE/version) and write_legacy (the single stream of _legacy_save: magic
number, protocol version, system info, the object, the sorted storage keys, then each storage
as an 8-byte little-endian element count and its bytes).
"""
import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
PROTOCOL_VERSION = 1001
STORAGES = {np.dtype('float32'): 'FloatStorage', np.dtype('float64'): 'DoubleStorage',
            np.dtype('float16'): 'HalfStorage', np.dtype('int64'): 'LongStorage',
            np.dtype('int32'): 'IntStorage', np.dtype('uint8'): 'ByteStorage'}


@contextlib.contextmanager
def stand_in_torch():
    """Stand-in `torch` (the storage classes) and `torch._utils` (_rebuild_tensor_v2) in
    sys.modules for the duration; whatever was there before is put back."""
    torch = types.ModuleType('torch')
    utils = types.ModuleType('torch._utils')
    for name in STORAGES.values():
        setattr(torch, name, type(name, (object,), {'__module__': 'torch'}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError('a stand-in: never called')
    _rebuild_tensor_v2.__module__ = 'torch._utils'
    _rebuild_tensor_v2.__qualname__ = '_rebuild_tensor_v2'
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    before = {name: sys.modules.get(name) for name in ('torch', 'torch._utils')}
    sys.modules['torch'], sys.modules['torch._utils'] = torch, utils
    try:
        yield torch, utils
    finally:
        for name, module in before.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


class Storage(object):
    """A storage to be written: a 1-D array (its dtype names the storage type)."""

    def __init__(self, data):
        self.data = np.array(data, order='C').reshape(-1)


class Tensor(object):
    """A tensor to be written: a view (offset, size, stride in elements) of a Storage."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)

    def __reduce_ex__(self, protocol):
        utils = sys.modules['torch._utils']
        return (utils._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride,
                                           False, collections.OrderedDict()))


def tensor(array):
    """A numpy array -> a Tensor of its own contiguous storage."""
    array = np.array(array, order='C')   # (ascontiguousarray would make a 0-d array 1-d)
    strides = tuple(s // array.itemsize for s in array.strides)
    return Tensor(Storage(array), 0, array.shape, strides)


def as_tensors(obj):
    """Numpy arrays inside dicts (kept OrderedDict), lists and tuples -> Tensors."""
    if isinstance(obj, np.ndarray):
        return tensor(obj)
    if isinstance(obj, dict):
        out = type(obj)()
        for k, v in obj.items():
            out[k] = as_tensors(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(as_tensors(v) for v in obj)
    return obj


class _Pickler(pickle.Pickler):
    def __init__(self, stream, legacy):
        pickle.Pickler.__init__(self, stream, protocol=2)   # torch.save's DEFAULT_PROTOCOL
        self.legacy = legacy
        self.keys = collections.OrderedDict()   # id(storage) -> (key, storage)

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        if id(obj) not in self.keys:
            key = str(len(self.keys)) if not self.legacy else str(94000000 + 16 * len(self.keys))
            self.keys[id(obj)] = (key, obj)
        key = self.keys[id(obj)][0]
        storage_type = getattr(sys.modules['torch'], STORAGES[obj.data.dtype])
        pid = ('storage', storage_type, key, 'cpu', obj.data.size)
        return pid + (None,) if self.legacy else pid


def _pickled(obj, legacy):
    stream = io.BytesIO()
    with stand_in_torch():
        pickler = _Pickler(stream, legacy)
        pickler.dump(as_tensors(obj))
    return stream.getvalue(), [v for v in pickler.keys.values()]


def write_zip(path, obj, archive='archive', byteorder='little'):
    """torch.save(obj, path) as PyTorch >= 1.6 writes it (arrays become tensors)."""
    data, storages = _pickled(obj, legacy=False)
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        z.writestr(archive + '/data.pkl', data)
        if byteorder is not None:
            z.writestr(archive + '/byteorder', byteorder)
        for key, storage in storages:
            z.writestr('%s/data/%s' % (archive, key), storage.data.astype(
                storage.data.dtype.newbyteorder('<')).tobytes())
        z.writestr(archive + '/version', '3\n')


def write_legacy(path, obj, little_endian=True, storage_sizes=None):
    """torch.save(obj, path, _use_new_zipfile_serialization=False) (_legacy_save).
    storage_sizes: key -> the element count to write in a storage's header instead of its
    own (a damaged file)."""
    data, storages = _pickled(obj, legacy=True)
    with open(path, 'wb') as f:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION,
                       {'protocol_version': PROTOCOL_VERSION, 'little_endian': little_endian,
                        'type_sizes': {'short': 2, 'int': 4, 'long': 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(data)
        keys = sorted(key for key, _ in storages)
        pickle.dump(keys, f, protocol=2)
        by_key = dict(storages)
        for key in keys:
            storage = by_key[key]
            count = (storage_sizes or {}).get(key, storage.data.size)
            f.write(struct.pack('<q', count))
            f.write(storage.data.astype(storage.data.dtype.newbyteorder('<')).tobytes())


def write(path, obj, layout, **kwargs):
    """write_zip or write_legacy, by layout ('zip' or 'legacy')."""
    (write_zip if layout == 'zip' else write_legacy)(path, obj, **kwargs)
