# The board's flash, file by file: the one list of names, read by the firmware and by
# the host tools that provision, inspect and simulate boards (hardware/micropython.py
# loads this file under CPython). Paths are relative to the board's working folder.

CONFIG = "config.json"  # written by provisioning from the board profile (docs/firmware.md)
MAIN = "main.py"  # starts the gateway at boot; removed when a board is decommissioned
SAFE_BOOT = "safe.boot"  # present: the next boot skips the gateway once (a whole heap for provisioning)

KEY = "device.key"  # the device's private key, born on the board; never leaves it
PUBLIC_KEY = "device.pub"  # the public point, for enrollment
NEW_KEY = "device.key.new"  # a rotation's key until the verifier has accepted it
RECEIPT = "receipt.json"  # the enrollment receipt: ledger index, inclusion proof, checkpoint
CA_CERT = "ca.der"  # the CA that signed the verifier's TLS certificate (https only)

COMMISSION = "commission.now"  # provisioning asks for a packet right after the first reading
COMMISSIONED = "commissioned.json"  # ... which becomes this once the verifier has it
RUNNING = "running"  # present while the loop runs: found at boot, the power was cut
METER_ID = "meter.id"  # the meter's identity, to notice a swapped meter

JOURNAL_STATE = "state.cbor"  # next sequence number, previous header hash, last packed reading
JOURNAL_LOG = "readings.log"  # readings not yet in a packet, one flushed record each
JOURNAL_OUT = "out"  # folder of packets waiting for the verifier's answer, NNNNNNNNNN.pkt
PACKET_SUFFIX = ".pkt"

SESSION = "session.cbor"  # the charger's open session, written before its event is journaled
TOKEN_SALT = "token.salt"  # per-device salt of the token hash; never leaves the board
S0_STATE = "s0.cbor"  # the S0 pulse total, saved before the reading that uses it

# What decommissioning removes (the journal's packets as well, and main.py).
DEVICE_STATE = (
    KEY,
    NEW_KEY,
    PUBLIC_KEY,
    CONFIG,
    RECEIPT,
    COMMISSIONED,
    RUNNING,
    METER_ID,
    SESSION,
    TOKEN_SALT,
    JOURNAL_STATE,
    JOURNAL_LOG,
)
