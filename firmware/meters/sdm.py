# Eastron SDM120 (single phase) and SDM630 (three phase) over Modbus RTU.
# Input registers (function 0x04) hold IEEE 754 single-precision floats, high word
# first: energies in kWh, power in W. Conversion to integer Wh is done on the float's
# bits with integer arithmetic: the board's own floats are single precision, and
# multiplying by 1000 there would round differently from one reading to the next.

import modbus

from meters import MeterError

IMPORT_KWH = 0x0048  # total import active energy; export follows at 0x004A
POWER_SDM120 = 0x000C  # active power
POWER_SDM630 = 0x0034  # total system power
PHASE_POWER = 0x000C  # SDM630: L1, L2, L3 active power at 0x000C, 0x000E, 0x0010
PHASE_IMPORT_KWH = 0x015A  # SDM630: L1, L2, L3 import energy at 0x015A, 0x015C, 0x015E
SERIAL = 0xFC00  # holding registers: serial number (32-bit unsigned)


def float32_scaled(raw, scale):
    """round(value * scale) of the big-endian IEEE 754 float in raw[0:4], exactly."""
    bits = (raw[0] << 24) | (raw[1] << 16) | (raw[2] << 8) | raw[3]
    exponent = (bits >> 23) & 0xFF
    fraction = bits & 0x7FFFFF
    if exponent == 0xFF:
        raise MeterError("sdm: register is not a number")
    if exponent:
        mantissa, shift = fraction | 0x800000, exponent - 150
    else:
        mantissa, shift = fraction, -149
    n = mantissa * scale
    value = n << shift if shift >= 0 else (n + (1 << (-shift - 1))) >> -shift
    return -value if bits >> 31 else value


class Sdm:
    def __init__(self, cfg, board):
        self.model = cfg["model"]
        self.address = cfg.get("address", 1)
        self.bus = modbus.Master(board.uart(cfg), cfg.get("timeout_ms", 300), cfg.get("retries", 2))

    def _read(self, function, register, count):
        try:
            return self.bus.read(self.address, function, register, count)
        except modbus.ModbusError as e:
            raise MeterError(str(e))

    def read(self):
        energy = self._read(modbus.READ_INPUT, IMPORT_KWH, 4)
        imp = float32_scaled(energy, 1000)
        exp = float32_scaled(energy[4:], 1000)
        if imp < 0 or exp < 0:
            raise MeterError("sdm: negative energy register")
        power_reg = POWER_SDM630 if self.model == "sdm630" else POWER_SDM120
        power = float32_scaled(self._read(modbus.READ_INPUT, power_reg, 2), 1)
        return imp, exp, power

    def phases(self):
        """SDM630 per phase: ([L1, L2, L3] power W, [L1, L2, L3] import Wh)."""
        p = self._read(modbus.READ_INPUT, PHASE_POWER, 6)
        e = self._read(modbus.READ_INPUT, PHASE_IMPORT_KWH, 6)
        return [float32_scaled(p[i:], 1) for i in (0, 4, 8)], [float32_scaled(e[i:], 1000) for i in (0, 4, 8)]

    def identity(self):
        raw = self._read(modbus.READ_HOLDING, SERIAL, 2)
        return "%s-%d" % (self.model, (raw[0] << 24) | (raw[1] << 16) | (raw[2] << 8) | raw[3])

    def serial(self):
        """The serial number the meter reports on its bus (holding registers 0xFC00)."""
        return self.identity()
