"""The technician's tools (`python -m hardware ...`): build, upload, console, bench against a pty node.

The node is tests/hardware/pty_node.py: the MicroPython unix port behind a
pseudo-terminal (a raw-REPL shim: the unix REPL has no raw mode) with a
software board and a real directory as its filesystem root; the tools open
/dev/pts/N as they would /dev/ttyUSB0. No ESP32 here: the esptool step is
checked in test_flash_cpython.py by the command it builds and by its errors.
"""
import hashlib
import json
import os
import pty
import select
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.hardware.pty_node import PtyNode

REPO = Path(__file__).resolve().parents[2]


def tool(*args, env=None, timeout=120, input=None):
    """Run `python -m hardware ...` as the technician does; (returncode, stdout, stderr)."""
    e = dict(os.environ, PYTHONPATH=str(REPO), SOURCE_DATE_EPOCH="1764720000")
    e.update(env or {})
    r = subprocess.run([sys.executable, "-m", "hardware", *args], capture_output=True, text=True, timeout=timeout,
                       env=e, cwd=REPO, input=input)
    return r.returncode, r.stdout, r.stderr


# ---- build -------------------------------------------------------------------------------------
def test_build_manifest_lists_every_file_with_its_hash(bundle):
    with zipfile.ZipFile(bundle) as z:
        manifest = json.loads(z.read("manifest.json"))
        names = set(z.namelist())
        assert manifest["format"] == 1 and manifest["version"] == "0.1.0"
        assert manifest["min_micropython"] == "1.24.0" and manifest["boot"] == "main.py"
        assert manifest["built"] == 1764720000  # SOURCE_DATE_EPOCH
        paths = [f["path"] for f in manifest["files"]]
        assert paths == sorted(paths) and set(paths) | {"manifest.json", "manifest.sig"} == names
        for f in manifest["files"]:
            data = z.read(f["path"])
            assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"]
        for needed in ("firmware/node.mpy", "firmware/main.mpy", "firmware/version.mpy", "protocol/plan.mpy",
                       "hardware/esp32.mpy", "hardware/hal.mpy", "hardware/bench.mpy", "main.py", "bootstrap.py",
                       "firmware/boot.mpy", "firmware/ota.mpy"):
            assert needed in paths
        assert manifest["bootstrap"] == "bootstrap.py"
        # the simulator's board and the laptop's tools are not the node's
        assert not [p for p in paths if "softboard" in p or "tools" in p or "__main__" in p]
        assert z.read("firmware/node.mpy")[:2] == b"M\x06"  # .mpy v6


def test_every_module_the_node_imports_is_in_the_bundle(bundle):
    """Closed under imports: a module of firmware/, protocol/ or hardware/ imported (at any depth,
    lazily too) by a shipped module is shipped; otherwise the node fails on the pole, not here."""
    import ast

    from tests.hardware.pty_node import REPO

    with zipfile.ZipFile(bundle) as z:
        paths = {f["path"] for f in json.loads(z.read("manifest.json"))["files"]}
    shipped = {p[:-4].replace("/", ".") for p in paths if p.endswith(".mpy")}
    missing = set()
    for mod in sorted(shipped):
        src = REPO / (mod.replace(".", "/") + ".py")
        for node in ast.walk(ast.parse(src.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + ["%s.%s" % (node.module, a.name) for a in node.names]
            for name in names:
                if name.split(".")[0] in ("firmware", "protocol", "hardware") and name.count(".") == 1:
                    pkg_file = REPO / (name.replace(".", "/") + ".py")
                    if pkg_file.exists() and name not in shipped:
                        missing.add("%s (imported by %s)" % (name, mod))
    assert not missing, sorted(missing)


def test_build_is_reproducible_and_the_signature_verifies(bundle, release_key, tmp_path):
    key, key_file = release_key
    rc, so, se = tool("build", "--out", str(tmp_path / "again"), "--sign", str(key_file))
    assert rc == 0 and "signed" in so, se
    assert (tmp_path / "again" / bundle.name).read_bytes() == bundle.read_bytes()  # Ed25519 is deterministic too
    with zipfile.ZipFile(bundle) as z:
        key.public_key().verify(z.read("manifest.sig"), z.read("manifest.json"))  # raises if wrong


def test_build_with_a_bad_key_says_so_before_compiling(tmp_path):
    (tmp_path / "bad.key").write_text("not a key")
    rc, so, se = tool("build", "--out", str(tmp_path / "x"), "--sign", str(tmp_path / "bad.key"))
    assert rc == 2 and "Ed25519" in se and "Traceback" not in se
    assert not (tmp_path / "x").exists()
    rc, so, se = tool("build", "--out", str(tmp_path / "x"), "--sign", str(tmp_path / "missing.key"))
    assert rc == 2 and "missing.key" in se and "Traceback" not in se


# ---- console -----------------------------------------------------------------------------------
def test_console_talks_to_the_node_and_ctrl_bracket_quits(tmp_path):
    with PtyNode(tmp_path / "node") as node:
        master, slave = pty.openpty()  # the technician's terminal
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-m", "hardware", "console", "--port", node.port],
                                stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO)
        os.close(slave)
        seen = b""

        def wait_for(text, timeout=20):
            nonlocal seen
            deadline = time.monotonic() + timeout
            while text not in seen:
                assert time.monotonic() < deadline, "no %r in %r" % (text, seen)
                if select.select([master], [], [], 0.2)[0]:
                    try:
                        seen += os.read(master, 4096)
                    except OSError:
                        break

        try:
            wait_for(b"Ctrl-]")
            time.sleep(0.5)  # mpremote's console is up
            os.write(master, b"print(6*7, hal.zone_count())\r")
            wait_for(b"42 4")
            os.write(master, b"\x1d")  # Ctrl-]
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)


def test_console_on_a_missing_port_says_so():
    rc, so, se = tool("console", "--port", "/dev/ttyUSB97")
    assert rc == 2 and "/dev/ttyUSB97" in se and "Không có cổng" in se and "No port" in se
    assert "Traceback" not in se


# ---- bench -------------------------------------------------------------------------------------
def bench_on(tmp_path, bundle, **board):
    with PtyNode(tmp_path / "node", **board) as node:
        node.install(bundle)  # the bench code runs from the node's slot, as on the ESP32
        return tool("bench", "--port", node.port, "--pir-wait", "1", env={"COLUMNS": "200"})


def test_bench_on_a_good_board_passes_everything(tmp_path, bundle):
    rc, so, se = bench_on(tmp_path, bundle)
    assert rc == 0, so + se
    for part in ("lamp relay", "relay feedback", "lamp current sensor", "dimmer", "loudspeaker", "clock", "photocell",
                 "PIR", "zone 4 relay"):
        assert part in so, part
    assert "FAIL" not in so.replace("FAILED", "") and "no part failed" in so


def test_bench_names_a_miswired_lamp_relay_with_its_pin(tmp_path, bundle):
    rc, so, se = bench_on(tmp_path, bundle, faults={"miswired": ["lamp_relay"]})
    assert rc == 1, so + se
    assert "Rơ-le đèn không đóng: kiểm tra dây chân 26" in so
    assert "Lamp relay does not close: check the wire on pin 26" in so
    assert "FAILED: Rơ-le đèn / lamp relay\n" in so and "Traceback" not in so + se  # that part alone


def test_bench_tells_a_feedback_wire_and_a_missing_clock_apart(tmp_path, bundle):
    rc, so, se = bench_on(tmp_path, bundle, faults={"miswired": ["lamp_feedback", "dimmer"], "failed": ["ds3231"]})
    assert rc == 1, so + se
    assert "check the wire on pin 34 and the contactor's auxiliary contact" in so  # feedback, not the relay
    assert "Dimming has no effect: check the wire on pin 25" in so
    assert "SDA pin 21 / SCL pin 22" in so
    assert "Lamp relay does not close" not in so


# ---- the harness speaks what mpremote speaks ---------------------------------------------------
def test_mpremotes_own_commands_work_on_the_pty_node(tmp_path):
    """mpremote's CLI (raw REPL, raw paste, fs) against the pty node: what the tools build on."""
    (tmp_path / "hello.txt").write_bytes(bytes(range(256)) * 8)
    with PtyNode(tmp_path / "node") as node:
        r = subprocess.run([sys.executable, "-m", "mpremote", "connect", node.port, "fs", "mkdir", ":/app", "+",
                            "fs", "cp", str(tmp_path / "hello.txt"), ":/app/hello.txt", "+",
                            "exec", "import os; print(os.listdir('/app'), hal.lamp_relay_state())"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "['hello.txt'] False" in r.stdout
        r = subprocess.run([sys.executable, "-m", "mpremote", "connect", node.port, "exec", "1/0"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "ZeroDivisionError" in r.stdout + r.stderr  # the error channel of the raw REPL
    assert (node.root / "app" / "hello.txt").read_bytes() == (tmp_path / "hello.txt").read_bytes()


def test_the_built_bootstrap_arms_the_chips_timer_on_a_trial_and_resets_on_a_crash(tmp_path, monkeypatch):
    """The bundle's bootstrap.py (firmware/boot.py + hardware/boot_esp32.py) with a stand-in `machine`."""
    import sys
    import types

    from hardware.tools.build import bootstrap

    calls = []

    class Timer:
        ONE_SHOT = 0

        def __init__(self, n):
            pass

        def init(self, mode, period, callback):
            calls.append(("timer", period))

    machine = types.ModuleType("machine")
    machine.Timer = Timer
    machine.reset = lambda: calls.append(("reset",))
    monkeypatch.setitem(sys.modules, "machine", machine)
    ns = {"__name__": "bootstrap"}
    exec(compile(bootstrap(), "bootstrap.py", "exec"), ns)
    root = tmp_path / "node"
    for slot, body in (("a", "ok = 1\n"), ("b", "raise RuntimeError('bad build')\n")):
        (root / "app" / slot).mkdir(parents=True)
        (root / "app" / slot / "main.py").write_text(body)
    (root / "boot.json").write_text(json.dumps({"active": "b", "previous": "a", "state": "trial", "version": "2"}))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "main", raising=False)
    with pytest.raises(RuntimeError):
        ns["run"](str(root) + "/", ns["Esp32Boot"]())
    assert calls == [("timer", ns["TRIAL_MS"]), ("reset",)]  # the trial timer armed, then the reset
    assert json.loads((root / "boot.json").read_text())["state"] == "failed"
    sys.modules.pop("main", None)
