"""ESP32 entry point: config from flash, the HAL for the board profile, the node.

The application slot's entry: a bundle carries this source as the slot's main.py, which the
bootstrap (/main.py, firmware/boot.py) imports from the active slot. The provisioning
tool writes /config.json (identity, key, broker, zones, location, board,
wifi). If the config is missing or invalid the node still lights the road
by its photocell and says on the serial console what is wrong.
"""
import asyncio
import json
import time

CONFIG = "/config.json"
STORAGE = "/data"


def _load_config():
    from firmware.config import NodeConfig

    with open(CONFIG) as f:
        raw = json.load(f)
    return raw, NodeConfig(raw)


async def _unprovisioned(hal, why):
    """No usable config: lamps by photocell, a message every 10 s, the watchdog fed."""
    hal.wdt_start(30000)
    n = 0
    while True:
        dark = hal.photocell_dark()
        on = dark is None or dark
        hal.lamp_relay(on)
        hal.lamp_dim(100 if on else 0)
        hal.service()
        hal.wdt_feed()
        if n % 10 == 0:
            hal.log("denloa: not provisioned (%s); lamps follow the photocell" % why)
        n += 1
        await hal.sleep_ms(1000)


def main():
    from hardware.esp32 import Esp32Hal

    try:
        raw, cfg = _load_config()
    except (OSError, ValueError) as exc:  # missing file, bad JSON, ConfigError
        hal = Esp32Hal("denloa-v1", {"storage_dir": STORAGE})
        asyncio.run(_unprovisioned(hal, str(exc)))
        return
    from firmware.node import Node
    from hardware.boards import UnknownBoard

    wifi = raw.get("wifi", {})
    try:
        hal = Esp32Hal(cfg.board, {"wifi_ssid": wifi.get("ssid"), "wifi_password": wifi.get("password"),
                                   "storage_dir": STORAGE})
    except UnknownBoard as exc:  # a config naming no board this firmware knows: say so, light the road
        hal = Esp32Hal("denloa-v1", {"storage_dir": STORAGE})
        asyncio.run(_unprovisioned(hal, "unknown board %r (%s)" % (cfg.board, exc)))
        return
    from firmware.boot import RootFS

    hal.root_fs = RootFS("/")  # the slots and /boot.json: over-the-air update (firmware/ota.py, docs/ota.md)
    hal.net_connect()
    try:
        asyncio.run(Node(hal, cfg).run())  # arms the watchdog before it boots
    except Exception as exc:  # a crash: say why, then let the watchdog reset us (it counts towards safe mode)
        hal.log("denloa: crashed (%r); waiting for the watchdog" % exc)
        while True:
            time.sleep_ms(1000)


main()
