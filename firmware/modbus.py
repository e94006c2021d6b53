# Modbus RTU master: read input (0x04) and holding (0x03) registers over a half-duplex
# port from board.uart(), with CRC-16 checks, a response timeout and retries.

import time

from micropython import const

READ_HOLDING = const(0x03)
READ_INPUT = const(0x04)


class ModbusError(OSError):
    pass


def crc16(data):
    """Modbus CRC-16 (polynomial 0xA001, initial 0xFFFF)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(body):
    crc = crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


class Master:
    def __init__(self, port, timeout_ms=300, retries=2):
        self.port = port
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.errors = 0  # failed attempts since boot, for status()

    def read(self, address, function, register, count):
        """The 2*count data bytes of registers register..register+count-1 at address."""
        request = frame(bytes((address, function, register >> 8, register & 0xFF, count >> 8, count & 0xFF)))
        expected = 5 + 2 * count
        problem = "no answer"
        for _ in range(self.retries + 1):
            time.sleep_ms(5)  # at least 3.5 character times of silence between frames
            try:
                self.port.write(request)
                answer = self.port.read(expected, self.timeout_ms)
            except OSError as e:  # the UART itself failed: the bus is gone, not one frame
                raise ModbusError("modbus: bus error: %s" % e)
            problem = self._check(answer, address, function, count)
            if problem is None:
                return answer[3:-2]
            self.errors += 1
            if problem.startswith("exception"):
                break  # the meter answered: asking again gets the same answer
            self.port.read(256, 20)  # drain whatever half frame is left before retrying
        raise ModbusError("modbus: address %d register 0x%04x: %s" % (address, register, problem))

    @staticmethod
    def _check(answer, address, function, count):
        if not answer:
            return "no answer"
        if len(answer) == 5 and answer[1] == function | 0x80 and crc16(answer[:3]) == answer[3] | answer[4] << 8:
            return "exception code %d" % answer[2]
        if len(answer) < 5 + 2 * count:
            return "short answer (%d bytes)" % len(answer)
        if crc16(answer[:-2]) != answer[-2] | answer[-1] << 8:
            return "CRC error"
        if answer[0] != address or answer[1] != function or answer[2] != 2 * count:
            return "answer for another request"
        return None
