"""`python -m hardware bench --port P`: the node's self-test, with what to check for each failure.

    python -m hardware bench --port /dev/ttyUSB0 [--board denloa-v1] [--pir-wait 10]

Runs hardware/bench.py on the node over the raw REPL (from the node's active
application slot, with the HAL of its board profile: the one in /config.json,
or --board), shows each check as it finishes, then a pass/fail table. Each
failure says what to check, with the pins of the board profile ("Rơ-le đèn
không đóng: kiểm tra dây chân 26"). During the test the lamp goes off, on,
dim and bright, the loudspeaker beeps, the zone relays click one by one: wave
a hand in front of the PIR. Exit status 0 when nothing failed, 1 otherwise.
"""
import json
import time

from hardware import boards
from hardware.tools.common import Node, ToolError, check_port, say

RESULT = {True: ("ĐẠT", "PASS"), False: ("HỎNG", "FAIL"), None: ("XEM", "CHECK")}
NAMES = {
    "lamp_relay": ("Rơ-le đèn", "lamp relay"), "lamp_feedback": ("Phản hồi rơ-le", "relay feedback"),
    "lamp_ct": ("Cảm biến dòng đèn", "lamp current sensor"), "dimmer": ("Điều chỉnh độ sáng", "dimmer"),
    "tone": ("Loa (âm thử)", "loudspeaker (test tone)"), "line_relay": ("Rơ-le đường line", "line input relay"),
    "rtc": ("Đồng hồ", "clock (RTC)"), "photocell": ("Quang trở", "photocell"), "pir": ("Cảm biến chuyển động", "PIR"),
    "ds3231": ("Đồng hồ DS3231", "DS3231 clock"), "i2s": ("Mạch âm thanh I2S", "I2S audio"),
}


def _pin(prof, key, field="pin"):
    spec = prof.get(key)
    return "?" if not spec else spec.get(field, "?")


def _current_wires(prof):
    """(vi, en): where the lamp current sensor is wired, by its kind (board profile `lamp_current`)."""
    spec = prof.get("lamp_current") or {}
    if spec.get("kind") == "ina219":
        i2c = prof.get("i2c") or {}
        return ("INA219 (I2C 0x%02x) chân SDA %s / SCL %s" % (spec.get("addr", 0x40), i2c.get("sda"), i2c.get("scl")),
                "the INA219 (I2C 0x%02x) on SDA pin %s / SCL pin %s" % (spec.get("addr", 0x40), i2c.get("sda"),
                                                                      i2c.get("scl")))
    sensor = {"acs712": "ACS712"}.get(spec.get("kind"), "CT")
    return ("%s chân %s" % (sensor, spec.get("pin", "?")), "the %s on pin %s" % (sensor, spec.get("pin", "?")))


def name(part):
    if part.startswith("zone") and part[4:].isdigit():
        return ("Rơ-le cụm loa %s" % part[4:], "speaker zone %s relay" % part[4:])
    return NAMES.get(part, (part, part))


def advice(part, code, data, prof):
    """(vi, en): what the technician checks for this result; pins from the board profile."""
    p = lambda key, field="pin": _pin(prof, key, field)  # noqa: E731
    i2s, i2c = prof.get("i2s") or {}, prof.get("i2c") or {}
    ct_vi, ct_en = _current_wires(prof)
    table = {
        ("lamp_relay", "not_closing"): (
            "Rơ-le đèn không đóng: kiểm tra dây chân %s (cuộn rơ-le), nguồn rơ-le và contactor" % p("lamp_relay"),
            "Lamp relay does not close: check the wire on pin %s (relay coil), the relay's supply and the contactor"
            % p("lamp_relay")),
        ("lamp_relay", "not_opening"): (
            "Rơ-le đèn không mở (tiếp điểm dính): thay rơ-le/contactor; kiểm tra chân %s" % p("lamp_relay"),
            "Lamp relay does not open (welded contact): replace the relay/contactor; check pin %s" % p("lamp_relay")),
        ("lamp_relay", "look"): ("Không có phản hồi hay cảm biến dòng: nhìn đèn tắt rồi sáng",
                                 "No feedback or current sensor: watch the lamp go off, then on"),
        ("lamp_feedback", "not_following"): (
            "Tiếp điểm phản hồi không theo rơ-le: kiểm tra dây chân %s và tiếp điểm phụ của contactor"
            % p("lamp_feedback"),
            "The relay feedback does not follow the relay: check the wire on pin %s and the contactor's auxiliary "
            "contact" % p("lamp_feedback")),
        ("lamp_feedback", "no_reading"): ("Không đọc được phản hồi rơ-le: kiểm tra dây chân %s" % p("lamp_feedback"),
                                          "No relay feedback reading: check the wire on pin %s" % p("lamp_feedback")),
        ("lamp_ct", "no_reading"): ("Cảm biến dòng không đọc được: kiểm tra dây %s" % ct_vi,
                                    "The current sensor gives no reading: check the wiring of %s" % ct_en),
        ("lamp_ct", "no_current"): (
            "Rơ-le đóng nhưng đèn không có dòng: kiểm tra bóng/driver đèn, cầu chì, dây pha qua cảm biến dòng "
            "và dây %s" % ct_vi,
            "The relay closes but the lamp draws no current: check the lamp/driver, the fuse, the live wire through "
            "the current sensor and the wiring of %s" % ct_en),
        ("dimmer", "no_effect"): (
            "Điều chỉnh độ sáng không có tác dụng: kiểm tra dây chân %s, mạch 0-10 V và dây DIM+/DIM- của driver"
            % p("dimmer"),
            "Dimming has no effect: check the wire on pin %s, the 0-10 V stage and the driver's DIM+/DIM- wires"
            % p("dimmer")),
        ("dimmer", "look"): ("Nhìn đèn: phải sáng dần từ mờ đến sáng hẳn", "Watch the lamp: it brightens from dim to full"),
        ("dimmer", "skipped"): ("Bỏ qua: đèn không sáng", "Skipped: the lamp did not light"),
        ("tone", "listen"): ("Nghe loa: tiếng bíp 1 kHz trong 1 giây", "Listen: a 1 kHz beep for 1 s"),
        ("tone", "i2s_failed"): (
            "Mạch âm thanh không chạy: kiểm tra MAX98357A, dây BCLK chân %s, WS chân %s, DIN chân %s, SD chân %s, "
            "nguồn 5 V" % (i2s.get("bclk"), i2s.get("ws"), i2s.get("din"), i2s.get("enable")),
            "The audio output does not run: check the MAX98357A, BCLK on pin %s, WS pin %s, DIN pin %s, SD pin %s, "
            "its 5 V supply" % (i2s.get("bclk"), i2s.get("ws"), i2s.get("din"), i2s.get("enable"))),
        ("tone", "stalled"): ("Âm thanh bị nghẽn: kiểm tra MAX98357A và dây BCLK chân %s" % i2s.get("bclk"),
                              "Audio stalls: check the MAX98357A and BCLK on pin %s" % i2s.get("bclk")),
        ("line_relay", "listen"): ("Nghe tiếng tách của rơ-le đường line (chân %s)" % p("line_relay"),
                                   "Listen for the line relay's click (pin %s)" % p("line_relay")),
        ("rtc", "ds3231_missing"): (
            "Đồng hồ DS3231 không trả lời: kiểm tra I2C chân SDA %s / SCL %s và nguồn 3,3 V"
            % (i2c.get("sda"), i2c.get("scl")),
            "The DS3231 clock does not answer: check I2C SDA pin %s / SCL pin %s and its 3.3 V supply"
            % (i2c.get("sda"), i2c.get("scl"))),
        ("rtc", "no_time"): ("Đồng hồ không giữ được giờ: thay pin CR2032 của DS3231",
                             "The clock does not keep the time: replace the DS3231's CR2032 cell"),
        ("photocell", "no_reading"): ("Quang trở không đọc được: kiểm tra dây chân %s" % p("photocell"),
                                      "The photocell gives no reading: check the wire on pin %s" % p("photocell")),
        ("pir", "no_motion"): (
            "Cảm biến chuyển động không báo: vẫy tay trước PIR rồi chạy lại; kiểm tra dây chân %s và nguồn 5 V"
            % p("pir"),
            "The PIR reported no motion: wave a hand in front of it and run again; check the wire on pin %s and its "
            "5 V supply" % p("pir")),
        ("pir", "no_reading"): ("Cảm biến chuyển động không khởi động: kiểm tra dây chân %s" % p("pir"),
                                "The PIR did not start: check the wire on pin %s" % p("pir")),
    }
    if (part, code) in table:
        return table[(part, code)]
    if part.startswith("zone") and code == "listen":
        i = int(part[4:]) - 1
        pin = prof["zone_relays"][i]["pin"] if i < len(prof.get("zone_relays") or ()) else "?"
        return ("Nghe tiếng tách của rơ-le cụm %s (chân %s)" % (part[4:], pin),
                "Listen for zone %s relay's click (pin %s)" % (part[4:], pin))
    if part == "rtc" and code == "ok":
        return (("Đã đặt giờ theo máy tính" if data.get("set") else "Giờ đúng") + " (%s)" % data.get("kind"),
                ("Set from the laptop's clock" if data.get("set") else "Time is right") + " (%s)" % data.get("kind"))
    if part == "photocell" and code == "ok":
        now = ("tối", "dark") if data.get("dark") else ("sáng", "light")
        return ("Đang báo %s; che cảm biến thì phải báo tối" % now[0],
                "Reads %s now; covered it must read dark" % now[1])
    if code == "start_failed":
        key = {"ds3231": "i2c", "i2s": "i2s", "lamp_ct": "lamp_current"}.get(part, part)
        spec = prof.get(key) if isinstance(prof.get(key), dict) else {}
        pins = ", ".join("%s %s" % (k, v) for k, v in sorted(spec.items()) if k in ("pin", "sda", "scl", "bclk", "ws", "din"))
        return ("%s không khởi động được: kiểm tra dây (%s) và nguồn" % (name(part)[0], pins or "?"),
                "%s failed to start: check its wiring (%s) and supply" % (name(part)[1], pins or "?"))
    if code == "ok":
        return ("", "")
    return ("%s: %s" % (name(part)[0], code), "%s: %s" % (name(part)[1], code))


SNIPPET = """
import sys, json
try:
    with open('/boot.json') as f:
        _slot = json.load(f).get('active', 'a')
except Exception:
    _slot = 'a'
if '/app/' + _slot not in sys.path:
    sys.path.insert(0, '/app/' + _slot)
try:
    hal
except NameError:
    from hardware.esp32 import Esp32Hal
    hal = Esp32Hal(%(board)r, {'storage_dir': '/data'})
from hardware.bench import run
run(hal, %(board)r, now=%(now)d, pir_wait_ms=%(pir)d)
"""

READ_BOARD = """
import json
try:
    with open('/config.json') as f:
        print(json.load(f).get('board', ''))
except Exception:
    print('')
"""


def run_bench(node, board, pir_wait_s, on_result=None):
    """The results (dicts) of the self-test on the node."""
    results = []
    buf = bytearray()

    def consume(b):
        buf.extend(b)
        while b"\n" in buf:
            i = buf.index(b"\n")
            line = bytes(buf[:i]).decode(errors="replace").strip()
            del buf[:i + 1]
            if line.startswith("BENCH {"):
                r = json.loads(line[6:])
                results.append(r)
                if on_result:
                    on_result(r)

    code = SNIPPET % {"board": board, "now": int(time.time()), "pir": int(pir_wait_s * 1000)}
    node.exec(code, timeout=60, on_output=consume)
    if not results:
        raise ToolError("Thiết bị không trả kết quả kiểm tra: đã nạp firmware chưa (lệnh flash)?",
                        "The node gave no self-test results: is the firmware uploaded (the flash command)?")
    return results


def table(results, prof):
    rows = []
    for r in results:
        vi, en = advice(r["part"], r["code"], r.get("data") or {}, prof)
        rows.append((name(r["part"]), RESULT[r["ok"]], vi, en))
    return rows


def print_table(rows):
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="Kết quả kiểm tra / bench results", show_lines=True)
        for col in ("Bộ phận / part", "Kết quả / result", "Kiểm tra / what to check"):
            t.add_column(col, overflow="fold")
        for (nvi, nen), (rvi, ren), avi, aen in rows:
            style = {"HỎNG": "bold red", "ĐẠT": "green"}.get(rvi, "yellow")
            t.add_row("%s\n%s" % (nvi, nen), "[%s]%s / %s[/]" % (style, rvi, ren),
                      "%s\n%s" % (avi, aen) if avi else "")
        Console(width=max(100, Console().width)).print(t)
    except ImportError:
        for (nvi, nen), (rvi, ren), avi, aen in rows:
            say("%-28s %-12s %s" % ("%s / %s" % (nvi, nen), "%s / %s" % (rvi, ren), avi))
            if aen:
                say("%-28s %-12s %s" % ("", "", aen))


def main(args):
    port = check_port(args.port)
    with Node(port) as node:
        board = args.board or node.exec(READ_BOARD).decode().strip() or "denloa-v1"
        try:
            prof = boards.profile(board)
        except boards.UnknownBoard as exc:
            raise ToolError("Không biết mạch %r (%s)" % (board, exc), "Unknown board %r (%s)" % (board, exc))
        say("Kiểm tra mạch / testing board %s on %s: đèn sẽ tắt, sáng, mờ, sáng; loa kêu bíp; vẫy tay trước PIR "
            "/ the lamp goes off, on, dim, bright; the speaker beeps; wave at the PIR" % (board, port))
        results = run_bench(node, board, args.pir_wait,
                            lambda r: say("  %-26s %s" % ("%s / %s" % name(r["part"]), "%s / %s" % RESULT[r["ok"]])))
        node.reboot()  # the firmware starts again
    rows = table(results, prof)
    say()
    print_table(rows)
    failed = [r for r in results if r["ok"] is False]
    if failed:
        say("\nHỎNG / FAILED: %s" % ", ".join("%s / %s" % name(r["part"]) for r in failed))
        return 1
    say("\nKhông có bộ phận hỏng / no part failed%s" % (
        "; xem/nghe các mục XEM / look and listen for the CHECK rows" if any(r["ok"] is None for r in results) else ""))
    return 0


def add_arguments(p):
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or COM3")
    p.add_argument("--board", help="board profile (default: the node's /config.json, else denloa-v1)")
    p.add_argument("--pir-wait", type=float, default=10.0, help="seconds to wait for the PIR to see motion (default 10)")
