# The device configuration on the board's filesystem: config.json, written at
# provisioning from a board profile (hardware/profiles) plus the device's identity. The
# gateway's defaults live here only: the runtime reads every key of DEFAULTS as given.

import json

from files import CONFIG as PATH

DEFAULTS = {
    "interval_s": 60,  # one meter reading a minute
    "packet_readings": 64,  # close a packet after this many readings ...
    "packet_seconds": 900,  # ... or when the oldest pending reading is this old
    "packet_bytes": 12288,  # the packet buffer, allocated once at boot
    "max_packets": 128,  # closed packets kept while the verifier is unreachable
    "flash_reserve": 65536,  # bytes of flash always left free
    "backoff_s": 5,
    "backoff_max_s": 600,
    "sync_s": 21600,  # the board's clock set from the verifier's again after this many seconds
    "transport": "http",  # packets POSTed to the verifier; "mqtt": published to "broker" (mqtt[s]://host:port)
}


def load(path=PATH):
    cfg = dict(DEFAULTS)
    with open(path) as f:
        cfg.update(json.load(f))
    return cfg
