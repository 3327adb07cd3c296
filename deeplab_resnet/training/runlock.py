"""One training run per snapshot folder: a lease file, FOLDER/train.lock.

The run that starts first creates the file exclusively (O_CREAT | O_EXCL, which also proves,
before any graph is built, that the folder exists and can be written: as root, permission
bits say nothing) and writes into it its host, PID, start time and a heartbeat, which a thread
rewrites every HEARTBEAT_S seconds while the run lives. A second run on the folder refuses at
once, naming the first. The lease is given back (the file removed) when the run ends; one left
by a run that was killed is stale, and the next start takes it over:

- on the same host, as soon as its PID is gone (or belongs to another process: its start
  time differs);
- from another host (a shared file system, where that PID cannot be checked), once its
  heartbeat is older than STALE_S seconds. This compares the other host's clock with this
  one's, so the clocks must agree to well within STALE_S; it cannot be tried on one machine.

Under TF_CONFIG every worker runs the same command on one folder; only the chief takes the
lease (it alone writes there).
"""
import datetime
import json
import os
import socket
import threading
import time

from deeplab_resnet.common.errors import InputError

LOCK_FILE = 'train.lock'
HEARTBEAT_S = 30.0
STALE_S = 180.0


def _process_start(pid):
    """The start time of process `pid` in clock ticks since boot (/proc), or None."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return int(f.read().rsplit(')', 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid, start):
    """Whether process `pid` (started at `start`, /proc ticks, or None) still runs here."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    now = _process_start(pid)
    return start is None or now is None or now == start


def _stamp(seconds):
    return datetime.datetime.fromtimestamp(seconds).strftime('%Y-%m-%d %H:%M:%S')


class Lease(object):
    """The lease of one run on `directory` (acquire() takes it). Use as a context manager
    or call release(). clock: time.time (tests give another)."""

    def __init__(self, directory, heartbeat_s=HEARTBEAT_S, stale_s=STALE_S, clock=time.time):
        self.directory = directory
        self.path = os.path.join(directory, LOCK_FILE)
        self.heartbeat_s, self.stale_s, self.clock = heartbeat_s, stale_s, clock
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.started = None
        self.created = False   # the folder did not exist: removed again if left empty
        self._stop = threading.Event()
        self._thread = None

    def _content(self):
        return {'host': self.host, 'pid': self.pid, 'process_start': _process_start(self.pid),
                'started': self.started, 'started_text': _stamp(self.started),
                'heartbeat': self.clock()}

    def _write_new(self):
        """Creates the lease file exclusively. Returns False when it exists."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, 'w') as f:
            json.dump(self._content(), f)
            f.write('\n')
        return True

    def holder(self):
        """The lease file's content (dict), {} when it cannot be parsed (being written), None
        when there is none."""
        try:
            with open(self.path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            content = json.loads(text)
        except ValueError:
            return {}
        return content if isinstance(content, dict) else {}

    def stale(self, content):
        """Why the lease `content` no longer holds (a string), or None while it does."""
        try:
            pid, host = int(content['pid']), str(content['host'])
            beat = float(content['heartbeat'])
        except (KeyError, TypeError, ValueError):
            return None   # being written: treat as held
        if host == self.host:
            if pid == self.pid:
                return 'this process'
            if not _alive(pid, content.get('process_start')):
                return 'PID %d has ended' % pid
            return None
        age = self.clock() - beat
        if age > self.stale_s:
            return 'no heartbeat for %.0f s (more than %.0f s)' % (age, self.stale_s)
        return None

    def acquire(self):
        """Takes the lease, or raises InputError naming the run that holds it (or why the
        folder cannot be written). Starts the heartbeat thread. Returns self."""
        try:
            self.created = not os.path.lexists(self.directory)
            os.makedirs(self.directory, exist_ok=True)
        except OSError as e:
            raise InputError('%s: cannot create the snapshot folder (%s)' % (
                self.directory, e.strerror or e.__class__.__name__))
        if not os.path.isdir(self.directory):
            raise InputError('%s: --snapshot-dir is not a folder' % self.directory)
        self.started = self.clock()
        for _ in range(3):
            try:
                if self._write_new():
                    self._start_heartbeat()
                    return self
            except OSError as e:
                raise InputError('%s: cannot write in the snapshot folder (%s)' % (
                    self.directory, e.strerror or e.__class__.__name__))
            content = self.holder()
            if content is None:
                continue   # given back meanwhile
            why = self.stale(content)
            if why is None:
                raise InputError(self._refusal(content))
            # Take over a stale lease: remove it only if it is still the one judged stale.
            if self.holder() == content:
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
        raise InputError('%s: cannot take the lease %s (another run takes it at the same '
                         'time?)' % (self.directory, self.path))

    def _refusal(self, content):
        if not content:
            return ('%s: another training run is starting in this folder (%s is being '
                    'written); wait for it to end, or use another --snapshot-dir'
                    % (self.directory, self.path))
        beat = self.clock() - float(content.get('heartbeat', 0))
        return ('%s: another training run uses this folder: host %s, PID %s, since %s (last '
                'heartbeat %.0f s ago; lease %s); wait for it to end, or use another '
                '--snapshot-dir' % (self.directory, content.get('host'), content.get('pid'),
                                    content.get('started_text'), max(beat, 0.0), self.path))

    def _start_heartbeat(self):
        self._thread = threading.Thread(target=self._beat, name='lease-heartbeat', daemon=True)
        self._thread.start()

    def _beat(self):
        while not self._stop.wait(self.heartbeat_s):
            self.refresh()

    def refresh(self):
        """Rewrites the heartbeat (to a temporary file renamed over the lease), while the
        lease is still this run's. Returns False when it is not any more."""
        content = self.holder()
        if not content or content.get('pid') != self.pid or content.get('host') != self.host:
            return False
        tmp = '%s.%d.tmp' % (self.path, self.pid)
        try:
            with open(tmp, 'w') as f:
                json.dump(self._content(), f)
                f.write('\n')
            os.replace(tmp, self.path)
        except OSError:   # a full disk: the lease stays (the heartbeat is only late)
            try:
                os.remove(tmp)
            except OSError:
                pass
        return True

    def release(self):
        """Stops the heartbeat and removes the lease file if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        content = self.holder()
        if content and content.get('pid') == self.pid and content.get('host') == self.host:
            try:
                os.remove(self.path)
            except OSError:
                pass
        if self.created:
            try:
                os.rmdir(self.directory)   # only if empty: a run that wrote nothing
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class _NoLease(object):
    """What a worker that is not the chief holds: nothing."""

    def release(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def acquire(directory, chief=True):
    """The run's lease on `directory` (a Lease, taken), or, for a worker that is not the
    chief, nothing to hold."""
    return Lease(directory).acquire() if chief else _NoLease()
