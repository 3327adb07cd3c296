"""TF_CONFIG, the standard environment variable of a multi-worker run: read and checked without
TensorFlow, so that a script knows before TensorFlow loads whether it is the chief (the one
that takes the snapshot folder's lease, writes checkpoints and summaries)."""
import json
import os

from deeplab_resnet.common.errors import InputError

TF_CONFIG = 'TF_CONFIG'


def read_tf_config(environ=None):
    """The TF_CONFIG of a multi-worker run, or None when it is unset or names one task.

    Returns: {'cluster': {job: [host:port, ...]}, 'task': {'type': str, 'index': int}}.
    Raises: InputError naming what is wrong with a malformed TF_CONFIG.
    """
    environ = os.environ if environ is None else environ
    text = environ.get(TF_CONFIG, '').strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as e:
        raise InputError('TF_CONFIG: not valid JSON (%s)' % e)
    cluster = config.get('cluster') if isinstance(config, dict) else None
    task = config.get('task') if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise InputError('TF_CONFIG: needs "cluster" ({"worker": ["host:port", ...]}) and '
                         '"task" ({"type": "worker", "index": i})')
    unknown = sorted(set(cluster) - {'chief', 'worker'})
    if unknown:
        raise InputError('TF_CONFIG: jobs %s are not used by synchronous training (only '
                         '"chief" and "worker")' % ', '.join(unknown))
    task_type, index = task.get('type'), task.get('index', 0)
    hosts = cluster.get(task_type)
    if not isinstance(hosts, list) or not isinstance(index, int) or not 0 <= index < len(hosts):
        raise InputError('TF_CONFIG: task %s %r is not in the cluster %s'
                         % (task_type, index, json.dumps(cluster)))
    if sum(len(v) for v in cluster.values()) < 2:
        return None
    return {'cluster': cluster, 'task': {'type': task_type, 'index': index}}


def is_chief(tf_config):
    """The chief writes checkpoints and summaries: task 'chief', else worker 0."""
    if tf_config is None:
        return True
    task = tf_config['task']
    if 'chief' in tf_config['cluster']:
        return task['type'] == 'chief'
    return task['type'] == 'worker' and task['index'] == 0
