import os
import shutil
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# The suite is a CPU suite: the same results on a GPU workstation as on CI (no TF32, no cuDNN
# non-determinism, no two test processes on one card). Set before anything imports
# TensorFlow, and inherited by the scripts the tests run. GPU checks: benchmarks/gpu_check.py.
os.environ['CUDA_VISIBLE_DEVICES'] = '-1'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import SMALL_BLOCKS  # noqa: E402 (after the paths)


@pytest.fixture(scope='module')
def module_dir(tmp_path_factory):
    """make(name) -> a new directory (pathlib.Path) for files a test module shares; all are
    removed when the module is done. Checkpoints are 170-510 MB each, so the suite does not
    keep them until the session ends (pytest.ini removes each passing test's tmp_path too)."""
    made = []

    def make(name):
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield make
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope='module')
def small_network():
    """Every network of the module (in this process and in the scripts it starts) is built
    with SMALL_BLOCKS through the test/debug variable DEEPLAB_BLOCKS. Use it where the
    network's size is not the point: `pytestmark = pytest.mark.usefixtures('small_network')`
    (module-scoped, so it is set before the module's fixtures make checkpoints)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('DEEPLAB_BLOCKS', ','.join(map(str, SMALL_BLOCKS)))
        yield SMALL_BLOCKS
