"""The node's storage directory on a real filesystem: the HAL's `fs` object.

`DirFS` gives `firmware.store.Store` the five calls it needs (open, rename,
remove, listdir, stat) over one directory, with names relative to it. It
runs on the ESP32's flash filesystem, the MicroPython unix port and CPython;
`Esp32Hal.fs` builds one, and tests and the simulator hand one to `SoftBoard`.
"""
import os


class DirFS:
    """The HAL `fs` interface over a real directory (MicroPython unix/ESP32, CPython)."""

    def __init__(self, path):
        self._path = path.rstrip("/") or "/"
        _make_dirs(self._path)

    def _full(self, name):
        return self._path + name if self._path == "/" else self._path + "/" + name

    def open(self, name, mode):
        return open(self._full(name), mode)

    def rename(self, old, new):
        getattr(os, "replace", os.rename)(self._full(old), self._full(new))  # replace: atomic on Windows too

    def remove(self, name):
        os.remove(self._full(name))

    def listdir(self):
        return os.listdir(self._path)

    def stat(self, name):
        return os.stat(self._full(name))[6]

    def free_bytes(self):
        """Bytes the filesystem still has for files, or None when it cannot say."""
        try:
            st = os.statvfs(self._path)
        except (AttributeError, OSError):
            return None
        return st[0] * st[4]  # f_bsize * f_bavail (LittleFS gives f_bsize = f_frsize)


def _is_dir(path):
    try:
        return (os.stat(path)[0] & 0o170000) == 0o040000
    except OSError:
        return False


def _make_dirs(path):
    if _is_dir(path):
        return
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        if sub:
            try:
                os.mkdir(sub)
            except OSError:
                pass  # exists already, or the check below says why not
    if not _is_dir(path):
        raise OSError("storage directory %r cannot be created: check the filesystem is mounted" % path)
