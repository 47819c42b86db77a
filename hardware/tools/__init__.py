"""The technician's tools (CPython on a laptop): build, flash, provision, bench, console.

Run as `python -m hardware <command> --help`. Never compiled for the node
(the Makefile's MPY_SOURCES and the bundle take hardware/*.py top-level only).
"""
