# Peacefair PZEM-004T v3 over Modbus RTU: function 0x04, ten input registers from 0:
# voltage (0.1 V), current (0.001 A, 32 bit), power (0.1 W, 32 bit), energy (1 Wh, 32 bit),
# frequency (0.1 Hz), power factor (0.01), alarm. 32-bit values are low word first.
# The PZEM measures import only.

import modbus

from meters import MeterError


def _u32_low_first(raw, i):
    return (raw[i + 2] << 24) | (raw[i + 3] << 16) | (raw[i] << 8) | raw[i + 1]


class Pzem:
    def __init__(self, cfg, board):
        self.address = cfg.get("address", 0xF8)  # 0xF8: the general address, one meter per bus
        self.bus = modbus.Master(board.uart(cfg), cfg.get("timeout_ms", 300), cfg.get("retries", 2))

    def read(self):
        try:
            raw = self.bus.read(self.address, modbus.READ_INPUT, 0, 10)
        except modbus.ModbusError as e:
            raise MeterError(str(e))
        power_dw = _u32_low_first(raw, 6)
        energy_wh = _u32_low_first(raw, 10)
        return energy_wh, 0, (power_dw + 5) // 10

    def identity(self):
        # Names the meter on its bus, to notice a swap; not a serial number: the PZEM-004T
        # gives none, so the technician enters the nameplate's (provision --meter-serial).
        return "pzem004t-%d" % self.address

    def serial(self):
        return None
