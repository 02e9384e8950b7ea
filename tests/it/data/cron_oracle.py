"""Fire times of crontab expressions by croniter (Debian python3-croniter),
an implementation independent of audit-trail's, for tests/it/schedules.rs.

argv: zone, start (local "YYYY-MM-DD HH:MM:SS"), count, then expressions in
crontab(5) form (5 fields). Prints one JSON object: expression -> list of
epoch seconds, cut before the first daylight-saving change after the start
(where audit-trail deliberately follows cron's DST rules instead; see
README "Daylight saving time and clock steps") and before 2100.
"""
import json
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

zone, start, count, exprs = ZoneInfo(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
t0 = datetime.strptime(start, "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)


def next_change(t):
    """The first instant after t at which the zone's UTC offset changes (hourly scan, 2 years)."""
    off = t.utcoffset()
    u = t.astimezone(ZoneInfo("UTC"))
    for h in range(1, 2 * 366 * 24):
        v = (u + timedelta(hours=h)).astimezone(zone)
        if v.utcoffset() != off:
            return (u + timedelta(hours=h - 1)).timestamp()
    return float("inf")


# audit-trail's years end at 2099 (the cron crate's range, README).
cut = min(next_change(t0), datetime(2100, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp())
out = {}
for e in exprs:
    it = croniter(e, t0)
    times = []
    for _ in range(count):
        ts = it.get_next(datetime).timestamp()
        if ts >= cut:
            break
        times.append(int(ts))
    out[e] = times
print(json.dumps(out))
