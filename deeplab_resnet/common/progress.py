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

    def __init__(self, total, label='', unit='img', interval=1.0, stream=None):
        self.total = total
        self.label = label
        self.unit = unit
        self.interval = interval
        self.stream = stream or sys.stderr
        self.start = time.time()
        self.last_print = 0.0
        self.count = 0
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()

    def rate(self):
        elapsed = time.time() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def update(self, n=1, extra=''):
        self.count += n
        now = time.time()
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
