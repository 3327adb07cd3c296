"""The progress lines on a clock the test moves by hand (no TensorFlow)."""
import io

from deeplab_resnet.common.progress import Progress, WindowProgress


class Clock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_windows(progress, clock, total, seconds_each):
    """A tiled image as the Predictor reports it: (0, total) before the first window, then
    (done, total) after each."""
    progress(0, total)
    for done in range(1, total + 1):
        clock.now += seconds_each
        progress(done, total)


def test_an_image_done_within_ten_seconds_prints_nothing():
    clock, out = Clock(), io.StringIO()
    progress = WindowProgress(out, clock=clock)
    run_windows(progress, clock, 8, 1.0)     # 8 s: a Cityscapes frame
    run_windows(progress, clock, 4, 2.4)     # 9.6 s
    assert out.getvalue() == ''


def test_a_long_image_every_ten_seconds_and_at_its_end():
    clock, out = Clock(), io.StringIO()
    progress = WindowProgress(out, clock=clock)
    run_windows(progress, clock, 4, 1.0)     # a short image first: nothing
    run_windows(progress, clock, 30, 1.0)    # 30 windows of 1 s: at 10, 20 and 30 s
    assert out.getvalue().splitlines() == [
        'windows 10/30  1.00 window/s  ETA 0:20',
        'windows 20/30  1.00 window/s  ETA 0:10',
        'windows 30/30  1.00 window/s  ETA 0:00']


def test_progress_counts_rate_and_eta_on_its_clock():
    clock, out = Clock(), io.StringIO()
    progress = Progress(10, 'evaluating', stream=out, clock=clock)
    clock.now = 4.0
    progress.update(2)
    assert out.getvalue() == 'evaluating 2/10  0.50 img/s  ETA 0:16\n'
