"""Run portable test modules under MicroPython (or CPython).

Usage: micropython tests/mpy_run.py [-k=TEXT] [--heap=128K] [--budget=64K] PATH ... [--heap=...] PATH ...

Collects `test_*.py` files (not `*_cpython.py`), runs each file in its own
interpreter process with the given heap (MicroPython never frees interned
names, so files sharing one heap would starve each other), runs every
top-level `test_*` function, and ends with the line `N passed, M failed`.
Exit status 1 when anything failed or nothing ran. Options apply to the
paths after them.

--budget=SIZE: after the test file and everything it imports are loaded,
fill the heap so that only SIZE stays free for the tests. On the ESP32 the
firmware is frozen into flash and its code costs no heap; on the unix port
it is loaded into the heap, so the budget is what the node's data gets.
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


def _size(text):
    text = text.upper()
    if text.endswith("K"):
        return int(text[:-1]) * 1024
    if text.endswith("M"):
        return int(text[:-1]) * 1024 * 1024
    return int(text)


def run_file(path, only, budget=None):
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
    blockers = []
    gc.collect()
    if budget:
        code = gc.mem_alloc()
        # Keep one contiguous region of `budget` bytes (as a fresh node's heap is), fill
        # every other free byte, then release the region.
        reserve = bytearray(budget - 64)
        blockers = [None] * 2048  # sized first: growing it would leave holes
        size = gc.mem_free()
        n = 0
        while size >= 16 and n < len(blockers):
            try:
                blockers[n] = bytearray(size)
                n += 1
            except MemoryError:
                size //= 2
        reserve = None
        gc.collect()
        print("  %-44s code+test resident %d bytes; %d bytes left for the tests" % ("", code, gc.mem_free()))
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
    if budget:
        note = "heap free after %6d of %d" % (gc.mem_free(), budget)
    else:
        note = "heap used %6d" % gc.mem_alloc()
    print("  %-44s %3d passed %3d failed  (%s)" % (dotted, passed, failed, note))
    print(RESULT_MARK, passed, failed)


def main(argv):
    heap = "128K"
    budget = ""
    only = ""
    paths = []  # (path, heap, budget)
    single = False
    for arg in argv:
        if arg.startswith("--heap="):
            heap = arg[7:]
        elif arg.startswith("--budget="):
            budget = arg[9:]
        elif arg.startswith("-k="):
            only = arg[3:]
        elif arg == "--one":
            single = True
        else:
            paths.append((arg.rstrip("/"), heap, budget))
    if single:
        run_file(paths[0][0], only, _size(budget) if budget else None)
        return 0
    exe = sys.executable or "micropython"
    out = __file__ + ".out"  # in this build's own tree: runs from two checkouts never share it (no getpid here)
    passed = failed = 0
    for path, heap, budget in paths:
        for test_file in _test_files(path):
            opts = ("-k=" + only if only else "") + (" --budget=" + budget if budget else "")
            cmd = "%s -X heapsize=%s %s --one %s %s > %s 2>&1" % (exe, heap, __file__, opts, test_file, out)
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
