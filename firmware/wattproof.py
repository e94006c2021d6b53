# What a technician calls at the REPL:
#
#   >>> import wattproof; wattproof.status()
#
# Works while the runtime is loaded (after Ctrl-C) and from a fresh REPL (from flash).

import binascii

import files
import journal
import runtime

RUNTIME = None  # type: runtime.Runtime | None  # set by Runtime.run()


def _identity():
    import config
    import cose
    import p256

    cfg = config.load()
    try:
        key = p256.SigningKey.from_bytes(journal.read_file(files.KEY))
        kid = binascii.hexlify(cose.key_id(key.spki_der())).decode()
    except OSError:
        kid = "no key yet"
    return cfg, kid


def status():
    """Prints and returns identity, firmware version, last reading, journal depth, last upload."""
    cfg, kid = _identity()
    rt = RUNTIME
    j = rt.journal if rt is not None else journal.Journal(".", cfg["max_packets"])
    if rt is None:
        j.open()
    pending, packets = j.depth()
    info = {
        "device_id": cfg.get("device_id"),
        "key_id": kid,
        "firmware": runtime.FIRMWARE_VERSION,
        "meter": cfg.get("meter", {}).get("model"),
        "verifier": cfg.get("verifier"),
        "next_packet_seq": j.seq,
        "readings_pending": pending,
        "packets_waiting": packets,
        "last_reading": rt.last_reading if rt is not None else None,
        "last_upload": (rt.delivery.last if rt is not None else "unknown since boot"),
        "meter_fault": rt.meter_fault if rt is not None else None,
        "heap_peak": rt.heap_peak if rt is not None else None,
        "memory_errors": rt.memory_errors if rt is not None else None,
    }
    if rt is not None and rt.charger is not None:
        info["charger"] = rt.charger.status()
    for k in sorted(info):
        print("%-16s %s" % (k, info[k]))
    return info
