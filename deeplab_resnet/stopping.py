"""Stopping a long run when asked: SIGTERM (Slurm, Kubernetes: SIGKILL follows after a grace
period, ~30 s by default) and Ctrl-C.

Python runs signal handlers only between bytecodes of the main thread, never while
Session.run blocks in C++. The training loop therefore runs each Session.run in a helper
thread (Runner) and waits for it in short slices, so that a signal is seen at once; the loop
decides what to do with it (finish the current micro-batch, save, exit). A run that does not
finish within STALL_S of the signal (a collective waiting for a peer that is gone) is given
up: Runner.run raises Stalled, and the process must exit without touching the session.
"""
import os
import signal
import sys
import threading
import time

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
STALL_S = 15.0
POLL_S = 0.25


class StopFlag(object):
    """Ctrl-C / SIGTERM ask the loop to stop at the next safe point; a second signal exits at
    once (its exit status, nothing saved). Use as a context manager (restores the handlers).

    Attributes: signal (the first signal number or None), since (time.time() of it).
    """

    def __init__(self, message='stop requested: finishing the current micro-batch, then saving '
                               'the last finished update...'):
        self.signal = None
        self.since = None
        self.message = message
        self._previous = {}

    @property
    def exit_code(self):
        return EXIT_CODES.get(self.signal, 1)

    def __enter__(self):
        for sig in EXIT_CODES:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.signal is not None:
            print('\nsecond signal: exiting at once', file=sys.stderr)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(EXIT_CODES.get(signum, 1))
        self.signal, self.since = signum, time.time()
        print('\n%s: %s' % (signal.Signals(signum).name, self.message), file=sys.stderr)
        sys.stderr.flush()

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Stalled(Exception):
    """A Session.run did not finish within STALL_S after a stop was asked for."""


class Runner(object):
    """sess.run(fetches, options=options) in a helper thread, waited for in slices of POLL_S
    so that the main thread's signal handlers run meanwhile.

    stall_s: after a stop is asked for, give up waiting after this many seconds (raise
      Stalled); None waits for the run to finish however long it takes (one process: the
      micro-batch in flight always ends).
    """

    def __init__(self, sess, stop, options=None, stall_s=None):
        self.sess, self.stop, self.options, self.stall_s = sess, stop, options, stall_s

    def __call__(self, fetches, feed_dict=None):
        box = {}

        def target():
            try:
                box['value'] = self.sess.run(fetches, feed_dict, options=self.options)
            except BaseException as e:   # re-raised in the main thread
                box['error'] = e

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(POLL_S)
            if (thread.is_alive() and self.stall_s is not None and self.stop.signal is not None
                    and time.time() - self.stop.since > self.stall_s):
                raise Stalled('no answer %.0f s after %s' % (
                    time.time() - self.stop.since, signal.Signals(self.stop.signal).name))
        if 'error' in box:
            raise box['error']
        return box['value']
