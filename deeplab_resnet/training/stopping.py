"""Stopping a long run when asked: SIGTERM (Slurm, Kubernetes: SIGKILL follows after a grace
period, ~30 s by default) and Ctrl-C.

Python runs signal handlers only between bytecodes of the main thread, never while
Session.run blocks in C++. The training loop therefore runs each Session.run in a helper
thread (Runner) and waits for it in short slices, so that a signal is seen at once; the loop
decides what to do with it (finish the current micro-batch, save, exit). A run that does not
finish within STALL_S of the signal (a collective waiting for a peer that is gone) is given
up: Runner.run raises Stalled, and the process must exit without touching the session.

Before the loop runs (imports, graph building, session, initialisation: 30-60 s on two cores)
nothing is trained, so there is nothing to save: a StopFlag starts in start-up mode, where the
signal prints one line and raises SystemExit(130 / 143) in the main thread (`finally` blocks
run). Should the main thread not get there within STARTUP_GRACE_S (blocked in TensorFlow's C++,
or a session close waiting for a run), a watcher thread woken by the signal itself
(signal.set_wakeup_fd) ends the process with the same status. `running()` switches to the
save-and-stop behaviour once the loop starts.
"""
import os
import signal
import sys
import threading
import time

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
STALL_S = 15.0
POLL_S = 0.25
STARTUP_GRACE_S = 5.0
SIGNAL_NAMES = {signal.SIGINT: 'Ctrl-C', signal.SIGTERM: 'SIGTERM'}


class StopFlag(object):
    """Ctrl-C / SIGTERM during start-up exit at once (one line, 130 / 143, nothing to save);
    once `running()` was called they ask the loop to stop at the next safe point, and a second
    signal exits at once (its exit status, nothing saved). Use as a context manager in the
    main thread (restores the handlers).

    Attributes: signal (the first signal number or None), since (time.time() of it),
      starting (True until `running()`).
    """

    def __init__(self, message='stop requested: finishing the current micro-batch, then saving '
                               'the last finished update...'):
        self.signal = None
        self.since = None
        self.message = message
        self.starting = True
        self._previous = {}
        self._watcher = None

    @property
    def exit_code(self):
        return EXIT_CODES.get(self.signal, 1)

    def __enter__(self):
        for sig in EXIT_CODES:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._watcher = _StartupWatcher.start(self)
        return self

    def running(self):
        """The loop starts: from now on a signal asks it to save and stop."""
        self.starting = False
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def _handle(self, signum, _frame):
        if self.starting:
            self.signal, self.since = signum, time.time()
            _startup_line(signum)
            raise SystemExit(self.exit_code)
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
        if self._watcher is not None and self.signal is None:   # else it sees the exit done
            self._watcher.stop()
            self._watcher = None


def _startup_line(signum):
    print('\n%s during start-up: nothing trained yet, nothing to save; exiting'
          % SIGNAL_NAMES.get(signum, signal.Signals(signum).name), file=sys.stderr)
    sys.stderr.flush()


class _StartupWatcher(object):
    """A daemon thread woken through signal.set_wakeup_fd by SIGINT / SIGTERM (written by the
    C-level handler, so also while the main thread is blocked in C++): it gives the main
    thread STARTUP_GRACE_S to exit, then ends the process with the signal's exit status."""

    @classmethod
    def start(cls, flag):
        if threading.current_thread() is not threading.main_thread():
            return None
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        try:
            previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except ValueError:
            os.close(read_fd)
            os.close(write_fd)
            return None
        return cls(flag, read_fd, write_fd, previous)

    def __init__(self, flag, read_fd, write_fd, previous):
        self.flag, self.read_fd, self.write_fd = flag, read_fd, write_fd
        self.previous = previous
        self.thread = threading.Thread(target=self._watch, name='startup-signal-watcher',
                                       daemon=True)
        self.thread.start()

    def _watch(self):
        while True:
            try:
                data = os.read(self.read_fd, 1)
            except OSError:
                return
            if not data:   # stop(): the write end is closed
                os.close(self.read_fd)
                return
            code = EXIT_CODES.get(data[0])
            if code is not None and self.flag.starting:
                time.sleep(STARTUP_GRACE_S)
                if not self.flag.starting:   # the loop started meanwhile: it saves and stops
                    return
                if self.flag.signal is None:   # the main thread never ran the handler
                    _startup_line(data[0])
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def stop(self):
        signal.set_wakeup_fd(self.previous)
        os.close(self.write_fd)


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
