"""Training on several devices and machines: tf.distribute strategies in graph mode.

- One device (the default): no strategy; the plain graph and Session.
- `--num-replicas N` / `all` in one process: tf.compat.v1.distribute.MirroredStrategy over N
  GPUs, or, with no GPU, over N logical CPU devices of one Session (for testing: same
  results, no speed-up).
- Several machines: the standard TF_CONFIG environment variable, every worker running the
  same command: tf.compat.v1.distribute.experimental.MultiWorkerMirroredStrategy (collective
  all-reduce) over each worker's GPUs (or its CPU), with an in-process tf.distribute.Server
  and a Session on it. The chief (task `chief`, else worker 0) alone writes checkpoints and
  TensorBoard events; every sess.run has a deadline so that a dead worker stops the others
  with a clear message instead of a hang.

The replicas' gradients are summed by the optimisers; losses.py makes every replica's loss
its share of the global batch's loss, so that the sum is the one-device gradient.
"""
import collections
import os

import tensorflow as tf

from deeplab_resnet.common.errors import InputError
from deeplab_resnet.runtime.tf_config import TF_CONFIG, is_chief, read_tf_config  # noqa: F401

tf1 = tf.compat.v1

Cluster = collections.namedtuple('Cluster', [
    'strategy', 'num_replicas', 'devices', 'num_workers', 'task_type', 'task_index',
    'is_chief', 'target', 'config', 'run_options', 'server'])
"""strategy: None (one device, no strategy) or a tf.compat.v1.distribute strategy;
num_replicas: replicas in sync over all workers; devices: this process's replica devices;
num_workers, task_type, task_index, is_chief: the TF_CONFIG task (1, 'worker', 0, True
without TF_CONFIG); target, config: for tf1.Session; run_options: tf1.RunOptions with the
multi-worker deadline, or None; server: the tf.distribute.Server of a multi-worker run."""


def local_devices(num_replicas):
    """Replica devices of this process: N GPUs, or N logical CPU devices when there is no GPU.

    Args: num_replicas: positive int or 'all' (every visible GPU; 1 without a GPU).
    Raises: InputError when more GPUs are asked for than are visible.
    """
    gpus = tf.config.list_physical_devices('GPU')
    if num_replicas == 'all':
        num_replicas = max(len(gpus), 1)
    if gpus:
        if num_replicas > len(gpus):
            raise InputError('--num-replicas %d: only %d GPU(s) visible' % (num_replicas,
                                                                        len(gpus)))
        return ['/gpu:%d' % i for i in range(num_replicas)]
    return ['/cpu:%d' % i for i in range(num_replicas)]


def setup(num_replicas, base_config, timeout_s=600, environ=None, log=print):
    """Chooses the strategy from --num-replicas and TF_CONFIG.

    Args:
      base_config: the tf1.ConfigProto for one device (runtime.session.session_config).
      timeout_s: deadline of every sess.run of a multi-worker run.
    Returns: Cluster. Call before building the graph; build it under cluster.strategy.scope().
    """
    tf_config = read_tf_config(environ)
    config = tf1.ConfigProto()
    config.CopyFrom(base_config)
    if tf_config is None:
        devices = local_devices(num_replicas)
        if len(devices) == 1:
            return Cluster(None, 1, devices, 1, 'worker', 0, True, '', config, None, None)
        if devices[0].startswith('/cpu'):
            config.device_count['CPU'] = len(devices)
            log('no GPU: %d replicas on %d logical CPU devices of this process (the same '
                'results as one device with the global batch, no speed-up)'
                % (len(devices), len(devices)))
        strategy = tf1.distribute.MirroredStrategy(devices)
        return Cluster(strategy, strategy.num_replicas_in_sync, devices, 1, 'worker', 0, True,
                       '', config, None, None)
    return _multi_worker(tf_config, num_replicas, config, timeout_s, environ, log)


def _multi_worker(tf_config, num_replicas, config, timeout_s, environ, log):
    from tensorflow.python.distribute.cluster_resolver import TFConfigClusterResolver
    if num_replicas not in (1, 'all'):
        log('warning: with TF_CONFIG every worker trains on all its visible GPUs (or its '
            'CPU); --num-replicas %s is not used (choose GPUs with CUDA_VISIBLE_DEVICES)'
            % num_replicas)
    if environ is not None:   # the resolver reads os.environ
        os.environ[TF_CONFIG] = environ[TF_CONFIG]
    resolver = TFConfigClusterResolver()
    strategy = multi_worker_strategy(resolver)
    config = strategy.update_config_proto(config)
    task = tf_config['task']
    try:
        server = tf.distribute.Server(resolver.cluster_spec(), job_name=task['type'],
                                      task_index=task['index'], config=config, start=True)
    except (tf.errors.OpError, RuntimeError, ValueError) as e:
        raise InputError('TF_CONFIG: cannot start %s %d at %s: %s' % (
            task['type'], task['index'], tf_config['cluster'][task['type']][task['index']],
            str(e).splitlines()[0]))
    workers = sum(len(v) for v in tf_config['cluster'].values())
    devices = list(strategy.extended.worker_devices)
    log('%s %d of %d workers (%s), %d replica(s) here, %d in sync; waiting at most %d s for '
        'the others at each step' % (task['type'], task['index'], workers,
                                      'chief' if is_chief(tf_config) else 'not chief',
                                      len(devices), strategy.num_replicas_in_sync, timeout_s))
    return Cluster(strategy, strategy.num_replicas_in_sync, devices, workers, task['type'],
                   task['index'], is_chief(tf_config), server.target, config,
                   tf1.RunOptions(timeout_in_ms=int(timeout_s * 1000)), server)


def communication(gpus=None):
    """The collective implementation between workers: NCCL when this worker has GPUs (in graph
    mode TensorFlow uses NCCL only when asked; AUTO picks host-staged gRPC rings), AUTO (rings)
    on CPUs. gpus: the visible GPUs (None: ask TensorFlow).

    (One process over several GPUs, MirroredStrategy, needs nothing: over physical GPUs it
    builds NCCL collectives by default; over CPU devices it reduces to one device.)"""
    implementation = tf.distribute.experimental.CommunicationImplementation
    if gpus is None:
        gpus = tf.config.list_physical_devices('GPU')
    return implementation.NCCL if gpus else implementation.AUTO


def multi_worker_strategy(resolver):
    """The graph-mode MultiWorkerMirroredStrategy over TF_CONFIG's cluster, with NCCL between
    workers that have GPUs (communication())."""
    return tf1.distribute.experimental.MultiWorkerMirroredStrategy(
        communication=communication(), cluster_resolver=resolver)


def describe(cluster):
    """For the provenance record: how the snapshot's run was distributed."""
    return collections.OrderedDict([
        ('replicas', cluster.num_replicas), ('workers', cluster.num_workers),
        ('strategy', type(cluster.strategy).__name__ if cluster.strategy else None),
        ('devices_per_worker', len(cluster.devices))])


def per_replica_call(cluster, fn, *args):
    """Calls fn(*args) once per replica (through the strategy) or once (no strategy); returns
    its outputs, PerReplica values under a strategy."""
    if cluster.strategy is None:
        return fn(*args)
    return cluster.strategy.extended.call_for_each_replica(fn, args=args)


def reduce_sum(cluster, value):
    """A scalar's sum over the replicas (cross-replica context); `value` without strategy."""
    if cluster.strategy is None:
        return value
    return cluster.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)


def first_replica(cluster, value):
    """This process's first replica's value of a PerReplica (or `value` itself)."""
    if cluster.strategy is None:
        return value
    return cluster.strategy.experimental_local_results(value)[0]


def group(cluster, ops):
    """One op that runs every replica's `ops` (a PerReplica op or a plain op)."""
    if cluster.strategy is None or ops is None:
        return ops
    return cluster.strategy.group(ops)


# ----------------------------------------------------------------------------- inside a replica

def replicas_in_sync():
    """Replicas of the current tf.distribute replica context (1 outside a strategy)."""
    ctx = tf.distribute.get_replica_context()
    return ctx.num_replicas_in_sync if ctx is not None else 1


def sum_over_replicas(value, with_grad=False):
    """The sum of `value` (a tensor) over the replicas in sync; `value` itself outside a
    strategy or with one replica. with_grad: differentiable (all_sum_with_grad); otherwise
    no gradient flows through the sum."""
    if replicas_in_sync() == 1:
        return value
    return all_sum_with_grad(value) if with_grad else _all_sum(value)


def _all_sum(value):
    """Sum of `value` over the replicas in sync (replica context), without a gradient."""
    def merge(strategy, per_replica):
        return strategy.extended.reduce_to(tf.distribute.ReduceOp.SUM, per_replica,
                                           destinations=per_replica)
    return tf.distribute.get_replica_context().merge_call(merge, args=(value,))


@tf.RegisterGradient('DeepLabAllSumGrad')
def _all_sum_grad(unused_op, grad):
    return _all_sum(grad)


def all_sum_with_grad(value):
    """Sum of `value` over the replicas in sync, differentiable: d sum / d value_r is the sum
    over replicas of the incoming gradients. (ReplicaContext.all_reduce carries such a
    gradient too, but in graph mode its custom_gradient looks up the other replicas' variable
    copies by name and fails; this builds the same from a straight-through identity whose
    gradient is overridden with an all-sum.)"""
    value = tf.convert_to_tensor(value)
    total = value + tf.stop_gradient(_all_sum(tf.stop_gradient(value)) - value)
    with tf1.get_default_graph().gradient_override_map({'Identity': 'DeepLabAllSumGrad'}):
        return tf.identity(total)
