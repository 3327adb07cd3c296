"""A dependency-free progress line: count, rate and ETA, on stderr."""
import sys
import time


def format_seconds(seconds):
    seconds = int(round(max(seconds, 0)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return '%d:%02d:%02d' % (h, m, s) if h else '%d:%02d' % (m, s)


class Progress(object):
    """Prints 'label  n/total  rate unit/s  ETA m:ss' at most every `interval` seconds.

    On a terminal the line is rewritten in place; otherwise (a log file, CI) a new line is
    printed at most every `interval` seconds and at the end.
    """

    def __init__(self, total, label='', unit='img', interval=1.0, stream=None,
                 clock=time.time):
        self.clock = clock
        self.total = total
        self.label = label
        self.unit = unit
        self.interval = interval
        self.stream = stream or sys.stderr
        self.start = clock()
        self.last_print = 0.0
        self.count = 0
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()

    def rate(self):
        elapsed = self.clock() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def update(self, n=1, extra=''):
        self.count += n
        now = self.clock()
        if now - self.last_print >= self.interval or self.count >= (self.total or 0):
            self.last_print = now
            self._print(extra)

    def _print(self, extra=''):
        rate = self.rate()
        if self.total:
            eta = (self.total - self.count) / rate if rate > 0 else 0.0
            text = '%s %d/%d  %.2f %s/s  ETA %s' % (self.label, self.count, self.total, rate,
                                                   self.unit, format_seconds(eta))
        else:
            text = '%s %d  %.2f %s/s' % (self.label, self.count, rate, self.unit)
        if extra:
            text += '  ' + extra
        if self.tty:
            self.stream.write('\r' + text.strip() + '\033[K')
        else:
            self.stream.write(text.strip() + '\n')
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write('\n')
            self.stream.flush()


class WindowProgress(object):
    """A Predictor's on_window(done, total) (--tile): 'windows n/total  rate window/s  ETA'
    for an image whose windows have run longer than `after` seconds, then every `interval`
    seconds and once at its end; an image done sooner prints nothing (a list of Cityscapes
    frames keeps the one line per image of the run's own progress)."""

    def __init__(self, stream=None, after=10.0, interval=10.0, clock=time.time):
        self.stream, self.after, self.interval, self.clock = stream, after, interval, clock
        self.progress, self.printed = None, False

    def __call__(self, done, total):
        now = self.clock()
        if done == 0:   # a new image
            self.progress = Progress(total, 'windows', 'window', self.interval, self.stream,
                                     self.clock)
            self.progress.last_print = now + self.after - self.interval
            self.printed = False
            return
        progress = self.progress
        progress.count = done
        if now - progress.last_print >= progress.interval or (done == total and self.printed):
            progress.last_print = now
            progress._print()
            self.printed = True
        if done == total and self.printed:
            progress.close()
