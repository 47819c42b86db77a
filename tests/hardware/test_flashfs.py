"""hardware.flashfs.DirFS on the host's real filesystem (portable: pytest and MicroPython)."""
import binascii
import os

from hardware.flashfs import DirFS
from tests.portable import raises, raises_with


def _tmp():
    return "/tmp/denloa-flashfs-" + binascii.hexlify(os.urandom(6)).decode()


def _remove_tree(path):
    for name in os.listdir(path):
        full = path + "/" + name
        if os.stat(full)[0] & 0o170000 == 0o040000:
            _remove_tree(full)
        else:
            os.remove(full)
    os.rmdir(path)


def test_creates_nested_directories_and_keeps_names_relative():
    root = _tmp()
    try:
        fs = DirFS(root + "/nodes/den-07/")
        with fs.open("config", "wb") as f:
            f.write(b"abc")
        assert fs.stat("config") == 3
        assert fs.listdir() == ["config"]
        fs.rename("config", "config.bak")
        assert sorted(os.listdir(root + "/nodes/den-07")) == ["config.bak"]
        with fs.open("config.bak", "rb") as f:
            assert f.read() == b"abc"
        fs.remove("config.bak")
        assert fs.listdir() == []
        DirFS(root + "/nodes/den-07")  # an existing directory is fine
    finally:
        _remove_tree(root)


def test_rename_replaces_the_target():
    root = _tmp()
    try:
        fs = DirFS(root)
        for name, data in (("a", b"new"), ("b", b"old")):
            with fs.open(name, "wb") as f:
                f.write(data)
        fs.rename("a", "b")
        with fs.open("b", "rb") as f:
            assert f.read() == b"new"
        assert fs.listdir() == ["b"]
    finally:
        _remove_tree(root)


def test_missing_files_raise_oserror_like_os():
    root = _tmp()
    try:
        fs = DirFS(root)
        raises(OSError, fs.stat, "nothing")
        raises(OSError, fs.remove, "nothing")
        raises(OSError, fs.open, "nothing", "rb")
    finally:
        _remove_tree(root)


def test_a_directory_that_cannot_be_created_is_an_oserror_that_says_so():
    root = _tmp()
    try:
        fs = DirFS(root)
        with fs.open("file", "wb") as f:
            f.write(b"x")
        raises_with(OSError, "cannot be created", DirFS, root + "/file/sub")  # a file in the way
    finally:
        _remove_tree(root)
