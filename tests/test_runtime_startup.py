"""Start-up: TensorFlow's start-up log lines are held to TF_CPP_MIN_LOG_LEVEL
(deeplab_resnet.runtime.tf_startup) while real errors still show, and --help never loads
TensorFlow."""
import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from deeplab_resnet.runtime import tf_startup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = ('All log messages before absl::InitializeLog()', 'Could not find cuda drivers',
         'failed call to cuInit', 'oneDNN custom operations are on')

BANNER = b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n'
ONEDNN = (b'I0000 00:00:1795789063.260739    9231 port.cc:153] oneDNN custom operations are on.'
          b' You may see slightly different numerical results.\n')
NO_DRIVER = (b'I0000 00:00:1795789063.261102    9231 cudart_stub.cc:31] Could not find cuda '
             b'drivers on your machine, GPU will not be used.\n')
CUINIT = (b'E0000 00:00:1795789065.861647    9231 cuda_platform.cc:52] failed call to cuInit: '
          b'INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n')
WARNING = b'W0000 00:00:1795789066.1    9231 op_kernel.cc:1857] OP_REQUIRES failed at x.cc:3\n'
ERROR = b'E0000 00:00:1795789066.2    9231 some_kernel.cc:12] a real error\n'
CONTINUATION = b'\t [[{{node Reshape}}]]\n'
PYTHON = b'Traceback (most recent call last):\n'


def env_without_log_level(**extra):
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    env.update(extra)
    return env


def filtered(lines, level):
    out = io.BytesIO()
    tf_startup.filter_stream(iter(lines), out, level)
    return out.getvalue().splitlines(keepends=True)


def test_min_log_level_read_as_tensorflow_reads_it():
    assert tf_startup.min_log_level({}) == 0
    assert tf_startup.min_log_level({'TF_CPP_MIN_LOG_LEVEL': ' 3'}) == 3
    assert tf_startup.min_log_level({'TF_CPP_MIN_LOG_LEVEL': 'quiet'}) == 0


def test_filter_applies_the_level_to_absl_lines_only():
    lines = [BANNER, ONEDNN, NO_DRIVER, WARNING, ERROR, CONTINUATION, PYTHON]
    assert filtered(lines, 1) == [WARNING, ERROR, CONTINUATION, PYTHON]
    assert filtered(lines, 2) == [ERROR, CONTINUATION, PYTHON]
    assert filtered(lines, 3) == [CONTINUATION, PYTHON]


def test_cuinit_line_dropped_only_after_no_driver_line():
    assert filtered([BANNER, ONEDNN, NO_DRIVER, CUINIT, ERROR], 2) == [ERROR]
    # A driver that is there but fails is a real error.
    assert filtered([BANNER, ONEDNN, CUINIT, ERROR], 2) == [CUINIT, ERROR]


FAKE_TENSORFLOW = '''\
import os
import warnings

for line in %r:
    os.write(2, line)
warnings.warn('a Python warning during the import')
if os.environ.get('FAKE_TF_ABORT'):
    os.write(2, b'F0000 00:00:1795789066.3    9231 check.cc:1] Check failed: fatal\\n')
    os.abort()
if os.environ.get('FAKE_TF_RAISE'):
    raise ImportError('this TensorFlow is broken')


class config:
    @staticmethod
    def list_physical_devices():
        os.write(2, %r)
        return []
''' % ([BANNER, ONEDNN, NO_DRIVER, ERROR], CUINIT)

AFTER_IMPORT = ("import sys, deeplab_resnet, tensorflow; "
                "print('after the import', file=sys.stderr)")


@pytest.fixture(scope='module')
def fake_tf(tmp_path_factory):
    """A directory holding a `tensorflow` package that logs like TensorFlow 2.21 on a machine
    without CUDA, plus a real error line and a Python warning."""
    root = tmp_path_factory.mktemp('fake_tf')
    (root / 'tensorflow').mkdir()
    (root / 'tensorflow' / '__init__.py').write_text(FAKE_TENSORFLOW)
    return str(root)


def run_with_fake_tf(fake_tf, code=AFTER_IMPORT, **env):
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env=env_without_log_level(PYTHONPATH=fake_tf, **env))


def test_import_filtered_in_order(fake_tf):
    out = run_with_fake_tf(fake_tf)
    assert out.returncode == 0, out.stderr
    assert not any(noise in out.stderr for noise in NOISE), out.stderr
    lines = out.stderr.splitlines()
    assert lines[0] == ERROR.decode().strip(), out.stderr
    assert 'UserWarning: a Python warning during the import' in lines[1], out.stderr
    assert lines[-1] == 'after the import'


def test_user_level_zero_shows_everything(fake_tf):
    out = run_with_fake_tf(fake_tf, TF_CPP_MIN_LOG_LEVEL='0')
    for line in (BANNER, ONEDNN, NO_DRIVER, ERROR):
        assert line.decode() in out.stderr


def test_crash_inside_the_import_still_shows_its_lines(fake_tf):
    out = run_with_fake_tf(fake_tf, FAKE_TF_ABORT='1')
    assert out.returncode != 0
    assert 'a real error' in out.stderr and 'Check failed: fatal' in out.stderr, out.stderr
    assert 'Could not find cuda drivers' not in out.stderr


def test_exception_inside_the_import_shown(fake_tf):
    out = run_with_fake_tf(fake_tf, FAKE_TF_RAISE='1')
    assert out.returncode == 1
    assert 'ImportError: this TensorFlow is broken' in out.stderr.splitlines()[-1]
    assert 'a real error' in out.stderr and 'Could not find cuda drivers' not in out.stderr


def run_script(argv, **kwargs):
    """Runs a repository script as `python SCRIPT ...` would, then prints to stdout whether
    TensorFlow was imported."""
    code = textwrap.dedent('''\
        import runpy, sys
        sys.argv = %r
        try:
            if sys.argv[0].endswith('.py'):
                runpy.run_path(sys.argv[0], run_name='__main__')
            else:
                runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
        finally:
            print('tensorflow imported: %%s' %% ('tensorflow' in sys.modules))
        ''' % (list(argv),))
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env_without_log_level(), **kwargs)


def test_script_with_tensorflow_shows_its_error_and_no_noise(tmp_path):
    image = str(tmp_path / 'small.jpg')
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    missing = str(tmp_path / 'missing' / 'model.ckpt')
    out = run_script(['inference.py', image, missing])
    assert out.returncode == 2
    assert 'tensorflow imported: True' in out.stdout
    assert out.stderr.splitlines() == [
        'error: %s: checkpoint not found (give a prefix such as model.ckpt-20000 or a '
        'directory)' % missing], out.stderr


def test_tensorflow_runtime_error_shown_without_noise():
    code = textwrap.dedent('''\
        import deeplab_resnet.network.model
        import tensorflow as tf
        tf1 = tf.compat.v1
        with tf.Graph().as_default():
            x = tf1.placeholder(tf.float32, None)
            with tf1.Session() as sess:
                sess.run(tf.reshape(x, [3]), {x: [1.0, 2.0]})
        ''')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=env_without_log_level())
    assert out.returncode == 1
    assert not any(noise in out.stderr for noise in NOISE), out.stderr
    assert 'InvalidArgumentError' in out.stderr, out.stderr
    assert 'Input to reshape is a tensor with 2 values' in out.stderr


@pytest.mark.parametrize('script', ['train_msc.py', 'evaluate_msc.py',
                                    'evaluate_msc_with_CRF.py', 'inference.py', 'convert.py',
                                    'dataset.tools'])
def test_help_does_not_import_tensorflow(script):
    out = run_script([script, '--help'])
    assert out.returncode == 0, out.stderr
    assert 'usage:' in out.stdout
    assert out.stdout.strip().endswith('tensorflow imported: False'), out.stdout
