"""The report of one simulated run: summary.json, junit.xml and a self-contained index.html.

Everything drawn comes from the run record's ground truth (what each board
physically did), never from what the nodes reported. index.html has no
external assets: a header with the verdict, the assertions (failures first),
metrics, alerts, the faults and staff actions, one timeline per node (lamp
level, amplifier, audio source, power off, markers) grouped by zone, and a
map of the commune at each snapshot. All of it is inline SVG drawn here.

    paths = write_report(record, "out/outage")   # {"summary": ..., "junit": ..., "html": ...}
"""
import datetime
import json
import math
import os
import re
import xml.etree.ElementTree as ET

import jinja2
from markupsafe import Markup, escape

OFF = {"light": 0, "relay": False, "amp": False, "zones": 0, "source": None, "volume": 0}
SOURCE_NAMES = {"line": "đường dây (line)", "clip": "bản tin (clip)", "stream": "trực tiếp (stream)"}
LABEL, PLOT, ROW, AXIS = 250, 1000, 18, 30  # timeline geometry, px
MAP_W, MAP_H, MAP_MARGIN, LEGEND_W = 560, 420, 28, 190
VERDICTS = {"PASS": "ĐẠT · PASS", "FAIL": "KHÔNG ĐẠT · FAIL", "NONE": "KHÔNG CÓ KIỂM TRA"}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value):
    return _NOT_XML.sub("\ufffd", str(value))  # XML 1.0 forbids control characters, even escaped


def _e(value):
    return escape(_text(value))


# ---- ground truth -------------------------------------------------------------
def _walk(rows):
    """(t, state, ramp_s) after each truth row. ramp_s is None for rows that do not move the light.

    A power cut turns every output off at once, and a board that gets power back boots with every
    output off until its truth says otherwise (the soft board records only changes)."""
    out, power = dict(OFF), True
    for t, what, value in rows:
        ramp = None
        if what == "power":
            power, out, ramp = bool(value), dict(OFF), 0.0
        elif what == "light":
            level, ramp_ms = value if isinstance(value, (list, tuple)) else (value, 0)
            out["light"], ramp = level, max(0.0, ramp_ms / 1000.0)
        elif what in OFF:
            out[what] = value
        else:
            continue  # "audio" (bytes played) changes no output
        yield t, (dict(out, power=True) if power else dict(OFF, power=False)), (ramp if power else 0.0)


def state_at(truth_rows, t):
    """The physical state of one node at time t (a change at exactly t counts).

    light is the ramp target as soon as the ramp has begun; outputs are off while power is off."""
    state = dict(OFF, power=True)
    for rt, s, _ in _walk(truth_rows):
        if rt > t:
            break
        state = s
    return state


def light_series(truth_rows, t0, t1):
    """[(t, level)]: the lamp level (ramp targets) as steps over [t0, t1): the level at t0, then each change."""
    return [(a, level) for a, _, level in _spans(_walk(truth_rows), "light", t0, t1)]


def _spans(walked, key, t0, t1):
    """[[from, to, value]] where state[key] holds one value within [t0, t1); equal neighbours merged."""
    spans = [[t0, t1, dict(OFF, power=True)[key]]]
    for t, s, _ in walked:
        if t >= t1:
            break
        if s[key] == spans[-1][2]:
            continue
        if t <= t0:
            spans[-1][2] = s[key]
        else:
            spans[-1][1] = t
            spans.append([t, t1, s[key]])
    return spans


def _light_points(walked, t0, t1):
    """[(t, level)] polyline of the light; a ramp is a straight slope over its duration."""
    ramp = [t0, 0.0, 0.0, 0.0]  # start, from, to, seconds

    def at(t):
        start, frm, to, secs = ramp
        return to if secs <= 0 or t >= start + secs else frm + (to - frm) * (t - start) / secs

    points = [(t0, 0.0)]
    for t, s, secs in walked:
        if t > t1:
            break
        if secs is None:
            continue
        if t > t0:
            if t0 < ramp[0] + ramp[3] < t:
                points.append((ramp[0] + ramp[3], ramp[2]))
            points.append((t, at(t)))
        ramp[:] = [t, at(t), float(s["light"]), secs]
        if t <= t0:
            points[0] = (t0, at(t0))
        elif secs <= 0:
            points.append((t, ramp[2]))  # a step: straight up or down
    if points[-1][0] < ramp[0] + ramp[3] < t1:
        points.append((ramp[0] + ramp[3], ramp[2]))
    points.append((t1, at(t1)))
    return points


def _simplify(points):
    """Drop repeated points, middles of flat runs and all but the ends of a vertical run (same pixel)."""
    out = []
    for p in points:
        if out and p == out[-1]:
            continue
        if len(out) >= 2 and (out[-2][0] == out[-1][0] == p[0] or out[-2][1] == out[-1][1] == p[1]):
            out[-1] = p
        else:
            out.append(p)
    return out


# ---- time ----------------------------------------------------------------------
def _local(t, offset, fmt="%d/%m %H:%M:%S"):
    zone = datetime.timezone(datetime.timedelta(hours=offset))
    return "" if t is None else datetime.datetime.fromtimestamp(t, zone).strftime(fmt)


def _utc_label(offset):
    sign, minutes = ("+" if offset >= 0 else "-"), int(round(abs(offset) * 60))
    return "UTC%s%d" % (sign, minutes // 60) + (":%02d" % (minutes % 60) if minutes % 60 else "")


def _ticks(t0, t1, offset):
    """Tick times on whole local minutes/hours, at most ~16 across the run."""
    steps = [60 * m for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)]
    step = next((s for s in steps if (t1 - t0) / s <= 16), steps[-1])
    first = math.ceil((t0 + offset * 3600) / step) * step - offset * 3600
    return [first + i * step for i in range(int((t1 - first) // step) + 1)]


# ---- timeline ------------------------------------------------------------------
def _node_row(node, walked, y, x, t0, t1, zebra, pcm=(), offset=0):
    """One node's row: label, power-off shading, light area, amplifier band, source segments, and the
    sound the I2S really gave (one dark tick per session, with its samples and hash as a tooltip)."""
    nid, name = node["id"], node.get("name") or ""
    label = nid + ("  " + name if name else "")
    label = label if len(label) <= 34 else label[:33] + "…"
    tip = "%s — %s (%s; vùng %s)" % (nid, name, node.get("kind", "?"), ", ".join(node.get("zones") or []))
    parts = ['<g transform="translate(0,%d)"><title>%s</title>' % (y, _e(tip))]
    if zebra:
        parts.append('<rect class="zebra" x="0" y="0" width="%d" height="%d"/>' % (LABEL + PLOT, ROW))
    parts.append('<text x="4" y="13">%s</text>' % _e(label))

    def bands(spans, mid, pick):
        """Segments as one stroked path per class: "M x,y h w" each, touching ones merged."""
        paths = {}
        for a, b, v in spans:
            c = pick(v)
            if c:
                segs, xa, xb = paths.setdefault(c, []), x(a), max(x(b), x(a) + 2)  # a short clip stays visible
                if segs and xa <= segs[-1][1]:
                    segs[-1][1] = max(segs[-1][1], xb)
                else:
                    segs.append([xa, xb])
        for c, segs in paths.items():
            d = "".join("M%d,%gh%d" % (xa, mid, xb - xa) for xa, xb in segs)
            parts.append('<path class="%s" d="%s"/>' % (c, d))

    bands(_spans(walked, "power", t0, t1), ROW / 2, lambda v: None if v else "off")
    pts = [(x(t), round(12 - 11 * min(100, max(0, lv)) / 100.0, 1)) for t, lv in _light_points(walked, t0, t1)]
    if any(py < 12 for _, py in pts):
        poly = _simplify([(pts[0][0], 12)] + pts + [(pts[-1][0], 12)])
        parts.append('<polygon class="lt" points="%s"/>' % " ".join("%d,%g" % p for p in poly))
    bands(_spans(walked, "amp", t0, t1), 15.5, lambda v: "amp" if v else None)
    bands(_spans(walked, "source", t0, t1), 15.5,
          lambda v: None if v is None else "s-" + (v if v in ("line", "clip", "stream") else "other"))
    for p in pcm:
        if p.get("start") is None or p.get("end") is None or p["end"] < t0 or p["start"] > t1:
            continue
        xa = x(p["start"])
        tip = "I2S %s–%s: %d mẫu / samples, sha256 %s%s" % (
            _local(p["start"], offset, "%H:%M:%S"), _local(p["end"], offset, "%H:%M:%S"), p.get("samples", 0),
            str(p.get("sha256", ""))[:12], ", %d underruns" % p["underruns"] if p.get("underruns") else "")
        parts.append('<path class="pcm" d="M%d,19.5h%d"><title>%s</title></path>'
                     % (xa, max(2, x(p["end"]) - xa), _e(tip)))
    parts.append("</g>")
    return "".join(parts)


def _markers(events, rows_y, x, height, offset):
    """Faults (red) and staff actions (dashed): a triangle on the axis and a line over the rows concerned."""
    parts = []
    for ev, cls in events:
        targets = ev.get("targets") or []
        ys = [rows_y[n] for n in targets if n in rows_y]
        if targets and not ys:
            continue  # a fault on nodes of another zone
        what = ev.get("kind") or ev.get("action") or "?"
        tip = "%s %s: %s" % (_local(ev.get("t"), offset, "%H:%M:%S"), what, ev.get("detail", ""))
        if ev.get("result"):
            tip += " → %s" % ev["result"]
        if targets:
            tip += " [%d nút: %s%s]" % (len(targets), ", ".join(targets[:6]), "…" if len(targets) > 6 else "")
        px = x(ev["t"])
        lines = ["M%d,%dV%d" % (px, y, y + ROW) for y in ys] if targets else ["M%d,%dV%d" % (px, AXIS, height)]
        parts.append('<g class="%s"><title>%s</title><path class="tri" d="M%d,%dl-5,-8h10z"/>'
                     '<path d="%s"/></g>' % (cls, _e(tip), px, AXIS, "".join(lines)))
    return "".join(parts)


def _timeline_svg(nodes, walks, t0, t1, offset, events, truth=None):
    x = lambda t: LABEL + round((min(max(t, t0), t1) - t0) / (t1 - t0) * PLOT)
    height = AXIS + ROW * len(nodes) + 2
    rows_y = {n["id"]: AXIS + i * ROW for i, n in enumerate(nodes)}
    ticks = _ticks(t0, t1, offset)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="%d" height="%d">'
             % (LABEL + PLOT + 24, height)]
    for t in ticks:
        stamp = _local(t, offset, "%H:%M")
        parts.append('<text class="tick" x="%d" y="12">%s</text>'
                     % (x(t), _local(t, offset, "%d/%m") if stamp == "00:00" else stamp))
    for i, node in enumerate(nodes):
        pcm = [v for _t, what, v in (truth or {}).get(node["id"], []) if what == "pcm" and isinstance(v, dict)]
        parts.append(_node_row(node, walks[node["id"]], rows_y[node["id"]], x, t0, t1, i % 2, pcm, offset))
    parts.append('<path class="grid" d="%s"/>' % "".join("M%d,%dV%d" % (x(t), AXIS - 6, height) for t in ticks))
    parts.append(_markers(events, rows_y, x, height, offset))
    return Markup("".join(parts) + "</svg>")


# ---- map -------------------------------------------------------------------------
def _map_svg(nodes, truth, t):
    placed = [n for n in nodes if all(isinstance(n.get(k), (int, float)) for k in ("lat", "lon"))]
    if not placed:
        return Markup("<p>Không có toạ độ nút để vẽ bản đồ.</p>")
    k = math.cos(math.radians(sum(n["lat"] for n in placed) / len(placed)))  # equirectangular
    xs, ys = [n["lon"] * k for n in placed], [-n["lat"] for n in placed]
    dx, dy = max(xs) - min(xs), max(ys) - min(ys)
    scale = min((MAP_W - 2 * MAP_MARGIN) / (dx or 1e-9), (MAP_H - 2 * MAP_MARGIN) / (dy or 1e-9)) if dx or dy else 0
    ox, oy = (MAP_W - dx * scale) / 2 - min(xs) * scale, (MAP_H - dy * scale) / 2 - min(ys) * scale
    counts = {"lit": 0, "dark": 0, "dead": 0, "air": 0}
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" class="map" width="%d" height="%d">'
             % (MAP_W + LEGEND_W, MAP_H),
             '<rect class="land" width="%d" height="%d"/>' % (MAP_W, MAP_H)]
    for n, px, py in zip(placed, xs, ys):
        s = state_at(truth.get(n["id"], []), t)
        cx, cy = px * scale + ox, py * scale + oy
        if not s["power"]:
            cls, counts["dead"] = "dead", counts["dead"] + 1
        elif n.get("kind") == "speaker":
            cls = "spk"
        else:
            cls = "full" if s["light"] >= 70 else "dim" if s["light"] > 0 else "dark"
            counts["lit" if s["light"] > 0 else "dark"] += 1
        airing = s["power"] and s["amp"] and s["source"] is not None
        counts["air"] += airing
        tip = "%s — %s: %s, đèn %s %%, loa %s" % (
            n["id"], n.get("name", ""), "có điện" if s["power"] else "MẤT ĐIỆN", s["light"],
            SOURCE_NAMES.get(s["source"], s["source"]) if airing else "không phát")
        shape = ('<rect class="%s" x="%.1f" y="%.1f" width="11" height="11"/>' % (cls, cx - 5.5, cy - 5.5)
                 if n.get("kind") == "speaker" else '<circle class="%s" cx="%.1f" cy="%.1f" r="6"/>' % (cls, cx, cy))
        ring = '<circle class="air" cx="%.1f" cy="%.1f" r="10"/>' % (cx, cy) if airing else ""
        few = len(placed) <= 60  # ids on the map only while they stay legible
        label = '<text class="id" x="%.1f" y="%.1f">%s</text>' % (cx + 13, cy + 4, _e(n["id"])) if few else ""
        parts.append("<g><title>%s</title>%s%s%s</g>" % (_e(tip), shape, ring, label))
    if scale:  # a scale bar of a round length, about a fifth of the map
        metres = 111320.0 / scale
        bar = next((m for m in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if m / metres >= MAP_W / 6), 10000)
        parts.append('<path class="bar" d="M12,%dh%d"/><text x="12" y="%d">%d m</text>'
                     % (MAP_H - 12, bar / metres, MAP_H - 18, bar))
    legend = [("full", "đèn sáng ≥ 70 %"), ("dim", "đèn mờ (dưới 70 %)"), ("dark", "đèn tắt"),
              ("spk", "loa (không có đèn)"), ("dead", "mất điện"), ("air", "loa đang phát")]
    for i, (cls, text) in enumerate(legend):
        ly = 24 + i * 24
        mark = ('<rect class="spk" x="%d" y="%d" width="11" height="11"/>' % (MAP_W + 14, ly - 5) if cls == "spk" else
                '<circle class="%s" cx="%d" cy="%d" r="%d"/>' % (cls, MAP_W + 20, ly, 9 if cls == "air" else 6))
        parts.append('%s<text x="%d" y="%d">%s</text>' % (mark, MAP_W + 36, ly + 4, text))
    totals = ("%(lit)d đèn sáng, %(dark)d tắt" % counts, "%(dead)d mất điện, %(air)d loa phát" % counts)
    parts += ['<text x="%d" y="%d">%s</text>' % (MAP_W + 12, 24 * (8 + i), line) for i, line in enumerate(totals)]
    return Markup("".join(parts) + "</svg>")


# ---- the files -------------------------------------------------------------------
def _by_zone(record):
    """[(zone label, [node])] in the order zones first appear; a node is shown under its first zone."""
    nodes = list(record.get("nodes") or [])
    known = {n["id"] for n in nodes}
    nodes += [{"id": nid} for nid in record.get("truth", {}) if nid not in known]  # truth of an unlisted node
    names = {z.get("id"): z.get("name") for z in record.get("zones") or [] if isinstance(z, dict)}
    groups = {}
    for n in nodes:
        groups.setdefault((n.get("zones") or [None])[0], []).append(n)
    return [("%s (%s)" % (names[z], z) if names.get(z) else z or "không thuộc vùng nào", ns)
            for z, ns in groups.items()]


def _listed(ids):
    return ", ".join(ids[:8]) + (" … (+%d)" % (len(ids) - 8) if len(ids) > 8 else "") if ids else "—"


def _counts(record):
    oks = [bool(a.get("ok")) for a in record.get("assertions", [])]
    return {"assertions": len(oks), "passed": sum(oks), "failed": len(oks) - sum(oks),
            "alerts": len(record.get("alerts", [])), "faults": len(record.get("faults", [])),
            "actions": len(record.get("actions", [])),
            "truth_changes": {nid: sum(1 for r in rows if r[1] != "audio")  # audio rows are bytes played
                              for nid, rows in record.get("truth", {}).items()}}


def _junit(record, counts, offset):
    name = _text("scenario.%s" % record.get("scenario", "?"))
    common = {"name": name, "tests": str(counts["assertions"]), "failures": str(counts["failed"]),
              "errors": "0", "time": "%.3f" % float(record.get("wall_seconds") or 0)}
    root = ET.Element("testsuites", common)
    suite = ET.SubElement(root, "testsuite", dict(common, skipped="0"))
    props = ET.SubElement(suite, "properties")
    for key in ("title", "seed", "speed", "start", "end"):
        ET.SubElement(props, "property", name=key, value=_text(record.get(key, "")))
    for a in record.get("assertions", []):
        title, detail = _text(a.get("name", "?")), _text(a.get("detail", ""))
        seconds = "%.3f" % float(a.get("seconds") or 0)  # the record gives no duration per assertion
        case = ET.SubElement(suite, "testcase", classname=name, name=title, time=seconds)
        when = " (lúc %s %s)" % (_local(a["t"], offset), _utc_label(offset)) if a.get("t") is not None else ""
        if not a.get("ok"):
            failure = ET.SubElement(case, "failure", message=detail or title, type="AssertionError")
            failure.text = title + ": " + detail + when
        ET.SubElement(case, "system-out").text = detail + when
    ET.indent(root)
    return ET.ElementTree(root)


PAGE = jinja2.Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8"><title>{{ r.title or r.scenario }} — báo cáo mô phỏng</title>
<style>
body{font:14px/1.4 system-ui,"DejaVu Sans",sans-serif;margin:16px 24px;color:#222}h1{margin:0 0 6px}
h2{margin:26px 0 8px;border-bottom:1px solid #ccc}h3{margin:14px 0 4px;font-size:15px}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
.badge{display:inline-block;padding:4px 14px;border-radius:4px;color:#fff}.PASS{background:#1e8e3e}
.FAIL{background:#c5221f}.NONE{background:#888}tr.bad td{background:#fde8e7}
tr.bad td:nth-child(2){color:#c5221f;font-weight:bold}tr.good td:nth-child(2){color:#1e8e3e}
.meta td:first-child{color:#666}.wide{overflow-x:auto}
.key span{display:inline-block;width:22px;height:10px;margin:0 4px 0 14px;vertical-align:middle}
svg text{font:11px system-ui,"DejaVu Sans",sans-serif;fill:#222}svg .tick{text-anchor:middle;fill:#555}
.zebra{fill:#f4f4f4}.off{stroke:#000;stroke-opacity:.28;stroke-width:18px}.amp{stroke:#bcd3f7;stroke-width:5px}
.lt{fill:#f6c700;fill-opacity:.75;stroke:#b88600;stroke-width:.8}.s-line{stroke:#2e9e5b}.s-clip{stroke:#1a5fd0}
.s-stream{stroke:#9b3fc7}.pcm{stroke:#111;stroke-width:2px}.s-other{stroke:#666}.s-line,.s-clip,.s-stream,.s-other{stroke-width:3px}
.grid{stroke:#000;stroke-opacity:.12;fill:none}.fault path{stroke:#d93025;stroke-width:1.5;fill:none}
.action path{stroke:#333;stroke-width:1.2;stroke-dasharray:3 2;fill:none}.fault .tri{fill:#d93025;stroke:none}
.action .tri{fill:#333;stroke:none}.land{fill:#eef3e8;stroke:#bbb}.full{fill:#ffe14d;stroke:#8a7400}
.dim{fill:#f0a030;stroke:#7a4c00}.dark{fill:#555;stroke:#222}.spk{fill:#ccc;stroke:#555}
.dead{fill:#000;stroke:#e00;stroke-width:2.5}.air{fill:none;stroke:#1a5fd0;stroke-width:2.5}
svg .id{font-size:9px;fill:#555}.bar{stroke:#333;stroke-width:3}.key b{margin-left:18px}
</style></head><body>
<h1>{{ r.title or r.scenario }} <span class="badge {{ verdict }}">{{ verdicts[verdict] }}</span></h1>
<p>{{ c.passed }}/{{ c.assertions }} kiểm tra đạt{% if c.failed %}, <b>{{ c.failed }} không đạt</b>{% endif %};
{{ c.alerts }} cảnh báo, {{ c.faults }} sự cố giả lập, {{ c.actions }} thao tác của cán bộ.</p>
<table class="meta"><tr><td>Kịch bản</td><td><code>{{ r.scenario }}</code></td></tr>
<tr><td>Xã</td><td>{{ r.site.name }} ({{ r.site.id }}), {{ c.nodes }} nút</td></tr>
<tr><td>Thời gian mô phỏng</td><td>{{ period }} ({{ tz }}), {{ hours }} giờ</td></tr>
<tr><td>Tốc độ · seed · thời gian chạy thực</td>
<td>×{{ r.speed }} · {{ r.seed }} · {{ "%.1f"|format(r.wall_seconds or 0) }} s</td></tr></table>
<h2>Kiểm tra (assertions)</h2>
<table><tr><th>Kiểm tra</th><th>Kết quả</th><th>Chi tiết</th><th>Lúc</th></tr>
{% for a in assertions %}<tr class="{{ 'good' if a.ok else 'bad' }}"><td>{{ a.name }}</td>
<td>{{ "đạt" if a.ok else "KHÔNG ĐẠT" }}</td><td>{{ a.detail }}</td><td>{{ local(a.t) }}</td></tr>
{% else %}<tr><td colspan="4">Không có kiểm tra nào.</td></tr>{% endfor %}</table>
<h2>Số liệu (metrics)</h2>
<table>{% for k, v in metrics %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>
{% else %}<tr><td>Không có số liệu.</td></tr>{% endfor %}</table>
<h2>Cảnh báo gửi cán bộ ({{ c.alerts }})</h2>
<table><tr><th>Lúc</th><th>Nút</th><th>Loại</th><th>Nội dung</th></tr>
{% for a in r.alerts or [] %}
<tr><td>{{ local(a.t) }}</td><td>{{ a.node or "—" }}</td><td>{{ a.kind }}</td><td>{{ a.message }}</td></tr>
{% else %}<tr><td colspan="4">Không có cảnh báo.</td></tr>{% endfor %}</table>
<h2>Sự cố và thao tác</h2>
<table><tr><th>Lúc</th><th></th><th>Loại</th><th>Nút</th><th>Chi tiết</th></tr>
{% for e, what in events %}<tr><td>{{ local(e.t) }}</td><td>{{ "sự cố" if what == "fault" else "thao tác" }}</td>
<td>{{ e.kind or e.action }}</td><td>{{ listed(e.targets) }}</td>
<td>{{ e.detail }}{% if e.result %} → {{ e.result }}{% endif %}</td></tr>
{% else %}<tr><td colspan="5">Không có.</td></tr>{% endfor %}</table>
<h2>Diễn biến từng nút (giờ địa phương, {{ tz }})</h2>
<p class="key"><b>Đèn:</b><span style="background:#f6c700"></span>mức sáng 0–100 %
<b>Loa:</b><span style="background:#bcd3f7"></span>ampli bật<span style="background:#1a5fd0"></span>bản tin
<span style="background:#9b3fc7"></span>trực tiếp<span style="background:#2e9e5b"></span>đường dây
<b>Nút:</b><span style="background:#0004"></span>mất điện
<span style="background:#d93025;height:3px"></span>sự cố
<span style="border-top:2px dashed #333;height:0"></span>thao tác (di chuột để xem)</p>
{% for zone, svg in timelines %}<h3>Vùng {{ zone }}</h3><div class="wide">{{ svg }}</div>{% endfor %}
<h2>Bản đồ</h2>
{% for when, svg in maps %}<h3>Lúc {{ when }}</h3><div class="wide">{{ svg }}</div>{% endfor %}
</body></html>
""")


def write_report(record, out_dir):
    """Write summary.json, junit.xml and index.html into out_dir; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, name) for k, name in
             (("summary", "summary.json"), ("junit", "junit.xml"), ("html", "index.html"))}
    offset = float((record.get("site") or {}).get("utc_offset", 0))
    counts = _counts(record)
    summary = {k: v for k, v in record.items() if k != "truth"}
    summary.update(counts=counts, ok=counts["failed"] == 0 and counts["passed"] > 0)
    with open(paths["summary"], "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1, default=str)
    _junit(record, counts, offset).write(paths["junit"], encoding="utf-8", xml_declaration=True)

    t0 = float(record["start"])
    t1 = max(float(record.get("end") or t0), t0 + 1)
    truth, groups = record.get("truth", {}), _by_zone(record)
    every = [n for _, ns in groups for n in ns]
    walks = {n["id"]: list(_walk(truth.get(n["id"], []))) for n in every}
    events = [(e, "fault") for e in record.get("faults", [])] + [(e, "action") for e in record.get("actions", [])]
    events.sort(key=lambda e: e[0].get("t") or 0)
    metrics = [(k, v if isinstance(v, (str, int, float)) else json.dumps(v, ensure_ascii=False, default=str))
               for k, v in (record.get("metrics") or {}).items()]
    html = PAGE.render(
        r=record, c=dict(counts, nodes=len(every)), tz=_utc_label(offset), metrics=metrics, events=events,
        verdict="FAIL" if counts["failed"] else "PASS" if counts["passed"] else "NONE", verdicts=VERDICTS,
        assertions=sorted(record.get("assertions", []), key=lambda a: bool(a.get("ok"))),  # failures first
        period="%s → %s" % (_local(t0, offset, "%d/%m/%Y %H:%M"), _local(t1, offset, "%d/%m/%Y %H:%M")),
        hours="%.1f" % ((t1 - t0) / 3600), local=lambda t: _local(t, offset),
        listed=_listed,
        timelines=[(zone, _timeline_svg(ns, walks, t0, t1, offset, events, truth)) for zone, ns in groups],
        maps=[(_local(t, offset), _map_svg(every, truth, t)) for t in record.get("snapshots") or [(t0 + t1) / 2]])
    with open(paths["html"], "w", encoding="utf-8") as f:
        f.write(_NOT_XML.sub("\ufffd", html))
    return paths
