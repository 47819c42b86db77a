"""Helpers for tests that run under both pytest (CPython) and MicroPython.

Portable test modules are named `test_*.py` and use only plain functions,
plain `assert` and these helpers; modules that need hypothesis or other
CPython-only tools are named `test_*_cpython.py` and are skipped by the
MicroPython runner (tests/mpy_run.py).
"""


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception of `exc_type` it raised; fail otherwise."""
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("%s not raised by %s" % (exc_type.__name__, getattr(fn, "__name__", fn)))


def raises_with(exc_type, text, fn, *args, **kwargs):
    """Like raises(), and the message must contain `text`."""
    exc = raises(exc_type, fn, *args, **kwargs)
    msg = str(exc)
    if text not in msg:
        raise AssertionError("message %r does not mention %r" % (msg, text))
    return exc
