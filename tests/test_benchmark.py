"""benchmarks/speed.py runs end to end (--quick): valid JSON, every case, positive numbers.
No timing is asserted."""
import json
import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = os.path.join(ROOT, 'benchmarks', 'speed.py')


def test_speed_quick_all(tmp_path):
    out = tmp_path / 'speed.json'
    proc = subprocess.run([sys.executable, SCRIPT, '--mode', 'all', '--quick', '--threads', '2',
                           '--json', str(out)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'case' in proc.stdout and 'load average' in proc.stdout

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
