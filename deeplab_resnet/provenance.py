"""The provenance record of a checkpoint: a small JSON file next to it, `<prefix>.json`.

It says where the weights came from and what the network expects of its input (class count,
channel order, image mean, ignore label), so that later tools can check their settings
against the checkpoint instead of trusting the user to remember them.
"""
import hashlib
import json
import os

from deeplab_resnet.errors import InputError

RECORD_SUFFIX = '.json'


def record_path(ckpt_prefix):
    return ckpt_prefix + RECORD_SUFFIX


def file_sha256(path, chunk_size=1 << 22):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def write_record(ckpt_prefix, record):
    """Writes `record` (a JSON-serialisable dict) to <ckpt_prefix>.json, atomically.
    Returns the path written."""
    path = record_path(ckpt_prefix)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)
    return path


def read_record(ckpt_prefix):
    """<ckpt_prefix>.json -> dict, or None when the checkpoint has no record.
    Raises InputError (naming the file) when the record exists but is not a JSON object."""
    path = record_path(ckpt_prefix)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError('%s: unreadable provenance record (%s)' % (path, e.__class__.__name__))
    if not isinstance(record, dict):
        raise InputError('%s: provenance record is not a JSON object' % path)
    return record
