"""benchmarks/speed.py runs end to end (--quick): valid JSON, every case, positive numbers.
No timing is asserted. The small test network (conftest.small_network, DEEPLAB_BLOCKS): the
script's paths, not ResNet-101's figures, are tested."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

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
                          'train_65x65_1scale', 'pipeline_100x75_crop65x65',
                          'crf_100x75_1worker', 'crf_100x75_2worker'}
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
    assert cases['pipeline_100x75_crop65x65']['ratio_vs_train_consumption'] > 0
