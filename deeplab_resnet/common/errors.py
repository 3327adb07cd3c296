"""The one exception type the scripts turn into a single clear line and a non-zero exit."""
import sys


class InputError(Exception):
    """Bad user input: a missing or corrupt file, a malformed list line, a wrong class count.

    The message is one line naming the file (and list line) and what is wrong.
    """


def warn(message):
    """The scripts' warning line on stderr: 'warning: <message>'."""
    print('warning: %s' % message, file=sys.stderr)
    sys.stderr.flush()


def exit_on_input_error(main):
    """Decorator for script entry points: InputError -> 'error: <message>' on stderr, exit 2."""
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except InputError as e:
            print('error: %s' % e, file=sys.stderr)
            sys.exit(2)
    wrapped.__name__ = main.__name__
    wrapped.__doc__ = main.__doc__
    return wrapped
