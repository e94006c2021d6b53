# Freezes the gateway firmware into a MicroPython image (docs/firmware.md):
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/firmware/manifest.py
# Frozen bytecode runs from flash instead of the heap. main.py and config.json stay on
# the filesystem. include, module and package are provided by MicroPython's manifest tool.
# ruff: noqa: F821

metadata(description="wattproof gateway firmware", version="0.2.0")  # runtime.FIRMWARE_VERSION
include("$(PORT_DIR)/boards/manifest.py")
for name in (
    "files",
    "cbor",
    "merkle",
    "p256",
    "cose",
    "reading",
    "packet",
    "journal",
    "uplink",
    "mqtt",
    "modbus",
    "ocmf",
    "charger",
    "runtime",
    "config",
    "board",
    "board_esp32",
    "wattproof",
):
    module(name + ".py")
package("meters")
