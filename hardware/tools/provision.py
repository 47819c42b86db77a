"""`python -m hardware provision`: register the node, write its config over the cable, label it, log it.

    python -m hardware provision --port /dev/ttyUSB0 --site xa-an-binh --node den-thon1-03 \\
        --zone thon-1 --gateway http://192.168.1.10:8080 [--replace] [--wifi-ssid SSID]
    python -m hardware provision --port /dev/ttyUSB0 --node den-thon1-03 --offline-bundle den-thon1-03.json

1. Credentials: online, the tool logs in to the gateway as an admin (--user,
   password from DENLOA_ADMIN_PASSWORD or asked) and registers the node
   (POST /api/nodes): the gateway makes the node's MQTT password and its
   32-byte command key (secrets.token_*) and answers them once, in the
   provisioning bundle. An id that is taken is refused unless --replace, which
   makes the gateway issue new ones (POST /api/nodes/ID/reprovision: the old
   ones stop working). Offline, the tool takes a bundle the gateway exported
   (the JSON an admin saved: the bundle, {"provisioning": bundle} or a list of
   them) and refuses one whose key the inventory says was written before.
   Keys are never made, reused or stored by this tool.
2. Config: the bundle plus the board, the firmware version and the Wi-Fi
   (--wifi-ssid, password from DENLOA_WIFI_PASSWORD) written to /config.json
   on the node (to a temporary file, then renamed: a cut cable leaves the old
   config or the new one), read back and compared, then the node is
   soft-rebooted so the firmware starts with it.
3. Label: <label-dir>/<node>.svg, the node id as a QR code and as text, its
   zones and site (print it at 100 %: 90 x 30 mm).
4. Inventory: one CSV line appended (date, node, site, zones, board, port,
   firmware, key id, source); never the key or the password. The key id is a
   truncated SHA-256 of the key: it tells two keys apart and nothing else.
"""
import csv
import datetime
import getpass
import hashlib
import json
import os
import sys
from pathlib import Path

from hardware.tools.common import Node, ToolError, check_port, read_version, say
from hardware.tools.flash import put_file

INVENTORY_FIELDS = ("date", "node", "site", "zones", "board", "port", "firmware", "key_id", "source", "action")


def key_id(key_hex):
    return hashlib.sha256(b"denloa-key-id:" + key_hex.encode()).hexdigest()[:16]


def check_node_id(node_id, what="node"):
    from protocol.errors import ProtocolError
    from protocol.topics import check_id

    try:
        check_id(node_id, what + " id")
    except (ProtocolError, ValueError) as exc:
        raise ToolError("Mã %s %r không hợp lệ: chỉ chữ thường không dấu, số và dấu gạch ngang (%s)"
                        % ("thiết bị" if what == "node" else "xã", node_id, exc),
                        "Invalid %s id %r: lowercase ASCII letters, digits and dashes only (%s)" % (what, node_id, exc))


# ---- the inventory -----------------------------------------------------------------------------
def read_inventory(path):
    p = Path(path)
    if not p.exists():
        return []
    with p.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def append_inventory(path, row):
    p = Path(path)
    new = not p.exists() or p.stat().st_size == 0
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=INVENTORY_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in INVENTORY_FIELDS})


# ---- the gateway -------------------------------------------------------------------------------
class Gateway:
    """The gateway's JSON API with an admin session (cookie + CSRF token), over urllib."""

    def __init__(self, url, user, password, timeout=30, ca=None):
        """`ca`: the site CA (PEM file) an https:// gateway's certificate is verified against."""
        import http.cookiejar
        import ssl
        import urllib.request

        self.url = url.rstrip("/")
        self.timeout = timeout
        handlers = [urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())]
        if self.url.startswith("https://"):
            try:  # the site CA only: the admin password goes to this gateway and no other
                context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
            except (OSError, ssl.SSLError) as exc:
                raise ToolError("Không đọc được chứng chỉ CA %s: %s" % (ca, exc), "Cannot read the CA file %s: %s" % (ca, exc))
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.ca = ca
        self.opener = urllib.request.build_opener(*handlers)
        self.csrf = None
        status, body = self.call("POST", "/api/login", {"username": user, "password": password})
        if status != 200:
            raise ToolError("Gateway từ chối đăng nhập %s: %s" % (user, body.get("message", status)),
                            "The gateway refused the login of %s: %s" % (user, body.get("message_en", status)))
        self.csrf = body.get("csrf")
        if (body.get("user") or {}).get("role") != "admin":
            raise ToolError("Tài khoản %s không phải quản trị (admin): cần quyền admin để đăng ký thiết bị" % user,
                            "Account %s is not an admin: registering a node needs an admin" % user)

    def call(self, method, path, obj=None):
        import urllib.error
        import urllib.request

        data = None if obj is None else json.dumps(obj).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        if self.csrf:
            req.add_header("X-CSRF-Token", self.csrf)
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                return exc.code, {}
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if "CERTIFICATE_VERIFY_FAILED" in str(reason) or "certificate verify failed" in str(reason):
                raise ToolError("Chứng chỉ của gateway %s không được xác minh (%s): dùng --gateway-ca với tệp ca.pem "
                                "của xã (DATA/tls/ca.pem trên gateway; so dấu SHA-256 với dòng `tls:` khi gateway khởi động)"
                                % (self.url, reason),
                                "The gateway's certificate at %s could not be verified (%s): give --gateway-ca with the "
                                "site's ca.pem (DATA/tls/ca.pem on the gateway; compare its SHA-256 with the gateway's "
                                "`tls:` start-up line)" % (self.url, reason))
            raise ToolError("Không kết nối được gateway %s (%s): kiểm tra mạng Wi-Fi/LAN của máy tính và địa chỉ, "
                            "hoặc dùng --offline-bundle" % (self.url, reason),
                            "Cannot reach the gateway %s (%s): check the laptop's network and the address, or use "
                            "--offline-bundle" % (self.url, reason))

    def register(self, spec, replace):
        """(bundle, action): the node registered ("new") or, with replace, given new credentials ("replace")."""
        status, body = self.call("POST", "/api/nodes", spec)
        if status == 201:
            return body["provisioning"], "new"
        if status == 409 and body.get("error") == "node.exists":
            if not replace:
                raise ToolError("Mã thiết bị %s đã có trên gateway: chọn mã khác, hoặc thêm --replace nếu thay mạch "
                                "cho thiết bị này (khóa cũ sẽ hết hiệu lực)" % spec["id"],
                                "Node id %s is taken on the gateway: choose another, or add --replace to put a new "
                                "board in its place (its old key stops working)" % spec["id"])
            status, body = self.call("POST", "/api/nodes/%s/reprovision" % spec["id"])
            if status == 200:
                return body["provisioning"], "replace"
        raise ToolError("Gateway từ chối (%s): %s" % (status, body.get("message", body)),
                        "The gateway refused (%s): %s" % (status, body.get("message_en", body)))


def offline_bundle(path, node_id, inventory):
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ToolError("Không đọc được %s: %s" % (path, exc.strerror), "Cannot read %s: %s" % (path, exc.strerror))
    except ValueError as exc:
        raise ToolError("%s không phải JSON (%s)" % (path, exc), "%s is not JSON (%s)" % (path, exc))
    items = raw if isinstance(raw, list) else [raw]
    found = None
    for item in items:
        b = item.get("provisioning", item) if isinstance(item, dict) else None
        if isinstance(b, dict) and b.get("node") == node_id:
            found = b
    if found is None or not isinstance(found.get("key"), str) or not isinstance(found.get("broker"), dict):
        raise ToolError("%s không có gói cấu hình cho thiết bị %s: xuất lại từ gateway" % (path, node_id),
                        "%s holds no provisioning bundle for node %s: export it again from the gateway"
                        % (path, node_id))
    kid = key_id(found["key"])
    for row in inventory:
        if row.get("key_id") == kid:
            raise ToolError("Khóa trong gói này đã được ghi cho thiết bị %s ngày %s: không dùng lại khóa. Trên gateway "
                            "cấp lại (reprovision) rồi xuất gói mới" % (row.get("node"), row.get("date")),
                            "The key in this bundle was written to node %s on %s already: a key is never reused. "
                            "Reprovision the node on the gateway and export a new bundle" % (row.get("node"), row.get("date")))
    return found


# ---- the config and the label ------------------------------------------------------------------
DEFAULT_BOARD = "denloa-v1"


def check_board(name):
    """A board profile this firmware knows (hardware/boards.py), or a ToolError naming them."""
    from hardware.boards import BOARDS

    if name not in BOARDS:
        known = ", ".join(sorted(BOARDS))
        raise ToolError("Không có mạch %r. Các mạch: %s (docs/hardware.md)" % (name, known),
                        "No board profile %r. Boards: %s (docs/hardware.md)" % (name, known))

def node_config(bundle, board, version, wifi):
    """The node's /config.json: the bundle, the board (an explicit --board wins over the bundle's,
    which the gateway's form may have left at its default), the version and the Wi-Fi."""
    cfg = dict(bundle)
    cfg["board"] = board or bundle.get("board") or DEFAULT_BOARD
    check_board(cfg["board"])
    cfg["firmware"] = version
    if wifi:
        cfg["wifi"] = wifi
    for key in ("site", "node", "key", "broker", "location"):
        if key not in cfg:
            raise ToolError("Gói cấu hình thiếu %r" % key, "The provisioning bundle has no %r" % key)
    tls_on = (cfg["broker"] or {}).get("tls") or (cfg.get("files") or {}).get("tls")
    if tls_on and "BEGIN CERTIFICATE" not in str((cfg.get("tls") or {}).get("ca")):
        raise ToolError("Gói cấu hình bật TLS nhưng thiếu chứng chỉ CA của xã (tls.ca): xuất lại gói từ gateway",
                        "The provisioning bundle turns TLS on but has no site CA (tls.ca): export it again")
    return cfg


def label_svg(node_id, zones, site, version, date):
    """The pole label: the node id as a QR code (segno) and as text, its zones and site. 90 x 30 mm."""
    try:
        import segno
    except ImportError:
        raise ToolError("Cần gói segno để in nhãn: `pip install segno`", "The label needs the segno package")
    import re

    qr = segno.make_qr(node_id, error="m")
    size = qr.symbol_size(scale=1, border=2)[0]
    path = re.search(r' d="([^"]+)"', qr.svg_inline(scale=1, border=2)).group(1)  # the dark modules, one unit each
    esc = lambda s: (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))  # noqa: E731
    # the QR scaled into a 26 mm square at (2, 2)
    inner = ('<g transform="translate(2 2) scale(%.4f)"><path stroke="#000" stroke-width="1" fill="none" d="%s"/></g>'
             % (26.0 / size, path))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" width="90mm" height="30mm" viewBox="0 0 90 30">\n'
        '<rect width="90" height="30" fill="#fff" stroke="#000" stroke-width="0.3"/>\n'
        '%s\n'
        '<text x="31" y="9" font-family="DejaVu Sans, sans-serif" font-size="6" font-weight="bold">%s</text>\n'
        '<text x="31" y="15" font-family="DejaVu Sans, sans-serif" font-size="3.2">Cụm / zone: %s</text>\n'
        '<text x="31" y="20" font-family="DejaVu Sans, sans-serif" font-size="3.2">Xã / site: %s</text>\n'
        '<text x="31" y="25" font-family="DejaVu Sans, sans-serif" font-size="2.6">denloa %s · %s</text>\n'
        '</svg>\n' % (inner, esc(node_id), esc(", ".join(zones) or "-"), esc(site), esc(version), esc(date)))


# ---- the command -------------------------------------------------------------------------------
def _password(env, prompt, required=True):
    value = os.environ.get(env)
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    if required:
        raise ToolError("Thiếu mật khẩu: đặt biến môi trường %s" % env, "No password: set %s" % env)
    return None


def main(args):
    check_node_id(args.node)
    if args.site:
        check_node_id(args.site, "site")
    if not args.gateway and not args.offline_bundle:
        raise ToolError("Cần --gateway URL (đăng ký trực tuyến) hoặc --offline-bundle FILE (gói xuất từ gateway)",
                        "Give --gateway URL (register online) or --offline-bundle FILE (a bundle the gateway exported)")
    if args.board:
        check_board(args.board)
    inventory = read_inventory(args.inventory)
    version = read_version()
    wifi = None
    if args.wifi_ssid:
        wifi = {"ssid": args.wifi_ssid, "password": _password("DENLOA_WIFI_PASSWORD", "Wi-Fi password: ")}
    else:
        say("CHÚ Ý: không có --wifi-ssid: thiết bị sẽ không vào mạng được (đèn vẫn chạy theo lịch)\n"
            "WARNING: no --wifi-ssid: the node will not join any network (its lamps still follow the program)")
    port = check_port(args.port)
    # the node answers before the gateway is asked: no key is issued for a board that is not there
    with Node(port) as node:
        has_fw = node.exec("import os\ntry:\n os.stat('/main.py')\n print(1)\nexcept OSError:\n print(0)").strip()
        if has_fw != b"1":
            raise ToolError("Mạch chưa có firmware denloa (/main.py): chạy `python -m hardware flash` trước",
                            "The board has no denloa firmware (/main.py): run `python -m hardware flash` first")
        if args.offline_bundle:
            bundle = offline_bundle(args.offline_bundle, args.node, inventory)
            action, source = "offline", "offline:" + Path(args.offline_bundle).name
        else:
            gw = Gateway(args.gateway, args.user, _password("DENLOA_ADMIN_PASSWORD", "Admin password (%s): " % args.user),
                         ca=args.gateway_ca)
            spec = {"id": args.node, "zones": args.zone, "kind": args.kind, "board": args.board or DEFAULT_BOARD}
            if args.name:
                spec["name"] = args.name
            if args.lat is not None and args.lon is not None:
                spec["lat"], spec["lon"] = args.lat, args.lon
            bundle, action = gw.register(spec, args.replace)
            source = args.gateway
        site = bundle.get("site")
        again = ("" if args.offline_bundle else
                 (" Thiết bị %s ĐÃ được cấp khóa: sửa rồi chạy lại với --replace" % args.node,
                  " Node %s HAS been issued a key: correct it and run again with --replace" % args.node))
        if args.site and site != args.site:
            raise ToolError("Gói cấu hình dành cho xã %r, không phải %r.%s" % (bundle.get("site"), args.site,
                                                                            again and again[0]),
                            "The provisioning bundle is for site %r, not %r.%s" % (bundle.get("site"), args.site,
                                                                                 again and again[1]))
        zones = sorted(bundle.get("zones", {}))
        if args.zone and set(args.zone) != set(zones):
            raise ToolError("Cụm trong gói (%s) khác --zone (%s).%s" % (", ".join(zones), ", ".join(args.zone),
                                                                     again and again[0]),
                            "The bundle's zones (%s) differ from --zone (%s).%s" % (
                                ", ".join(zones), ", ".join(args.zone), again and again[1]))
        cfg = node_config(bundle, args.board, version, wifi)
        data = json.dumps(cfg, sort_keys=True).encode()
        try:
            put_file(node, "/config.json", data)
            back = node.exec("with open('/config.json','rb') as f:\n print(f.read().decode())").strip()
        except ToolError as exc:
            raise ToolError("Ghi cấu hình thất bại (%s). Thiết bị %s ĐÃ được gateway cấp khóa: chạy lại lệnh với "
                            "--replace" % (exc.vi, args.node),
                            "Writing the config failed (%s). Node %s HAS been issued a key by the gateway: run the "
                            "command again with --replace" % (exc.en, args.node))
        if json.loads(back) != cfg:
            raise ToolError("Cấu hình đọc lại khác cấu hình đã ghi: chạy lại với --replace",
                            "The config read back differs from what was written: run again with --replace")
        node.reboot()  # the firmware starts with its config
    today = datetime.date.today().isoformat()
    label_dir = Path(args.label_dir)
    label_dir.mkdir(parents=True, exist_ok=True)
    label = label_dir / (args.node + ".svg")
    label.write_text(label_svg(args.node, zones, site, version, today), encoding="utf-8")
    append_inventory(args.inventory, {
        "date": today, "node": args.node, "site": site, "zones": " ".join(zones), "board": cfg["board"],
        "port": port, "firmware": version, "key_id": key_id(cfg["key"]), "source": source, "action": action})
    say("Xong / done: %s (%s) đã cấu hình / provisioned; cụm / zones: %s" % (args.node, action, ", ".join(zones)))
    say("Nhãn / label: %s   Sổ thiết bị / inventory: %s" % (label, args.inventory))
    say("Tiếp theo / next: python -m hardware bench --port %s" % port)
    return 0


def add_arguments(p):
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or COM3")
    p.add_argument("--site", help="the commune's site id: checked against the gateway's (default: the gateway's)")
    p.add_argument("--node", required=True, help="the node's id, e.g. den-thon1-03")
    p.add_argument("--zone", action="append", default=[], help="a zone of the node (repeat for several)")
    p.add_argument("--gateway", default=os.environ.get("DENLOA_GATEWAY"), help="gateway URL, e.g. https://192.168.1.10:8080")
    p.add_argument("--gateway-ca", default=os.environ.get("DENLOA_GATEWAY_CA"),
                   help="an https:// gateway: the site CA (its DATA/tls/ca.pem) to verify it with")
    p.add_argument("--user", default="admin", help="gateway admin user (password: DENLOA_ADMIN_PASSWORD or asked)")
    p.add_argument("--replace", action="store_true", help="the id is taken: give it new credentials (a new board)")
    p.add_argument("--offline-bundle", help="a provisioning bundle exported by the gateway (JSON)")
    p.add_argument("--kind", choices=("lamp", "speaker", "both"), default="both", help="what the node does")
    p.add_argument("--board", help="board profile (hardware/boards.py: devkitc-pole, devkitc-pa-line, denloa-v1, ...);"
                                   " wins over the gateway's; default: the gateway's, else denloa-v1")
    p.add_argument("--name", help="a readable name for the gateway's pages")
    p.add_argument("--lat", type=float, help="latitude of the pole")
    p.add_argument("--lon", type=float, help="longitude of the pole")
    p.add_argument("--wifi-ssid", help="the Wi-Fi the node joins (password: DENLOA_WIFI_PASSWORD or asked)")
    p.add_argument("--inventory", default="denloa-inventory.csv", help="inventory CSV to append to")
    p.add_argument("--label-dir", default="labels", help="folder for the SVG labels")
