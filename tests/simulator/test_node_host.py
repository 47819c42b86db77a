"""simulator/node_host.py really reboots a node: a reset, a reboot command, an expired watchdog."""
import os
import time

from simulator.hosts import NodeHost, free_port
from tests.firmware.rig import config


def _host(tmp_path, speed=600, **board):
    flash = tmp_path / "flash"
    flash.mkdir()
    cfg = config(broker={"host": "127.0.0.1", "port": free_port(), "backoff_max_ms": 200})  # nobody listens
    spec = {"dir": str(flash), "config": cfg, "board": dict({"seed": 3}, **board)}
    return NodeHost(tmp_path, [spec], speed=speed, start=time.time()).start(timeout=30), cfg["node"]


def _wait(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_a_crash_at_boot_leaves_the_node_dead_until_its_watchdog_resets_it(tmp_path):
    host, node = _host(tmp_path, boot_crash=3)
    try:
        assert _wait(lambda: len(host.reboots(node)) >= 3), host.lines[-30:]
        time.sleep(1.0)  # 600 s simulated: the fourth boot does not crash, so no further reboot
        causes = [c for _, c in host.reboots(node)]
        assert causes == ["watchdog"] * 3, causes
        powers = [v for _, v in host.truth(node, "power")]
        assert powers == [True, False, True, False, True, False, True], powers
    finally:
        host.stop()


def test_boot_crash_command_and_a_healthy_node_is_not_reset(tmp_path):
    host, node = _host(tmp_path)
    try:
        time.sleep(1.0)
        assert host.reboots(node) == [], host.lines[-20:]
        host.send("%s boot_crash 1" % node)
        host.send("%s power off" % node)
        host.send("%s power on" % node)
        assert _wait(lambda: len(host.reboots(node)) >= 1), host.lines[-30:]
        time.sleep(0.5)
        assert [c for _, c in host.reboots(node)] == ["watchdog"]
    finally:
        host.stop()
