"""The firmware's version: the one place it is written (bundles, births, OTA)."""
VERSION = "0.1.0"
