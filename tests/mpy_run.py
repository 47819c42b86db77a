"""Run portable test modules under MicroPython (or CPython).

Usage: micropython tests/mpy_run.py [--heap=128K] [-k=TEXT] DIR_OR_FILE ...

Collects `test_*.py` files (not `*_cpython.py`), runs each file in its own
interpreter process with the given heap (MicroPython never frees interned
names, so files sharing one heap would starve each other), runs every
top-level `test_*` function, and ends with the line `N passed, M failed`.
Exit status 1 when anything failed or nothing ran.
"""
import gc
import os
import sys

RESULT_MARK = "@@result"


def _print_exc(exc):
    if hasattr(sys, "print_exception"):
        sys.print_exception(exc)  # MicroPython
    else:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)


def _is_dir(path):
    try:
        return (os.stat(path)[0] & 0o170000) == 0o040000
    except OSError:
        return False


def _test_files(path):
    if not _is_dir(path):
        return [path]
    names = sorted(os.listdir(path))
    return [
        path + "/" + n
        for n in names
        if n.startswith("test_") and (n.endswith(".py") or n.endswith(".mpy")) and not n.endswith("_cpython.py")
    ]


def run_file(path, only):
    """Run one test file in this process; print its result line."""
    root = __file__.replace("\\", "/")
    root = root[: root.rfind("/tests/")] if "/tests/" in root else "."
    if root not in sys.path:
        sys.path.insert(0, root)
    dotted = path[:path.rfind(".")].replace("/", ".")
    passed = failed = 0
    try:
        mod = __import__(dotted, None, None, ["*"])
    except Exception as exc:
        print("ERROR importing", dotted)
        _print_exc(exc)
        print(RESULT_MARK, 0, 1)
        return
    for name in sorted(n for n in dir(mod) if n.startswith("test_")):
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
    gc.collect()
    print("  %-44s %3d passed %3d failed  (heap used %6d)" % (dotted, passed, failed, gc.mem_alloc()))
    print(RESULT_MARK, passed, failed)


def main(argv):
    heap = "128K"
    only = ""
    paths = []
    single = False
    for arg in argv:
        if arg.startswith("--heap="):
            heap = arg[7:]
        elif arg.startswith("-k="):
            only = arg[3:]
        elif arg == "--one":
            single = True
        else:
            paths.append(arg.rstrip("/"))
    if single:
        run_file(paths[0], only)
        return 0
    exe = sys.executable or "micropython"
    out = "/tmp/mpy_run.%d.out" % os.getpid() if hasattr(os, "getpid") else "/tmp/mpy_run.out"
    passed = failed = 0
    for path in paths:
        for test_file in _test_files(path):
            cmd = "%s -X heapsize=%s %s --one %s %s > %s 2>&1" % (
                exe, heap, __file__, "-k=" + only if only else "", test_file, out)
            status = os.system(cmd)
            result = None
            with open(out) as f:
                for line in f:
                    if line.startswith(RESULT_MARK):
                        result = line.split()
                    else:
                        print(line.rstrip("\n"))
            if result is None:
                print("CRASH", test_file, "(exit status %s)" % status)
                failed += 1
            else:
                passed += int(result[1])
                failed += int(result[2])
    try:
        os.remove(out)
    except OSError:
        pass
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


sys.exit(main(sys.argv[1:]))
