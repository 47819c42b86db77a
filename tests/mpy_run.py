"""Run portable test modules under MicroPython (or CPython).

Usage: micropython -X heapsize=128K tests/mpy_run.py DIR [DIR ...]

Collects `test_*.py` files (not `*_cpython.py`) in each DIR, runs every
top-level `test_*` function, and ends with the line `N passed, M failed`.
Exit status 1 when anything failed or nothing ran.
"""
import gc
import os
import sys


def _repo_root():
    here = __file__.replace("\\", "/")
    cut = here.rfind("/tests/")
    return here[:cut] if cut > 0 else "."


def _print_exc(exc):
    if hasattr(sys, "print_exception"):
        sys.print_exception(exc)  # MicroPython
    else:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)


def _test_files(folder):
    names = sorted(os.listdir(folder))
    return [
        n
        for n in names
        if n.startswith("test_") and n.endswith(".py") and not n.endswith("_cpython.py")
    ]


def _run_module(dotted, only):
    passed = failed = 0
    try:
        mod = __import__(dotted, None, None, ["*"])
    except Exception as exc:  # an import error fails the whole module
        print("ERROR importing", dotted)
        _print_exc(exc)
        return 0, 1
    names = sorted(n for n in dir(mod) if n.startswith("test_"))
    for name in names:
        fn = getattr(mod, name)
        if not callable(fn) or (only and only not in name):
            continue
        gc.collect()
        try:
            fn()
        except Exception as exc:
            failed += 1
            print("FAIL", dotted + "." + name)
            _print_exc(exc)
        else:
            passed += 1
    del mod
    sys.modules.pop(dotted, None)
    gc.collect()
    print("  %-48s %3d passed %3d failed" % (dotted, passed, failed))
    return passed, failed


def main(argv):
    root = _repo_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    only = None
    folders = []
    for arg in argv:
        if arg.startswith("-k="):
            only = arg[3:]
        else:
            folders.append(arg.rstrip("/"))
    passed = failed = 0
    for folder in folders:
        for fname in _test_files(folder):
            dotted = (folder + "/" + fname[:-3]).replace("/", ".")
            p, f = _run_module(dotted, only)
            passed += p
            failed += f
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


sys.exit(main(sys.argv[1:]))
