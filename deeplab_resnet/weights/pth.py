"""Reading PyTorch's torch.save files (.pth, .pt) without PyTorch: NumPy, pickle and zipfile.

Two layouts, told apart by content (kind()), both written by torch/serialization.py:

  zip (PyTorch >= 1.6, `_save`): a stored (uncompressed) zip archive whose entries all sit in
      one folder, ARCHIVE/: data.pkl (the object, pickled with persistent storage ids),
      data/<key> (each storage's raw bytes), byteorder ('little' or 'big'; absent in files
      of PyTorch < 1.11, which were little-endian in practice), version, ...
  legacy (`_legacy_save`, the only layout before 1.6): one stream of five pickles -- the
      magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a system-info dict
      (little_endian, type sizes), the object pickled with persistent storage ids, the sorted
      list of storage keys -- then, for each key in that order, the storage as an 8-byte
      little-endian element count and its raw bytes.

A persistent storage id is ('storage', torch.<T>Storage, key, location, element count
[, view metadata]); a tensor is pickled as torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, backward_hooks[, metadata]) (offset, size and stride in elements).

Safety: the unpickler resolves only ALLOWED_GLOBALS (collections.OrderedDict, the tensor and
parameter rebuild functions, the torch.<T>Storage types), each to a function of this module
that builds NumPy arrays; anything else (a function, a class, os.system, ...) raises InputError
before it could be called, so a file can never run code. Every size is checked against the
bytes there are before anything is allocated (truncated files, size bombs); compressed zip
entries and big-endian files are refused.
"""
import collections
import io
import pickle
import zipfile

import numpy as np

from deeplab_resnet.common.errors import InputError

MAGIC_NUMBER = 0x1950a86a20f9469cfc6c   # torch/serialization.py: the legacy stream's first pickle
PROTOCOL_VERSION = 1001                 # its second
ZIP_SIGNATURE = b'PK\x03\x04'

ZIP, LEGACY = 'zip', 'legacy'

# torch.<name> storage types -> the little-endian NumPy dtype of their elements.
STORAGE_DTYPES = collections.OrderedDict([
    ('FloatStorage', '<f4'), ('DoubleStorage', '<f8'), ('HalfStorage', '<f2'),
    ('BFloat16Storage', '<u2'),   # bfloat16: read as its bits, widened by tensor()
    ('LongStorage', '<i8'), ('IntStorage', '<i4'), ('ShortStorage', '<i2'),
    ('CharStorage', 'i1'), ('ByteStorage', 'u1'), ('BoolStorage', '?'),
])

ALLOWED_GLOBALS = (
    ('collections', 'OrderedDict'),
    ('torch._utils', '_rebuild_tensor'),
    ('torch._utils', '_rebuild_tensor_v2'),
    ('torch._utils', '_rebuild_parameter'),
    ('torch._utils', '_rebuild_parameter_with_state'),
) + tuple(('torch', name) for name in STORAGE_DTYPES)

MAX_LISTED = 3


class _Refused(Exception):
    """Raised inside the unpickler; becomes one InputError line naming the file."""


class _Sealed(object):
    """Objects the unpickler hands to a pickle: BUILD (setting their attributes) is refused."""

    def __setstate__(self, state):
        raise _Refused('it sets the state of a %s' % type(self).__name__.lstrip('_'))


class _Allowed(_Sealed):
    """An allowed global: calls `function`."""

    def __init__(self, function):
        self.function = function

    def __call__(self, *args):
        return self.function(*args)


class StorageType(_Sealed):
    """What torch.<name>Storage unpickles to: the storage's element type."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class Storage(_Sealed):
    """A storage named by a persistent id: its type, key, element count; `data`, a 1-D NumPy
    array of `numel` elements, once its bytes are read. A legacy view has (root key, element
    offset) in `view_of`."""

    def __init__(self, storage_type, key, numel, view_of=None):
        self.type, self.key, self.numel, self.view_of = storage_type, key, numel, view_of
        self.data = None


class TensorRef(_Sealed):
    """A tensor before its storage's bytes are read: storage, offset, size, stride."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _short(value, width=60):
    """A string as it is, anything else as its repr, cut to `width` characters (messages
    stay one readable line)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[:width - 3] + '...'


def _int(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Refused('%s is %s, not a non-negative integer' % (what, _short(value)))
    return value


def _ints(values, what):
    if not isinstance(values, (tuple, list)):
        raise _Refused('%s is %s, not a tuple of integers' % (what, _short(values)))
    return tuple(_int(v, what) for v in values)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    if not isinstance(storage, Storage):
        raise _Refused('a tensor whose storage is %s, not a storage id' % type(storage).__name__)
    offset = _int(offset, 'a tensor offset')
    size, stride = _ints(size, 'a tensor size'), _ints(stride, 'a tensor stride')
    if len(size) != len(stride):
        raise _Refused('a tensor of size %s with stride %s' % (_short(size), _short(stride)))
    return TensorRef(storage, offset, size, stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None, *unused):
    if metadata:   # the conjugate / negative bits: values that are not the stored ones
        raise _Refused('a tensor with metadata %s (conjugate or negative bit)' % _short(metadata))
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


_FUNCTIONS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only ALLOWED_GLOBALS (to this module's functions) and
    records the persistent storage ids it meets in `storages` (key -> Storage)."""

    def __init__(self, stream, allow=True):
        pickle.Unpickler.__init__(self, stream)
        self.allow = allow
        self.storages = collections.OrderedDict()

    def find_class(self, module, name):
        if self.allow and (module, name) in ALLOWED_GLOBALS:
            if module == 'torch':
                return StorageType(name)
            return _Allowed(_FUNCTIONS[(module, name)])
        raise _Refused('it pickles %s.%s, which is not allowed (only collections.OrderedDict, '
                       'torch._utils._rebuild_tensor*/_rebuild_parameter* and torch.*Storage '
                       'are: a state dict of tensors); nothing was run' % (module, name))

    def persistent_load(self, pid):
        if not self.allow:
            raise _Refused('a persistent id where none belongs')
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != 'storage'
                or not isinstance(pid[1], StorageType) or not isinstance(pid[2], str)):
            raise _Refused('a persistent id %s that is not a storage id' % _short(pid))
        storage_type, key, numel = pid[1], pid[2], _int(pid[4], 'a storage size')
        view = pid[5] if len(pid) == 6 else None
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = Storage(storage_type, key, numel)
        elif root.type.dtype != storage_type.dtype or root.numel != numel:
            raise _Refused('storage %s is named with two types or sizes' % _short(key))
        if view is None:
            return root
        # Legacy storage views (PyTorch < 1.0): (view key, element offset, element count).
        if not isinstance(view, tuple) or len(view) != 3:
            raise _Refused('storage %s has view metadata %s' % (_short(key), _short(view)))
        offset, count = _int(view[1], 'a view offset'), _int(view[2], 'a view size')
        if offset + count > numel:
            raise _Refused('a view of %d elements at %d of storage %s, which has %d'
                           % (count, offset, key, numel))
        return Storage(storage_type, key, count, view_of=(key, offset))


def kind(head):
    """ZIP, LEGACY or None, from a file's first bytes (at least 64 of them if it has them):
    the zip signature, or a first pickle that is PyTorch's magic number."""
    if head.startswith(ZIP_SIGNATURE):
        return ZIP
    if not head.startswith(b'\x80'):
        return None
    try:
        return LEGACY if _Unpickler(io.BytesIO(head), allow=False).load() == MAGIC_NUMBER \
            else None
    except Exception:   # anything a first pickle of random bytes raises: not a legacy file
        return None


def sniff(path):
    """kind() of a file's first bytes; None when it cannot be read (its reader says why)."""
    try:
        with open(path, 'rb') as f:
            return kind(f.read(64))
    except OSError:
        return None


def _unpickle(stream, source, what, allow=True):
    unpickler = _Unpickler(stream, allow)
    try:
        return unpickler.load(), unpickler.storages
    except _Refused as e:
        raise InputError('%s: %s: %s' % (source, what, e))
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise InputError('%s: %s cannot be unpickled (%s: %s): truncated or not a PyTorch '
                         'file' % (source, what, type(e).__name__, e))


def _read_zip(data, source):
    """-> (object with Storage/TensorRef leaves, key -> Storage with its data)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise InputError('%s: a damaged or truncated zip archive (%s)' % (source, e))
    pickles = [i.filename for i in infos if i.filename.endswith('/data.pkl')
               and i.filename.count('/') == 1]
    if len(pickles) != 1:
        raise InputError('%s: a zip archive but not a torch.save file: %s' % (
            source, 'no ARCHIVE/data.pkl entry' if not pickles else
            'several data.pkl entries (%s)' % ', '.join(pickles[:MAX_LISTED])))
    prefix = pickles[0][:-len('data.pkl')]
    entries = dict((i.filename, i) for i in infos)

    def read(name, expected=None):
        info = entries[name]
        if info.compress_type != zipfile.ZIP_STORED:
            raise InputError('%s: entry %s is compressed; torch.save stores its entries'
                             % (source, name))
        if info.file_size > len(data) or (expected is not None and info.file_size != expected):
            raise InputError('%s: entry %s holds %d bytes, %s' % (
                source, name, info.file_size,
                'more than the file has' if expected is None else '%d expected' % expected))
        try:
            return archive.read(name)
        except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
            raise InputError('%s: entry %s cannot be read (%s): truncated or damaged'
                             % (source, name, e))

    if prefix + 'byteorder' in entries:
        order = read(prefix + 'byteorder')
        if order != b'little':
            raise InputError('%s: byte order %s: only little-endian files are read'
                             % (source, _short(order.decode('ascii', 'replace'))))
    obj, storages = _unpickle(io.BytesIO(read(pickles[0])), source, pickles[0])
    for key, storage in storages.items():
        name = prefix + 'data/' + key
        if name not in entries:
            raise InputError('%s: storage %s has no entry of its own' % (source, _short(key)))
        raw = read(name, storage.numel * storage.type.dtype.itemsize)
        storage.data = np.frombuffer(raw, storage.type.dtype, storage.numel)
    return obj, storages


def _read_legacy(data, source):
    stream = io.BytesIO(data)
    header = [_unpickle(stream, source, what, allow=False)[0]
              for what in ('the magic number', 'the protocol version', 'the system info')]
    if header[0] != MAGIC_NUMBER:
        raise InputError('%s: not a PyTorch file (no magic number)' % source)
    if header[1] != PROTOCOL_VERSION:
        raise InputError('%s: legacy protocol version %s, only %d is read'
                         % (source, _short(header[1]), PROTOCOL_VERSION))
    if not isinstance(header[2], dict) or header[2].get('little_endian') is not True:
        raise InputError('%s: saved on a big-endian machine (system info %s): only '
                         'little-endian files are read' % (source, _short(header[2], 100)))
    obj, storages = _unpickle(stream, source, 'the saved object')
    keys, _ = _unpickle(stream, source, 'the storage keys', allow=False)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InputError('%s: the storage keys are %s, not a list of names'
                         % (source, _short(keys)))
    roots = dict((k, s) for k, s in storages.items())
    for key in keys:
        storage = roots.get(key)
        if storage is None:
            raise InputError('%s: storage %s is listed but no tensor names it'
                             % (source, _short(key)))
        pos = stream.tell()
        if len(data) - pos < 8:
            raise InputError('%s: truncated: storage %s has no size (%d bytes left)'
                             % (source, key, len(data) - pos))
        numel = int.from_bytes(data[pos:pos + 8], 'little')
        nbytes = numel * storage.type.dtype.itemsize
        left = len(data) - pos - 8
        if numel != storage.numel or nbytes > left:
            raise InputError('%s: truncated or damaged: storage %s says %d elements (%d bytes), '
                             '%d named, %d bytes left' % (source, _short(key), numel, nbytes,
                                                          storage.numel, left))
        storage.data = np.frombuffer(data, storage.type.dtype, numel, pos + 8)
        stream.seek(pos + 8 + nbytes)
    missing = [k for k in roots if k not in set(keys)]
    if missing:
        raise InputError('%s: %d storages have no data (%s)'
                         % (source, len(missing), ', '.join(_short(k, 20) for k in missing[:MAX_LISTED])))
    return obj, storages


def tensor(ref, storages, source):
    """A TensorRef -> a NumPy array (a copy; bfloat16 widened to float32), its extent checked
    against its storage before anything is allocated."""
    storage = ref.storage
    dtype = storage.type.dtype
    count = 1
    for n in ref.size:
        count *= n
    if count == 0:
        array = np.zeros(ref.size, dtype)
    else:
        extent = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride)) + 1
        if extent > storage.numel or count > storage.numel:
            raise InputError('%s: a tensor of size %s (stride %s, offset %d) reaches past its '
                             'storage %s of %d elements' % (source, _short(ref.size),
                                                            _short(ref.stride), ref.offset,
                                                            _short(storage.key),
                                                            storage.numel))
        base = 0 if storage.view_of is None else storage.view_of[1]
        flat = storages[storage.key].data[base + ref.offset:base + storage.numel]
        array = np.array(np.lib.stride_tricks.as_strided(
            flat, ref.size, [s * dtype.itemsize for s in ref.stride]))
    if storage.type.name == 'BFloat16Storage':
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _resolve(obj, storages, source, seen):
    """Replaces every TensorRef inside dicts, lists and tuples by its array (each container
    visited once: a pickle can make a list that holds itself)."""
    if isinstance(obj, TensorRef):
        return tensor(obj, storages, source)
    if isinstance(obj, (Storage, StorageType, _Allowed)):
        raise InputError('%s: holds a bare %s, not a tensor' % (source, type(obj).__name__))
    if not isinstance(obj, (dict, list, tuple)) or id(obj) in seen:
        return obj
    seen.add(id(obj))
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _resolve(obj[k], storages, source, seen)
    elif isinstance(obj, list):
        obj[:] = [_resolve(v, storages, source, seen) for v in obj]
    else:
        obj = tuple(_resolve(v, storages, source, seen) for v in obj)
    return obj


def read(data, source):
    """A torch.save file's bytes -> (its object with every tensor a NumPy array, ZIP or LEGACY).

    Args: data: the file's bytes; source: its path, for messages.
    Returns: (obj, layout). Tensors become arrays of their dtype (float32 for torch.float,
      int64 for torch.long, ...; bfloat16 as float32) and shape; dicts, OrderedDicts, lists,
      tuples and plain values keep their types.
    Raises: InputError naming `source`: not a PyTorch file, a disallowed global, truncated,
      a size that does not fit, big-endian.
    """
    layout = kind(data[:64])
    if layout is None:
        raise InputError('%s: not a PyTorch file (neither a zip archive nor the legacy '
                         'magic number)' % source)
    obj, storages = (_read_zip if layout == ZIP else _read_legacy)(data, source)
    try:
        return _resolve(obj, storages, source, set()), layout
    except RecursionError:   # lists in lists, a few bytes per level: no state dict
        raise InputError('%s: its object is nested too deeply for a state dict' % source)
