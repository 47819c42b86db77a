"""`python -m hardware <command>`: the technician's tools (CPython on a laptop; see hardware/tools/)."""
from hardware.tools.cli import main

main()
