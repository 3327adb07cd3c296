"""The training run's TensorBoard event file, on a disk that can fill up.

TensorFlow's FileWriter writes in a thread of its own. When the disk is full, that thread
logs an error and dies with a traceback, and the next add_summary, flush or close raises a
RuntimeError in the main thread. EventWriter turns that into the run's one line (InputError,
naming the folder and "no space left"), keeps the thread's traceback off the screen, and
writes the graph (17-33 MB) only into the first event file of a folder.
"""
import logging
import os
import threading

import tensorflow as tf

from deeplab_resnet.checkpoint.snapshot_folder import is_no_space
from deeplab_resnet.common.errors import InputError

tf1 = tf.compat.v1

WRITER_THREAD = 'EventLoggerThread'   # TensorFlow's name for the FileWriter's thread
EVENTS_PREFIX = 'events.out.tfevents.'


def has_events(directory):
    """Whether the folder already holds an event file (which then holds the graph)."""
    return any(n.startswith(EVENTS_PREFIX) for n in os.listdir(directory))


class _DropWriterThreadErrors(logging.Filter):
    def filter(self, record):
        return 'EventFileWriter writer thread error' not in record.getMessage()


class EventWriter(object):
    """tf1.summary.FileWriter(directory) with the graph once per folder; add_summary, flush
    and close raise InputError (one line) when the disk is full. Until close(), the writer
    thread's own traceback and error line are not shown (the main thread reports the error
    at the next call)."""

    def __init__(self, directory, graph=None):
        self.directory = directory
        self._hook = threading.excepthook
        self._filter = _DropWriterThreadErrors()
        tf.get_logger().addFilter(self._filter)
        threading.excepthook = self._quiet
        self.writer = tf1.summary.FileWriter(
            directory, graph=None if has_events(directory) else graph)

    def _quiet(self, args):
        if args.thread is None or args.thread.name != WRITER_THREAD:
            self._hook(args)

    def _call(self, method, *args):
        try:
            return method(*args)
        except (RuntimeError, tf.errors.OpError, OSError) as e:
            if is_no_space(e):
                raise InputError('%s: no space left on the device while writing the '
                                 'TensorBoard events; the snapshots written so far are intact: '
                                 'free space, then run the same command to resume'
                                 % self.directory)
            raise

    def add_summary(self, summary, step):
        self._call(self.writer.add_summary, summary, step)

    def flush(self):
        self._call(self.writer.flush)

    def close(self):
        """Flushes and closes the file; restores the thread error reporting."""
        try:
            self._call(self.writer.close)
        finally:
            if threading.excepthook == self._quiet:
                threading.excepthook = self._hook
            tf.get_logger().removeFilter(self._filter)
