"""Sun accuracy: protocol/sun.py (the node's and the gateway's NOAA calculator) against astral 3.2,
dawn, sunrise, sunset and dusk over Vietnam (8-24 N, 102-110 E) from 2000 to 2050, in double
precision and in the ESP32's single precision (every float operation rounded to 32 bits, as
tests/protocol/test_sun_cpython.py does). Target (docs/design.md): within a minute of the reference.
Prints one JSON line (tests/bench/report.py files it).
"""
import datetime
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.protocol.test_sun_cpython import EVENTS, TOLERANCE_S, _single_precision_sun, astral_minutes  # noqa: E402
from protocol.sun import sun_times  # noqa: E402

YEARS = (2000, 2012, 2025, 2037, 2050)
PLACES = [(lat, lon) for lat in (8.0, 12.0, 16.0, 21.0, 24.0) for lon in (102.0, 106.0, 110.0)]


def main():
    t0 = time.monotonic()
    sun32 = _single_precision_sun()
    worst = {"double": (0.0, None), "single": (0.0, None)}
    cases = 0
    for year in YEARS:
        start = datetime.date(year, 1, 1)
        for date in (start + datetime.timedelta(days=k) for k in range(0, 365, 11)):
            for lat, lon in PLACES:
                ref = {e: astral_minutes(e, lat, lon, date) for e in EVENTS}
                for name, fn in (("double", sun_times), ("single", sun32)):
                    ours = fn(date.year, date.month, date.day, lat, lon, 7)
                    for e in EVENTS:
                        diff = abs(float(getattr(ours, e)) - ref[e]) * 60
                        if diff > worst[name][0]:
                            worst[name] = (diff, "%s %s %.0fN %.0fE" % (e, date.isoformat(), lat, lon))
                cases += len(EVENTS)
    out = {}
    for name, label in (("double", "double precision (gateway, unix port)"), ("single", "single precision (ESP32)")):
        diff, where = worst[name]
        out["sun_worst_error_s_%s" % name] = {"value": round(diff, 1), "target": "<= %d s vs astral (%s)"
                                              % (TOLERANCE_S, label), "holds": diff <= TOLERANCE_S}
        out["sun_worst_case_%s" % name] = where
    out["sun_cases"] = cases
    out["sun_bench_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
