"""benchmarks/speed.py runs end to end (--quick): valid JSON, every case, positive numbers.
No timing is asserted. The small test network (conftest.small_network, DEEPLAB_BLOCKS): the
script's paths, not ResNet-101's figures, are tested."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from deeplab_resnet.common.windows import axis_windows, strides_of

pytestmark = pytest.mark.usefixtures('small_network')

SCRIPT = os.path.join(ROOT, 'benchmarks', 'speed.py')


def test_speed_quick_all(tmp_path):
    out = tmp_path / 'speed.json'
    proc = subprocess.run([sys.executable, SCRIPT, '--mode', 'all', '--quick', '--threads', '2',
                           '--json', str(out)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'case' in proc.stdout and 'load average' in proc.stdout
    assert 'DEEPLAB_BLOCKS=1,1,1,1: TEST/DEBUG network' in proc.stderr

    data = json.loads(out.read_text())
    assert data['meta']['quick'] is True
    cases = {c['name']: c for c in data['cases']}
    assert set(cases) == {'gemm_float32', 'infer_65x65_1scale', 'infer_65x65_3scale',
                          'train_65x65_1scale', 'pipeline_100x75_crop65x65_1cpu',
                          'pipeline_100x75_crop65x65_2cpu', 'crf_100x75_1worker',
                          'crf_100x75_2worker'}
    for c in cases.values():
        assert c['rate'] > 0 and c['median_s'] > 0 and c['peak_rss_mb'] > 0, c['name']
        assert len(c['times_s']) >= 2
    for name in ('infer_65x65_1scale', 'infer_65x65_3scale', 'train_65x65_1scale'):
        c = cases[name]
        assert c['flops'] > 0 and c['flops_unknown_ops'] == 0
        assert c['gflops_per_s'] > 0 and c['fraction_of_fp32_gemm_peak'] > 0
    # Three towers cost more than one; a training step more than a forward pass.
    assert cases['infer_65x65_3scale']['flops'] > cases['infer_65x65_1scale']['flops']
    assert cases['train_65x65_1scale']['flops'] > 2 * cases['infer_65x65_1scale']['flops']
    for cpus in (1, 2):
        c = cases['pipeline_100x75_crop65x65_%dcpu' % cpus]
        assert c['cpus'] == min(cpus, len(os.sched_getaffinity(0)))
        assert c['ratio_vs_train_consumption'] > 0
        assert c['reference_rate'] > 0 and c['cpu_ms_per_image'] > 0
        assert c['reference_cpu_ms_per_image'] > 0 and len(c['reference_times_s']) >= 2


def test_gpu_check_smoke_runs_on_a_cpu(tmp_path):
    """benchmarks/gpu_check.py --smoke: one training graph (traced, run twice under op
    determinism), one inference graph and one whole-and-tiled graph at tiny sizes, the other
    phases listed as skipped. On a CPU every op of the traced step ran on the CPU, and the two
    runs are bitwise equal."""
    out = tmp_path / 'gpu_check.json'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'gpu_check.py'),
                           '--smoke', '--json', str(out)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith('devices: CPU only (no GPU visible)'), proc.stdout
    data = json.loads(out.read_text())
    results = {r['name']: r for r in data['results']}
    assert set(results) == {'train_float32_b1', 'pipeline_b1', 'infer_1scale', 'tile_1scale'}
    assert [name for name, _ in data['skipped']] == [
        'train_float32_b10', 'train_%s' % data['env']['fast_precision'], 'two_float32_b1',
        'det_float32_b1']
    train = results['train_float32_b1']
    assert train['det']['equal'] is True and len(train['det']['losses'][0]) == 1
    assert train['flops'] > 0 and train['flops_unknown_ops'] == 0 and train['rate'] > 0
    placement = train['placement']
    assert placement['gpu_ops'] == 0 and placement['cpu_op_types']['Conv2D'] > 0
    assert all(s['new_s'] > 0 and s['repeated_s'] > 0 for s in results['infer_1scale']['sizes'])
    assert [s['size'] for s in results['infer_1scale']['sizes']] == [[33, 33], [41, 49]]
    assert results['pipeline_b1']['rate'] > 0
    tile = results['tile_1scale']   # 41x73 in windows of 33x33, at the default stride
    stride = strides_of((33, 33), None)
    assert tile['size'] == [41, 73] and tile['tile'] == [33, 33]
    assert tile['stride'] == list(stride)
    assert tile['windows'] == (len(axis_windows(41, 33, stride[0])[1])
                               * len(axis_windows(73, 33, stride[1])[1])) > 1
    assert tile['whole_s'] > 0 and tile['tiled_s'] > 0 and tile['median_s'] == tile['tiled_s']
    assert tile['ratio'] == tile['tiled_s'] / tile['whole_s'] and 0 <= tile['agreement'] <= 1
    assert tile['whole_gpu_mb'] is None and tile['tiled_gpu_mb'] is None
    assert tile['hook_in_order'] is True
    assert data['env']['gemm_tflops']['float32'] > 0


def test_gpu_check_plans_every_phase_for_a_gpu_machine():
    """The phases of a real run (not exercised by --smoke), by the GPUs a machine has."""
    import argparse
    sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
    import gpu_check
    args = argparse.Namespace(smoke=False, batch=10, xla=True, fast_precision='bfloat16')

    def names(num_gpus):
        steps = gpu_check.plan(args, num_gpus)
        return ([spec['name'] for spec, _ in steps if spec],
                [skip[0] for spec, skip in steps if spec is None])
    run, skipped = names(1)
    assert run == ['env', 'train_float32_b1', 'train_float32_b10', 'train_bfloat16_b1',
                   'train_bfloat16_b10', 'det_float32_b1', 'xla_bfloat16_b10', 'pipeline_b10',
                   'infer_3scale', 'tile_3scale']
    assert skipped == ['two_float32_b1', 'two_sync_float32_b1']
    run, skipped = names(2)
    assert 'two_float32_b1' in run and 'two_sync_float32_b1' in run and skipped == []
    specs = {spec['name']: spec for spec, _ in gpu_check.plan(args, 2) if spec}
    assert specs['train_float32_b1']['size'] == [321, 321]
    assert specs['two_float32_b1']['replicas'] == 2
    assert specs['train_float32_b1']['scales'] == [1.0, 0.75, 0.5]
    tile = specs['tile_3scale']
    assert (tile['size'], tile['tile'], tile['scales']) == ([1024, 2048], [513, 513],
                                                            [1.0, 0.75, 0.5])
