"""A node (real firmware, real MicroPython, software board) against a real Mosquitto."""
import time

import pytest

from protocol import commands, topics
from protocol.auth import to_hex
from protocol.commands import Command
from protocol.messages import Ack, Event, State
from tests.firmware.rig import KEY, NODE, SITE, config
from tests.mosquitto import mosquitto  # noqa: F401  (fixture)
from simulator.hosts import NodeHost, Watcher

NOON = 1795366800 + 12 * 3600  # Monday 2026-11-23 12:00 in Hanoi: the lamp is off by program


def _spec(tmp_path, port):
    cfg = config(broker={"host": "127.0.0.1", "port": port, "keepalive": 10}, lamp={"fault_s": 2, "ramp_ms": 0})
    return [{"dir": str(tmp_path / "flash"), "config": cfg, "board": {"zones": 2, "seed": 3}}]


@pytest.fixture
def rig(tmp_path, mosquitto):
    watcher = Watcher(mosquitto.host, mosquitto.port, "denloa/%s/#" % SITE)
    host = NodeHost(tmp_path, _spec(tmp_path, mosquitto.port), start=NOON).start()
    yield host, watcher, mosquitto
    host.stop()
    watcher.close()
    assert not host.errors(), "\n".join(host.lines[-30:])


def _topic(kind):
    return topics.node_topic(SITE, NODE, kind)


def _birth(w, timeout=15):
    _, payload, _ = w.wait_for(lambda t, p, r: t == _topic("state") and State.decode(p).online, timeout, "birth")
    return State.decode(payload)


def _ack(w, cmd_id, timeout=15):
    _, payload, _ = w.wait_for(lambda t, p, r: t == _topic("ack") and Ack.decode(p).cmd_id == cmd_id,
                               timeout, "ack of " + cmd_id)
    return Ack.decode(payload)


def _events(w, kind, timeout=15):
    _, payload, _ = w.wait_for(lambda t, p, r: t == _topic("evt") and Event.decode(p).kind == kind,
                               timeout, kind + " event")
    return Event.decode(payload)


def _cmd(counter, op, args=None, expires=None, cmd_id=None, node=NODE):
    # the node's clock started at NOON (see the host spec): expiry is judged on it
    return Command(SITE, node, cmd_id or "c-%d" % counter, counter, expires or NOON + 3600, op,
                   args or {}, issued=NOON)


def test_birth_then_will_when_the_node_dies(rig):
    host, w, broker = rig
    birth = _birth(w)
    assert birth.safe_mode is False and "lamp" in birth.caps and birth.firmware
    host.kill()  # power cut: no DISCONNECT
    _, payload, _ = w.wait_for(lambda t, p, r: t == _topic("state") and not State.decode(p).online, 30, "will")
    assert State.decode(payload).boot_id == birth.boot_id


def test_commands_applied_once_and_bad_ones_rejected_and_reported(rig):
    host, w, _ = rig
    _birth(w)
    topic, payload = _cmd(5, "set_volume", {"vol": 30}).sign(KEY)
    w.publish(topic, payload)
    assert _ack(w, "c-5").applied
    w.publish(topic, payload)  # the gateway retries
    again = _ack(w, "c-5")
    assert again.applied and again.detail == "duplicate"
    # forged: signed with another key
    t2, p2 = _cmd(6, "reboot").sign(b"attacker key....................")
    w.publish(t2, p2)
    assert _ack(w, "c-6").reason == commands.BAD_SIGNATURE
    assert _events(w, "cmd_rejected").data["reason"] == commands.BAD_SIGNATURE
    # replay of an older counter with a new id
    t3, p3 = _cmd(4, "reboot", cmd_id="c-old").sign(KEY)
    w.publish(t3, p3)
    assert _ack(w, "c-old").reason == commands.REPLAY
    # expired
    t4, p4 = _cmd(7, "reboot", expires=NOON - 5).sign(KEY)
    w.publish(t4, p4)
    assert _ack(w, "c-7").reason == commands.EXPIRED
    # addressed to another node but sent on this node's topic with this node's key
    body = _cmd(8, "reboot", node="den-khac").encode()
    forged = body + b"\n" + to_hex(commands.signature(KEY, _topic("cmd"), body)).encode()
    w.publish(_topic("cmd"), forged)
    assert _ack(w, "c-8").reason == commands.WRONG_TARGET
    # none of the rejected reboots happened: the node is still the same boot
    t9, p9 = _cmd(9, "rebirth").sign(KEY)
    w.publish(t9, p9)
    assert _ack(w, "c-9").applied


def _seqs(watcher, boot_id):
    out = []
    for t, p, _ in watcher.drain():
        if t == _topic("evt"):
            e = Event.decode(p)
            if e.boot_id == boot_id:
                out.append(e.seq)
    return out


def test_events_raised_while_the_broker_is_down_arrive_after_restart_without_gap(rig):
    host, w, broker = rig
    birth = _birth(w)
    _events(w, "boot")
    broker.stop()
    host.send(NODE + " stuck closed")  # welded relay by day: a day-burner, raised while offline
    time.sleep(4)  # fault_s is 2 s
    before = _seqs(w, birth.boot_id) + [0]
    w.close()
    broker.start()
    w2 = Watcher(broker.host, broker.port, "denloa/%s/#" % SITE)
    try:
        evt = _events(w2, "day_burner", 40)
        assert evt.boot_id == birth.boot_id and evt.data["relay"] is True
        seqs = sorted(set(before + _seqs(w2, birth.boot_id) + [evt.seq]))
        assert seqs == list(range(seqs[-1] + 1)), seqs  # in order, no gap
        _birth(w2, 30)  # and a birth again on reconnect
    finally:
        w2.close()


def test_power_cut_keeps_the_flash(rig):
    host, w, broker = rig
    _birth(w)
    topic, payload = _cmd(11, "set_volume", {"vol": 42}).sign(KEY)
    w.publish(topic, payload)
    assert _ack(w, "c-11").applied
    host.kill()
    host.start()
    second = _birth(w, 30)
    w.publish(topic, payload)  # the same command after the reboot: still no second effect
    assert _ack(w, "c-11").detail == "duplicate"
    assert second.boot_id


def test_a_reboot_command_really_reboots_the_node(rig):
    host, w, broker = rig
    first = _birth(w)
    topic, payload = _cmd(21, "reboot").sign(KEY)
    w.publish(topic, payload)
    assert _ack(w, "c-21").applied
    second = _birth(w, 30)  # RAM lost: a new boot id, and the reset cause says why
    assert second.boot_id != first.boot_id
    _, raw, _ = w.wait_for(lambda t, p, r: t == _topic("evt") and Event.decode(p).kind == "boot"
                           and Event.decode(p).boot_id == second.boot_id, 30, "boot event of the new boot")
    assert Event.decode(raw).data["cause"] == "soft"
    assert [c for _, c in host.reboots(NODE)] == ["soft"]
    w.publish(topic, payload)  # the gateway retries it: no second reboot
    assert _ack(w, "c-21").detail == "duplicate"
