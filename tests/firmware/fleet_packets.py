# Runs under MicroPython: the firmware's own PacketBuilder closes two packets of fifteen
# one-minute meter readings for device argv[2] with the hex key argv[1], from time argv[3]
# and import register argv[4] growing by argv[5] Wh a minute; prints each packet in hex.
# tests/test_fleet.py compares them with hardware/fleet.py's.

import binascii
import sys

import p256
import packet
import reading

key = p256.SigningKey(int(sys.argv[1], 16))
builder = packet.PacketBuilder(sys.argv[2], key, capacity=4096)
ts, register, step = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
number = 0
for _ in range(2):
    for _ in range(15):
        builder.add(reading.meter_interval(number, ts, reading.TIME_SYNCHRONISED, register, 0), ts)
        number += 1
        ts += 60
        register += step
    print(binascii.hexlify(bytes(builder.close())).decode())
