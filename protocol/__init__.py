"""denloa wire contract and shared pure logic (runs on MicroPython and CPython).

Modules: topics, messages, commands (+ auth), program (lamp), plan
(broadcast), sun. Import the module you need; nothing happens at import.
"""
