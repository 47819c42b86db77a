"""`python -m hardware console --port P`: the node's serial console (mpremote's REPL); Ctrl-] quits.

What the node prints (its log, "not provisioned" messages) shows as it comes;
Ctrl-C interrupts the running firmware and gives the MicroPython prompt;
Ctrl-D soft-reboots it (the firmware starts again).
"""
import subprocess
import sys

from hardware.tools.common import check_port, port_busy, say


def main(args):
    port = check_port(args.port)
    say("Cổng / port %s. Thoát / quit: Ctrl-]" % port)
    r = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "resume", "repl"])
    if r.returncode not in (0, 1):  # mpremote exits 1 when it cannot open the port
        return r.returncode
    if r.returncode == 1:
        raise port_busy(port)
    return 0


def add_arguments(p):
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 or COM3")
