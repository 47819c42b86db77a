"""Flash storage: round trips, corruption, power cuts at every byte, full flash (portable)."""
import binascii
import os

from firmware.store import HEADER_SIZE, BatchedValue, PersistentCounter, Store, StoreError
from hardware.flashfs import DirFS
from tests.firmware.flaky_fs import FullFS, PowerCut, PowerCutFS
from tests.portable import raises, raises_with


def make_dir():
    path = "/tmp/denloa-store-" + binascii.hexlify(os.urandom(6)).decode()
    DirFS(path)
    return path


def remove_dir(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


def reboot(path, log=None):
    """A fresh Store on the same directory, as after a power cut."""
    return Store(DirFS(path), log)


def config(version, size):
    """A config blob of `size` bytes that differs per version."""
    head = ('{"version":%d,"rules":[' % version).encode()
    return head + b"x" * (size - len(head) - 2) + b"]}"


def write_raw(path, name, data):
    with open(path + "/" + name, "wb") as f:
        f.write(data)


def read_raw(path, name):
    with open(path + "/" + name, "rb") as f:
        return f.read()


def no_temp_files(path):
    return [n for n in os.listdir(path) if n.endswith(".tmp")] == []


def test_bytes_and_json_round_trip():
    d = make_dir()
    try:
        s = reboot(d)
        assert s.load("config") is None
        assert s.load_json("config") is None
        s.save("config", b"\x00\xffraw")
        s.save("empty", b"")
        s.save_json("program", {"v": 3, "steps": [[1080, 100], [1380, 40]], "name": "Tết"})
        s = reboot(d)
        assert s.load("config") == b"\x00\xffraw"
        assert s.load("empty") == b""
        assert s.load_json("program") == {"v": 3, "steps": [[1080, 100], [1380, 40]], "name": "Tết"}
        s.save("config", b"second")
        assert reboot(d).load("config") == b"second"
        s.delete("config")
        s.delete("never-stored")
        assert reboot(d).load("config") is None
        assert not s.exists("config")
        assert sorted(os.listdir(d)) == ["empty", "program"]
    finally:
        remove_dir(d)


def test_bad_names_and_data_are_refused():
    d = make_dir()
    try:
        s = reboot(d)
        for bad in ["", "config.tmp", "config.bak", None]:
            raises(ValueError, s.save, bad, b"x")
        raises(TypeError, s.save, "config", "text, not bytes")
    finally:
        remove_dir(d)


def test_corrupt_main_falls_back_to_backup():
    d = make_dir()
    try:
        s = reboot(d)
        s.save("config", b"version one")
        s.save("config", b"version two")
        good = read_raw(d, "config")
        corruptions = [
            good[:5],  # truncated header
            good[:HEADER_SIZE + 3],  # torn tail
            good[:-1] + b"?",  # flipped byte: bad checksum
            b"junk" + good[4:],  # bad magic
            good + b"more",  # longer than the header says
            b"",
        ]
        for bad in corruptions:
            write_raw(d, "config", bad)
            log = []
            assert reboot(d, log.append).load("config") == b"version one"
            assert len(log) == 2 and "corrupt" in log[0] and "backup" in log[1]
        # a save never moves a corrupt copy over the good backup
        write_raw(d, "config", good[:7])
        s.save("config", b"version three")
        assert reboot(d).load("config") == b"version three"
        assert read_raw(d, "config.bak")[HEADER_SIZE:] == b"version one"
    finally:
        remove_dir(d)


def test_both_copies_corrupt_gives_none_and_logs():
    d = make_dir()
    try:
        s = reboot(d)
        s.save_json("config", {"a": 1})
        s.save_json("config", {"a": 2})
        write_raw(d, "config", b"\x00" * 20)
        write_raw(d, "config.bak", read_raw(d, "config.bak")[:-2])
        log = []
        s = reboot(d, log.append)
        assert s.load("config") is None
        assert s.load_json("config") is None
        assert s.exists("config")
        assert len(log) >= 2
        # valid copy, but not JSON
        s.save("config", b"{not json")
        assert s.load_json("config") is None
        assert "JSON" in log[-1]
    finally:
        remove_dir(d)


def test_stray_temp_file_is_ignored_and_removed():
    d = make_dir()
    try:
        s = reboot(d)
        s.save("config", b"old")
        write_raw(d, "config.tmp", b"dls1\x10\x00")
        assert reboot(d).load("config") == b"old"
        assert no_temp_files(d)
    finally:
        remove_dir(d)


def save_cost(d, name, data):
    """Budget spent by an uncut save (the store is left as before by the caller)."""
    fs = PowerCutFS(DirFS(d))
    Store(fs).save(name, data)
    return fs.used


def cut_every_byte(d, prepare, name, new, allowed):
    """Prepare, save `new` with every budget up to its full cost, reboot, check load is in `allowed`."""
    prepare()
    total = save_cost(d, name, new)
    for budget in range(total + 1):
        prepare()
        fs = PowerCutFS(DirFS(d), budget)
        try:
            Store(fs).save(name, new)
            completed = True
        except PowerCut:
            completed = False
        assert completed == (budget == total), budget
        s = reboot(d)
        got = s.load(name)
        assert got in allowed, (budget, got)
        if completed:
            assert got == new
        assert no_temp_files(d)
        s.save(name, b"next")
        assert reboot(d).load(name) == b"next"
    return total


def test_power_cut_at_every_byte_of_a_save():
    d = make_dir()
    v0, v1, v2 = config(0, 280), config(1, 300), config(2, 350)

    def prepare():
        for n in os.listdir(d):
            os.remove(d + "/" + n)
        s = reboot(d)
        s.save("config", v0)
        s.save("config", v1)  # main = v1, backup = v0: v0 must never come back

    try:
        total = cut_every_byte(d, prepare, "config", v2, (v1, v2))
        assert total == 1 + HEADER_SIZE + len(v2) + 2
    finally:
        remove_dir(d)


def test_power_cut_at_every_byte_of_a_first_save():
    d = make_dir()
    v1 = config(1, 200)

    def prepare():
        for n in os.listdir(d):
            os.remove(d + "/" + n)

    try:
        cut_every_byte(d, prepare, "config", v1, (None, v1))
    finally:
        remove_dir(d)


def test_power_cut_after_an_earlier_cut_between_renames():
    d = make_dir()
    v1, v2, v3 = config(1, 200), config(2, 220), config(3, 240)

    def prepare():
        for n in os.listdir(d):
            os.remove(d + "/" + n)
        s = reboot(d)
        s.save("config", v1)
        fs = PowerCutFS(DirFS(d), 1 + HEADER_SIZE + len(v2) + 1)  # dies after main -> backup
        raises(PowerCut, Store(fs).save, "config", v2)

    try:
        prepare()
        assert "config" not in os.listdir(d) and reboot(d).load("config") == v1
        cut_every_byte(d, prepare, "config", v3, (v1, v3))
    finally:
        remove_dir(d)


def test_power_cut_during_delete_never_brings_back_an_older_version():
    d = make_dir()
    try:
        for budget in range(4):
            s = reboot(d)
            s.save("config", b"old")
            s.save("config", b"new")
            try:
                Store(PowerCutFS(DirFS(d), budget)).delete("config")
            except PowerCut:
                pass
            assert reboot(d).load("config") in (b"new", None)
    finally:
        remove_dir(d)


def test_flash_full_keeps_the_old_version():
    d = make_dir()
    try:
        reboot(d).save("config", b"old config")
        for free in (0, 5, HEADER_SIZE + 3):
            s = Store(FullFS(DirFS(d), free))
            raises_with(StoreError, "flash is full", s.save, "config", b"new config that does not fit")
            assert reboot(d).load("config") == b"old config"
            assert no_temp_files(d)
    finally:
        remove_dir(d)


class RenameFailsFS(DirFS):
    """A DirFS whose n-th rename fails with an I/O error."""

    def __init__(self, path, fail_at):
        DirFS.__init__(self, path)
        self.renames = 0
        self.fail_at = fail_at

    def rename(self, old, new):
        self.renames += 1
        if self.renames == self.fail_at:
            raise OSError(5)
        DirFS.rename(self, old, new)


def test_failed_rename_is_a_store_error_and_keeps_the_old_version():
    d = make_dir()
    try:
        reboot(d).save("config", b"old")
        for fail_at in (1, 2):
            s = Store(RenameFailsFS(d, fail_at))
            raises_with(StoreError, "flash error", s.save, "config", b"new")
            assert reboot(d).load("config") == b"old"
            assert no_temp_files(d)
    finally:
        remove_dir(d)


def test_counter_is_durable_before_it_changes():
    d = make_dir()
    try:
        c = PersistentCounter(reboot(d), "cmd_counter")
        assert c.value == 0 and not c.lost
        c.advance(7)
        assert c.value == 7
        raises_with(StoreError, "only goes up", c.advance, 7)
        raises_with(StoreError, "only goes up", c.advance, 3)
        raises(StoreError, c.advance, True)
        assert c.value == 7
        assert PersistentCounter(reboot(d), "cmd_counter").value == 7
        total = 1 + HEADER_SIZE + 1 + 2  # "8" is one byte of JSON
        for budget in range(total + 1):
            fs = PowerCutFS(DirFS(d))
            c = PersistentCounter(Store(fs), "cmd_counter")
            fs.budget = fs.used + budget  # the cut falls inside advance()
            start = c.value
            try:
                c.advance(start + 1)
            except PowerCut:
                assert c.value == start  # never acted on before it is on flash
                assert PersistentCounter(reboot(d), "cmd_counter").value in (start, start + 1)
            else:
                assert c.value == start + 1
                assert PersistentCounter(reboot(d), "cmd_counter").value == start + 1
        assert PersistentCounter(reboot(d), "cmd_counter").value == 8
    finally:
        remove_dir(d)


def test_counter_not_stored_when_flash_full_and_lost_is_reported():
    d = make_dir()
    try:
        c = PersistentCounter(reboot(d), "cmd_counter")
        c.advance(5)
        c = PersistentCounter(Store(FullFS(DirFS(d))), "cmd_counter")
        raises_with(StoreError, "flash is full", c.advance, 6)
        assert c.value == 5
        write_raw(d, "cmd_counter", b"garbage")
        write_raw(d, "cmd_counter.bak", b"garbage")
        log = []
        c = PersistentCounter(reboot(d, log.append), "cmd_counter")
        assert c.value == 0 and c.lost
        assert "counter" in log[-1]
    finally:
        remove_dir(d)


def test_batched_value_spares_the_flash():
    d = make_dir()
    try:
        e = BatchedValue(reboot(d), "energy_wh", min_interval_s=600, min_delta=10.0)
        assert e.value == 0 and e.writes == 0
        now = 1000.0
        for i in range(100):  # 5 Wh over ~5 minutes: under both thresholds
            now += 3
            e.update(i * 0.05, now)
        assert e.writes == 0
        e.update(5.5, now + 600)  # the interval has passed
        assert e.writes == 1
        e.update(5.6, now + 601)
        assert e.writes == 1
        e.update(16.0, now + 602)  # moved by min_delta: written at once
        assert e.writes == 2
        e.update(16.0, now + 5000)  # unchanged: nothing to write
        assert e.writes == 2
        e.update(17.0, now + 5001)
        e.flush()
        assert e.writes == 3
        e.flush()
        assert e.writes == 3
        e.update(18.0, now + 5002)  # never written: lost by the reboot
        e = BatchedValue(reboot(d), "energy_wh")
        assert e.value == 17.0
        e.update(18.0, 5.0)
        e.update(19.0, 1.0)  # the clock went backwards (ticks wrapped): write, don't stall
        assert e.writes == 1
        assert BatchedValue(reboot(d), "energy_wh").value == 19.0
    finally:
        remove_dir(d)


def test_batched_value_write_failure_is_raised_once_per_interval():
    d = make_dir()
    try:
        e = BatchedValue(Store(FullFS(DirFS(d))), "energy_wh", min_interval_s=600, min_delta=10.0)
        e.update(0.0, 0)
        raises_with(StoreError, "flash is full", e.update, 20.0, 1)
        e.update(40.0, 2)  # over min_delta again, but no retry before the interval
        e.update(45.0, 300)
        raises(StoreError, e.update, 50.0, 601)
        assert e.value == 50.0 and e.writes == 0
    finally:
        remove_dir(d)
