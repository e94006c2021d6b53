# Board-side steps of provisioning: `wattproof provision` calls these through mpremote's
# raw REPL, and each prints one line of JSON for it to read. The device's private key is
# made and kept here: written to flash, never printed (the public key and signatures are).
#
#   >>> import commission; commission.public()

import binascii
import gc
import json
import os

import files
import journal
from files import KEY, NEW_KEY, PUBLIC_KEY


def _hex(b):
    return binascii.hexlify(b).decode()


def _say(**fields):
    print(json.dumps(fields))


def _load(path):
    import p256

    return p256.SigningKey.from_bytes(journal.read_file(path))


def _public(key):
    import cose

    return {"public_key": _hex(key.public_key()), "kid": _hex(cose.key_id(key.spki_der()))}


def keygen(replace=False):
    """The device key: made here from os.urandom the first time (or when replace), then kept."""
    import p256

    if not replace and journal.exists(KEY):
        key = _load(KEY)
        made = False
    else:
        key = p256.SigningKey.generate()
        journal.write_atomic(KEY, key.to_bytes())
        journal.write_atomic(PUBLIC_KEY, key.public_key())
        made = True
    _say(made=made, **_public(key))


def public():
    try:
        key = _load(KEY)
    except OSError:
        _say(public_key=None)
        return
    _say(**_public(key))


def sign(message_hex, new=False):
    """ES256 signature (r || s) of the message by the device key (or the rotation's new key)."""
    key = _load(NEW_KEY if new else KEY)
    _say(signature=_hex(key.sign(binascii.unhexlify(message_hex))))


def rotation_begin():
    """A new key beside the current one; the current one stays in use until rotation_commit."""
    import p256

    if not journal.exists(NEW_KEY):
        journal.write_atomic(NEW_KEY, p256.SigningKey.generate().to_bytes())
    _say(**_public(_load(NEW_KEY)))


def rotation_commit():
    """The verifier took the new key: it becomes the device key."""
    key = _load(NEW_KEY)
    journal.write_atomic(PUBLIC_KEY, key.public_key())
    os.rename(NEW_KEY, KEY)
    _say(**_public(key))


def wipe():
    """Decommissioning: the keys, the journal and the configuration go; the firmware stays."""
    out = files.JOURNAL_OUT
    names = list(files.DEVICE_STATE)
    try:
        names += [out + "/" + name for name in os.listdir(out)] + [out]
    except OSError:
        pass
    for name in names:
        try:
            if name == out:
                os.rmdir(name)
            else:
                os.remove(name)
        except OSError:
            pass
    _say(wiped=True, key=journal.exists(KEY))


def flush():
    """Packs and sends every pending reading now; how many packets still wait."""
    import board
    import config
    import runtime

    import wattproof

    gc.collect()
    rt = wattproof.RUNTIME  # the gateway's, stopped by the Ctrl-C that opened this session
    if rt is None:
        cfg = config.load()
        rt = runtime.Runtime(cfg, board.Board(cfg))
    try:
        rt.flush()
        pending, waiting = rt.journal.depth()
        _say(result=rt.delivery.last, pending=pending, waiting=waiting, seq=rt.journal.seq)
    finally:
        rt.stop()


def commission_next_boot():
    """The next boot sends a packet right after its first reading (provisioning's last check)."""
    try:
        os.remove(files.COMMISSIONED)
    except OSError:
        pass
    journal.write_atomic(files.COMMISSION, b"{}")
    _say(ok=True)


def events(limit=50):
    """The device events the board holds (in packets not yet acknowledged, then pending)."""
    import cbor

    j = journal.Journal(".")
    j.open()
    raws = []
    for seq in j.outbox():
        raws += cbor.decode(j.packet(seq))[1]
    raws += list(j.readings())
    out = []
    for raw in raws:
        r = cbor.decode(raw)
        if r.get(0) == 3:
            out.append({"number": r[1], "ts": r[2], "event": r.get(30), "detail": r.get(31), "value": r.get(32)})
    _say(events=out[-limit:], held=len(raws))


def meter():
    """One reading of the configured meter: that it answers, and what it says."""
    import board
    import config
    from meters import MeterError, make

    cfg = config.load()
    m = make(cfg["meter"], board.Board(cfg))
    try:
        imp, exp, power = m.read()
        identity = m.identity()
        serial = m.serial()  # None: the bus gives no serial number (the nameplate's is entered)
    except MeterError as e:
        _say(ok=False, error=str(e))
        return
    _say(ok=True, import_wh=imp, export_wh=exp, power_w=power, identity=identity, serial=serial)


def clock(set_to=None):
    """The board's time: synced from the network if it can, else set_to (the laptop's)."""
    import board
    import config

    b = board.Board(config.load())
    step = b.sync_time()
    if step is None and set_to is not None:
        b.set_time(set_to)
    _say(time=b.time(), synced=step is not None, step=step)


def reset():
    import board
    import config

    board.Board(config.load()).reset()
