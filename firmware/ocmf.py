# The OCMF record of a charging session, signed on the charger with the device key
# (docs/protocol.md section 4.1 fixes every byte; the verifier rebuilds the same bytes
# from the session's start and stop readings and checks the signature the stop carries).
#
# OCMF 1.0 as the S.A.F.E. transparency software reads it: SA ECDSA-secp256r1-SHA256, a
# DER signature over the payload bytes, the meter register in kWh under OBIS 1-b:1.8.0.

import hashlib

OBIS = "1-b:1.8.0"
SYNC = "UIS"  # time quality 0 unknown, 1 informative, 2 synchronised -> OCMF's flag


def _civil(days):
    # Days since 1970-01-01 to (year, month, day), proleptic Gregorian: no time module,
    # whose epoch differs between ports.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def timestamp(ts, quality):
    y, m, d = _civil(ts // 86400)
    s = ts % 86400
    return "%04d-%02d-%02dT%02d:%02d:%02d,000+0000 %s" % (y, m, d, s // 3600, s % 3600 // 60, s % 60, SYNC[quality])


def _reading(ts, quality, reason, wh):
    return '{"TM":"%s","TX":"%s","RV":%d.%03d,"RI":"%s","RU":"kWh","RT":"AC","EF":"","ST":"G"}' % (
        timestamp(ts, quality),
        reason,
        wh // 1000,
        wh % 1000,
        OBIS,
    )


def payload(device_id, stop_number, token_hash, begin, end):
    """The payload JSON: begin and end are (ts, quality, register_wh); token_hash the
    session's 32-byte token hash or None (free charging)."""
    if token_hash is None:
        ident = '"IS":false,"IL":"NONE","IF":["RFID_NONE"],"IT":"NONE","ID":""'
    else:
        ident = '"IS":true,"IL":"HEARSAY","IF":["RFID_PLAIN"],"IT":"LOCAL","ID":"%s"' % _hex(token_hash[:16])
    return '{"FV":"1.0","GI":"WATTPROOF","GS":"%s","PG":"T%d",%s,"RD":[%s,%s]}' % (
        device_id,
        stop_number,
        ident,
        _reading(begin[0], begin[1], "B", begin[2]),
        _reading(end[0], end[1], "E", end[2]),
    )


def _hex(data):
    return "".join("%02X" % b for b in data)


def _der_int(b):
    i = 0
    while i < len(b) - 1 and b[i] == 0:
        i += 1
    b = b[i:]
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + bytes([len(b)]) + b


def der(signature):
    """ASN.1 DER ECDSA-Sig-Value of a 64-byte r || s."""
    body = _der_int(signature[:32]) + _der_int(signature[32:])
    return b"\x30" + bytes([len(body)]) + body


def sign(key, text):
    """The DER signature (low S) over SHA-256 of the payload's UTF-8 bytes."""
    return der(key.sign_digest(hashlib.sha256(text.encode()).digest()))
