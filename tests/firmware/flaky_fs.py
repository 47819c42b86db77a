"""Filesystems that fail like flash does, for store tests (portable).

PowerCutFS: the node loses power after a budget of bytes. Every mutating
operation spends from the budget (open for writing 1, write len(b) and at
least 1, rename 1, remove 1), so a budget N cuts inside a write or between
two operations. The write that crosses the budget writes the part that
fits, then PowerCut is raised and every later call raises it too, as the
CPU is off. "Reboot" by building a fresh fs on the same directory.

FullFS: a flash with `free` bytes left: the write that crosses it writes
what fits and raises OSError(ENOSPC), like LittleFS and POSIX do.
"""

ENOSPC = 28


class PowerCut(Exception):
    """The power went off: nothing after this reached the flash."""


class PowerCutFS:
    def __init__(self, fs, budget=None):
        self._fs = fs
        self.budget = budget  # None: the power never goes off
        self.used = 0  # budget spent so far (total cost of an uncut run)
        self.dead = False
        self._files = []

    def _spend(self, cost):
        """Take `cost` from the budget; return how much of it fits."""
        self.check()
        if self.budget is None or self.used + cost <= self.budget:
            self.used += cost
            return cost
        fits = self.budget - self.used
        self.used = self.budget
        return fits

    def check(self):
        if self.dead:
            raise PowerCut("the node is off")

    def cut(self):
        self.dead = True
        for f in self._files:  # what was written reaches the disk; nothing more will
            f.close()
        self._files = []
        raise PowerCut("power cut after %d" % self.used)

    def _forget(self, f):
        if f in self._files:
            self._files.remove(f)

    def open(self, name, mode):
        if "r" in mode:
            self.check()
        elif self._spend(1) < 1:  # creating or truncating the file is a change
            self.cut()
        f = self._fs.open(name, mode)
        self._files.append(f)
        return _CutFile(self, f)

    def rename(self, old, new):
        if self._spend(1) < 1:
            self.cut()
        self._fs.rename(old, new)

    def remove(self, name):
        if self._spend(1) < 1:
            self.cut()
        self._fs.remove(name)

    def listdir(self, *name):
        self.check()
        return self._fs.listdir(*name)

    def stat(self, name):
        self.check()
        return self._fs.stat(name)

    # a filesystem from its root (firmware.boot.RootFS, the OTA slots) also has directories
    def isdir(self, name):
        self.check()
        return self._fs.isdir(name)

    def mkdir(self, name):
        if self._spend(1) < 1:
            self.cut()
        self._fs.mkdir(name)


class _CutFile:
    def __init__(self, fs, f):
        self._fs = fs
        self._f = f

    def read(self, n=None):
        self._fs.check()
        return self._f.read() if n is None else self._f.read(n)

    def write(self, buf):
        cost = max(1, len(buf))
        fits = self._fs._spend(cost)
        if fits < cost:
            if fits:
                self._f.write(buf[:fits])
            self._fs.cut()
        return self._f.write(buf)

    def flush(self):
        self._fs.check()
        self._f.flush()

    def close(self):
        self._fs._forget(self._f)
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FullFS:
    """A flash with `free` bytes left for writes; everything else passes through."""

    def __init__(self, fs, free=0):
        self._fs = fs
        self.free = free

    def open(self, name, mode):
        f = self._fs.open(name, mode)
        return f if "r" in mode else _FullFile(self, f)

    def rename(self, old, new):
        self._fs.rename(old, new)

    def remove(self, name):
        self._fs.remove(name)

    def listdir(self):
        return self._fs.listdir()

    def stat(self, name):
        return self._fs.stat(name)


class _FullFile:
    def __init__(self, fs, f):
        self._fs = fs
        self._f = f

    def write(self, buf):
        fits = min(len(buf), self._fs.free)
        if fits:
            self._f.write(buf[:fits])
            self._fs.free -= fits
        if fits < len(buf):
            raise OSError(ENOSPC)
        return fits

    def read(self, n=None):
        return self._f.read() if n is None else self._f.read(n)

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
