"""The firmware's version: the one place it is said (the bundle's manifest, the node's birth message)."""
VERSION = "0.1.0"
