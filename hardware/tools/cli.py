"""`python -m hardware <command>`: parse, dispatch, and turn every failure into a message.

A known failure (ToolError) prints its Vietnamese and English text and exits 2;
anything unexpected prints one line and where the full report went, exits 3:
the technician never sees a Python traceback.
"""
import argparse
import importlib
import sys
import traceback

from hardware.tools.common import ToolError

COMMANDS = {
    "build": "đóng gói firmware / build the firmware bundle (mpy-cross)",
    "flash": "nạp MicroPython và firmware / flash MicroPython and upload the bundle",
    "provision": "đăng ký và cấu hình thiết bị / register the node and write its config",
    "bench": "kiểm tra phần cứng / self-test the board's parts",
    "console": "cửa sổ dòng lệnh nối tiếp / serial console (Ctrl-] to quit)",
}


def parser():
    p = argparse.ArgumentParser(prog="python -m hardware",
                                description="Công cụ kỹ thuật viên denloa / denloa technician tools")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        mod = importlib.import_module("hardware.tools." + name)
        sp = sub.add_parser(name, help=help_text, description=(mod.__doc__ or "").split("\n\n")[0])
        mod.add_arguments(sp)
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if not args.command:
        p.print_help()
        sys.exit(1)
    mod = importlib.import_module("hardware.tools." + args.command)
    try:
        status = mod.main(args)
    except ToolError as exc:
        print("\nLỖI: %s\nERROR: %s" % (exc.vi, exc.en), file=sys.stderr, flush=True)
        sys.exit(exc.status)
    except KeyboardInterrupt:
        print("\nĐã dừng / stopped", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a bug: one line for the technician, the trace in a file for us
        import tempfile

        with tempfile.NamedTemporaryFile("w", prefix="denloa-tool-", suffix=".txt", delete=False) as f:
            traceback.print_exc(file=f)
        print("\nLỖI không lường trước: %r. Chi tiết trong %s: gửi tệp này cho nhóm phát triển.\n"
              "UNEXPECTED ERROR: %r. Details in %s: send this file to the developers."
              % (exc, f.name, exc, f.name), file=sys.stderr, flush=True)
        sys.exit(3)
    sys.exit(status or 0)
