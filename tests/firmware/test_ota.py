"""Over-the-air update on a real node (portable): download into the other slot, verify, switch in
trial, confirm or roll back; tampered and unsuitable bundles refused; resume after a break; a
power cut at every step and across the bytes of the whole update leaves a bootable node that
runs the old or the new version (docs/ota.md)."""
import asyncio
import gc
import sys

from firmware import boot
from firmware.ota import CONFIRM_MS
from tests.firmware.flaky_fs import PowerCut, PowerCutFS
from tests.firmware.http_fake import FakeServer
from tests.firmware.ota_kit import (FakeLink, SubFS, boot_state, bundle, node_root, ota_args, rmtree, serve,
                                    slot_version, app_files)
from tests.firmware.rig import MONDAY, Rig, at

OLD = bundle("1.0.0")
NEW = bundle("1.1.0")
T0 = at(MONDAY, 12)


class Kit:
    """A node whose filesystem has slots, a gateway serving bundles, and the device's boot loop."""

    def __init__(self, old=OLD, budget=None, server=None):
        self.root = node_root(old)
        self.server = server or FakeServer()
        self.rig = Rig(T0, path=self.root + "/data")
        self.budget = budget
        self.spent = 0  # flash work done before the current power-on
        self.ran = []  # the version of every slot the bootstrap booted (None: not a whole bundle)
        self.pfs = None
        self.slot = None

    def power_on(self, cause="power_on"):
        """What the device does at power-on: the bootstrap chooses a slot, the node boots from it."""
        if self.pfs is not None:
            self.spent += self.pfs.used
        # one budget across power-ons: the cut may land in any of them (None: never)
        self.pfs = PowerCutFS(boot.RootFS(self.root), None if self.budget is None else max(0, self.budget - self.spent))
        rig = self.rig
        rig.board.root_fs = self.pfs
        rig.board._fs = SubFS(self.pfs)
        rig.board.micropython_version = (1, 24, 0)
        self.slot, self.trial = boot.decide(self.pfs)
        self.ran.append(slot_version(self.root, self.slot, [OLD, NEW]))  # what the node boots from
        rig.boot(cause) if rig.node is None else rig.reboot(cause)
        client = rig.node.ota.client()
        client.open_connection = self.server.open
        client.user, client.password = "n1", "pw"


    def update(self, max_attempts=10):
        """Run the node's OTA attempts (as its task would) until it switched or gave up."""
        ota = self.rig.node.ota
        for _ in range(max_attempts):
            if ota.job is None or ota.switched:
                return
            asyncio.run(ota.attempt())

    def healthy_for(self, ms=CONFIRM_MS):
        self.rig.node.mqtt = FakeLink(True)
        self.rig.run(ms // 1000 + 1)

    def close(self):
        self.rig.node = None  # its RAM goes with the kit
        rmtree(self.root)


def test_an_update_switches_to_the_verified_slot_in_trial_and_confirms_when_healthy():
    k = Kit()
    try:
        serve(k.server, NEW)
        from tests.firmware.ota_kit import write_slot

        write_slot(k.root, "b", bundle("0.9.0", {"main.py": b"old", "firmware/stale.py": b"# an older bundle's"}))
        k.power_on()
        assert k.slot == "a" and not k.trial
        ack = k.rig.send("ota", ota_args(NEW))
        assert ack.applied, ack.reason
        k.update()
        assert k.rig.node.ota.switched and k.rig.node.reboot_pending is not None
        st = boot_state(k.root)
        assert st["active"] == "b" and st["previous"] == "a" and st["state"] == "trial"
        assert st["version"] == "1.1.0" and st["from"] == "0.1.0"
        assert slot_version(k.root, "b", [NEW]) == "1.1.0" and slot_version(k.root, "a", [OLD]) == "1.0.0"
        import os

        assert "stale.py" not in os.listdir(k.root + "/app/b/firmware")  # the older bundle's extra file went
        kinds = k.rig.event_kinds()
        assert "ota_progress" in kinds and "ota_switched" in kinds and "ota_failed" not in kinds
        # every file fetched once, by its hash
        paths = [p for p, _h in k.server.requests]
        assert len(paths) == 1 + len(NEW[2]) and paths[0].endswith(NEW[1])
        k.power_on("soft")  # the reboot: the bootstrap boots b once, as a trial
        assert (k.slot, k.trial) == ("b", True) and boot_state(k.root)["state"] == "booting"
        assert k.rig.node.ota.trial
        k.rig.run(CONFIRM_MS // 1000 + 5)  # not connected yet: not confirmed
        assert boot_state(k.root)["state"] == "booting"
        k.healthy_for(1000)
        st = boot_state(k.root)
        assert st["state"] == "ok" and st["active"] == "b"
        assert [e.data["version"] for e in k.rig.events("ota_confirmed")] == ["0.1.0"]  # what this build runs
        k.power_on()  # it stays
        assert (k.slot, k.trial) == ("b", False) and not k.rig.node.ota.trial
    finally:
        k.close()


def _switched(k):
    serve(k.server, NEW)
    k.power_on()
    assert k.rig.send("ota", ota_args(NEW)).applied
    k.update()
    assert boot_state(k.root)["state"] == "trial"


def test_a_trial_that_resets_before_confirming_is_rolled_back_and_reported():
    k = Kit()
    try:
        _switched(k)
        k.power_on("soft")
        assert (k.slot, k.trial) == ("b", True)
        k.rig.run(20)
        k.power_on("watchdog")  # it crashed (or hung, or the power went) before confirming
        assert (k.slot, k.trial) == ("a", False)
        st = boot_state(k.root)
        assert st["state"] == "rolled_back" and st["active"] == "a" and st["failed"] == "1.1.0"
        (e,) = k.rig.events("ota_rolled_back")
        assert e.data["version"] == "1.1.0" and "before it confirmed" in e.data["why"]
        assert k.rig.node.ota.job is None  # the failed version is not fetched again
        k.power_on()  # reported again after a reboot until the old version is healthy
        assert len(k.rig.events("ota_rolled_back")) == 1
        k.healthy_for()
        assert boot_state(k.root)["state"] == "ok" and boot_state(k.root)["active"] == "a"
        assert not k.rig.events("ota_confirmed")
        k.power_on()
        assert k.slot == "a" and not k.rig.events("ota_rolled_back")
    finally:
        k.close()


def test_a_trial_not_confirmed_in_time_fails_itself_and_the_bootstrap_rolls_back():
    k = Kit()
    try:
        _switched(k)
        k.power_on("soft")
        k.rig.node.mqtt = FakeLink(False)  # never reaches the broker
        k.rig.run(boot.TRIAL_MS // 1000 + 2, step=5)
        assert k.rig.node.reboot_pending is not None
        st = boot_state(k.root)
        assert st["state"] == "failed" and "not confirmed within 10 min" in st["why"]
        k.power_on("soft")
        assert k.slot == "a"
        (e,) = k.rig.events("ota_rolled_back")
        assert "not confirmed within" in e.data["why"]
    finally:
        k.close()


def test_a_trial_whose_code_crashes_at_import_is_marked_failed_by_the_bootstrap():
    k = Kit()
    try:
        _switched(k)
        fs = boot.RootFS(k.root)
        assert boot.decide(fs) == ("b", True)
        assert boot.fail_trial(fs, "crashed at boot: ImportError('x')")  # what run() does on an exception
        assert boot.decide(fs) == ("a", False)
        st = boot_state(k.root)
        assert st["state"] == "rolled_back" and st["why"].startswith("crashed at boot")
        assert not boot.fail_trial(fs, "again")  # only a trial can fail
    finally:
        k.close()


def test_a_tampered_file_is_refused_and_reported_and_nothing_switches():
    k = Kit()
    try:
        serve(k.server, NEW)
        bad = NEW[2]["firmware/node.py"]
        from tests.firmware.ota_kit import sha_hex

        k.server.files["/node/v1/firmware/" + sha_hex(bad)] = bad[:100] + b"X" + bad[101:]
        k.power_on()
        assert k.rig.send("ota", ota_args(NEW)).applied
        k.update()
        (e,) = k.rig.events("ota_failed")
        assert e.data["version"] == "1.1.0" and "firmware/node.py hash mismatch" in e.data["reason"]
        assert k.rig.node.ota.job is None and not k.rig.node.ota.switched and k.rig.node.reboot_pending is None
        assert boot_state(k.root) == {"active": "a", "previous": None, "state": "ok"} or \
            boot_state(k.root)["active"] == "a" and boot_state(k.root)["state"] == "ok"
        assert not boot.bootable(boot.RootFS(k.root), "b")  # the half-filled slot cannot boot
        k.power_on()
        assert k.slot == "a" and k.rig.node.ota.job is None
    finally:
        k.close()


def test_a_manifest_that_is_not_the_signed_one_is_refused():
    k = Kit()
    try:
        serve(k.server, NEW)
        k.server.files["/node/v1/firmware/" + NEW[1]] = NEW[0].replace(b'"1.1.0"', b'"1.1.1"')
        k.power_on()
        assert k.rig.send("ota", ota_args(NEW)).applied
        k.update()
        (e,) = k.rig.events("ota_failed")
        assert "manifest hash mismatch" in e.data["reason"]
        # only the manifest was fetched: no file of an unverified manifest is downloaded
        assert set(p for p, _h in k.server.requests) == {"/node/v1/firmware/" + NEW[1]}
        assert boot_state(k.root)["active"] == "a"
    finally:
        k.close()


def test_a_bundle_for_a_newer_micropython_or_a_bad_manifest_is_refused_at_once():
    k = Kit()
    try:
        newer = bundle("1.2.0", min_mpy="1.30.0")
        serve(k.server, newer)
        k.power_on()
        assert k.rig.send("ota", ota_args(newer)).applied
        k.update()
        (e,) = k.rig.events("ota_failed")
        assert "needs MicroPython 1.30.0, this node has 1.24.0" in e.data["reason"]
        assert len(k.server.requests) == 1
        evil = bundle("1.3.0", files={"main.py": b"x", "../config.json": b"{}"})
        serve(k.server, evil)
        assert k.rig.send("ota", ota_args(evil)).applied
        k.update()
        assert "bad path" in k.rig.events("ota_failed")[-1].data["reason"]
        assert boot_state(k.root)["active"] == "a"
    finally:
        k.close()


def test_a_broken_download_resumes_where_it_stopped_even_after_a_reboot():
    k = Kit()
    try:
        big = bundle("1.4.0", app_files("1.4.0", size=3000))
        serve(k.server, big)
        k.power_on()
        assert k.rig.send("ota", ota_args(big)).applied
        k.server.faults = [{}, {"cut": 1000}]  # the manifest, then firmware/node.py (sorted; the entry last)
        asyncio.run(k.rig.node.ota.attempt())
        assert not k.rig.node.ota.switched and k.rig.node.ota.job is not None
        k.power_on()  # a reboot in the middle: the job and the part are on flash
        assert k.rig.node.ota.job is not None and k.rig.node.ota.job["v"] == "1.4.0"
        k.update()
        assert k.rig.node.ota.switched
        ranges = [h.get("range") for _p, h in k.server.requests if h.get("range")]
        assert ranges == ["bytes=1000-"], ranges
        assert slot_version(k.root, "b", [big]) == "1.4.0"
    finally:
        k.close()


def test_the_same_version_is_acknowledged_without_a_download_and_a_retry_is_a_duplicate():
    k = Kit()
    try:
        serve(k.server, NEW)
        k.power_on()
        same = bundle("0.1.0")
        assert k.rig.send("ota", ota_args(same)).applied
        assert k.rig.events("ota_confirmed")[0].data["already"] is True and k.rig.node.ota.job is None
        assert k.rig.send("ota", ota_args(NEW), cmd_id="ota-7").applied
        ack = k.rig.send("ota", ota_args(NEW), cmd_id="ota-7")
        assert ack.applied and ack.detail == "duplicate"
    finally:
        k.close()


def test_a_newer_command_during_a_download_wins():
    k = Kit()
    try:
        other = bundle("1.2.0")
        serve(k.server, NEW)
        serve(k.server, other)
        k.power_on()
        assert k.rig.send("ota", ota_args(NEW)).applied
        k.server.delay = 2

        async def both():
            task = asyncio.create_task(k.rig.node.ota.attempt())
            for _ in range(2000):  # until its second file is on the way
                if len(k.server.requests) >= 3:
                    break
                await asyncio.sleep(0)
            assert not task.done()
            assert k.rig.send("ota", ota_args(other)).applied  # while 1.1.0 downloads
            await task
        asyncio.run(both())
        assert boot_state(k.root)["state"] == "ok" and not k.rig.node.ota.switched  # 1.1.0 did not switch
        k.update()
        st = boot_state(k.root)
        assert st["state"] == "trial" and st["version"] == "1.2.0"
        assert slot_version(k.root, "b", [other]) == "1.2.0"
    finally:
        k.close()


def _whole_update(k, cmd_id="ota-1"):
    """Power on, (re)send the command until it is acked, update, reboot into the trial, be healthy;
    power cycles as the device would. Returns after the node runs with /boot.json "ok"."""
    for _ in range(8):
        try:
            k.power_on("soft")
            if k.rig.node.ota.rolled_back is None and k.rig.node.ota.job is None and boot_state(k.root)["state"] == "ok" \
                    and not k.trial and k.slot == "a" and not k.acked:
                ack = k.rig.send("ota", ota_args(NEW), cmd_id=cmd_id)
                k.acked = ack.applied
            k.update()
            if k.rig.node.reboot_pending is not None:
                continue
            k.healthy_for()
            if boot_state(k.root)["state"] == "ok":
                return
        except PowerCut:
            k.rig.node = None
            k.rig.board.power_cut()
    raise AssertionError("the update never settled: %r" % boot_state(k.root))


def test_a_power_cut_at_any_point_of_the_update_leaves_a_bootable_node_with_the_old_or_new_version():
    # the uncut run's cost, then cuts across it: every step of the first operations, then spread
    shared = FakeServer(history=False)  # one gateway, made once, keeping no history: the heap is the node's
    serve(shared, NEW)
    k = Kit(server=shared)
    k.acked = False
    try:
        _whole_update(k)
        total = k.spent + k.pfs.used
        assert slot_version(k.root, "b", [NEW]) == "1.1.0"
    finally:
        k.close()
    k.pfs = None
    budgets = list(range(0, 30)) + list(range(30, total + 20, max(1, total // 70)))
    if sys.implementation.name != "micropython":  # the same code runs under MicroPython in make test-mpy
        budgets = budgets[::3]
    outcomes = {}
    for budget in budgets:
        shared.connections = []
        k = Kit(budget=budget, server=shared)
        k.acked = False
        try:
            try:
                k.power_on()
                k.acked = k.rig.send("ota", ota_args(NEW), cmd_id="ota-1").applied
                k.update()
                if k.rig.node.reboot_pending is not None:
                    k.power_on("soft")
                    k.healthy_for()
            except PowerCut:
                k.rig.node = None
                k.rig.board.power_cut()
            k.budget = None  # power comes back for good
            # after the cut: what the bootstrap boots is a whole, verified version
            fs = boot.RootFS(k.root)
            st = boot.load(fs)
            slot = st["active"] if st["state"] not in ("booting", "failed") else st.get("previous") or st["active"]
            got = slot_version(k.root, slot, [OLD, NEW])
            assert got in ("1.0.0", "1.1.0"), (budget, st, got)
            # and the update then completes (or was rolled back, if the cut hit the trial boot)
            _whole_update(k)
            st = boot_state(k.root)
            final = slot_version(k.root, st["active"], [OLD, NEW])
            assert final in ("1.0.0", "1.1.0") and st["state"] == "ok", (budget, st)
            outcomes[final] = outcomes.get(final, 0) + 1
            assert None not in k.ran, (budget, k.ran)
        finally:
            k.close()
            k = None
            gc.collect()
    print("OTA power cuts: %d budgets over %d units of flash work; ended on %r" % (len(budgets), total, outcomes))
    assert outcomes.get("1.1.0", 0) > len(budgets) // 2
