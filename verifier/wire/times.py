"""Times as wattproof accepts and shows them: Unix seconds from 1970 to the end of year 9999.

Every time the verifier accepts (a query, a JSON or CBOR field, a reading, an OCMF `TM`) is
bounded to 0..MAX_TIME, the range ISO 8601's four-digit years and every formatter can show.
The formatters here are total all the same: a stored time outside the range (written before
the bound) is shown in ISO 8601's expanded form (`+10000-01-01`), never an exception.
"""

from __future__ import annotations

import time

MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z
BOUND_TEXT = "a time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"


def in_range(ts: int) -> bool:
    return 0 <= ts <= MAX_TIME


def civil(ts: int) -> tuple[int, int, int, int, int, int]:
    """(year, month, day, hour, minute, second) of Unix seconds in the proleptic Gregorian
    calendar, for any integer (days from civil, H. Hinnant's algorithm)."""
    days, rest = divmod(int(ts), 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day, rest // 3600, rest % 3600 // 60, rest % 60


def strftime(ts: int, form: str) -> str:
    """time.strftime of UTC for %Y %m %d %H %M %S (and literal text); total."""
    if in_range(ts):
        return time.strftime(form, time.gmtime(ts))
    y, mo, d, h, mi, s = civil(ts)
    year = f"{'+' if y >= 0 else '-'}{abs(y):05d}"  # ISO 8601 expanded year
    out = form.replace("%Y", year).replace("%m", f"{mo:02d}").replace("%d", f"{d:02d}")
    return out.replace("%H", f"{h:02d}").replace("%M", f"{mi:02d}").replace("%S", f"{s:02d}")


def iso(ts: int) -> str:
    """ISO 8601 UTC, as every answer gives beside Unix seconds."""
    return strftime(ts, "%Y-%m-%dT%H:%M:%SZ")
