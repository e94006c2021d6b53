# Runs under MicroPython: for each case (one line of the file argv[2]: device id, stop
# number, token hash hex or "-", then begin and end as ts quality wh), builds the OCMF
# payload the charger signs and signs it with the hex key argv[1]; prints the payload
# and the DER signature in hex, then the milliseconds and heap bytes the signing took.

import binascii
import gc
import sys
import time

import ocmf
import p256

key = p256.SigningKey(int(sys.argv[1], 16))
with open(sys.argv[2]) as f:
    for line in f:
        w = line.split()
        token = None if w[2] == "-" else binascii.unhexlify(w[2])
        n = [int(x) for x in w[3:]]
        gc.collect()
        free = gc.mem_free()
        t0 = time.ticks_ms()
        text = ocmf.payload(w[0], int(w[1]), token, n[0:3], n[3:6])
        der = ocmf.sign(key, text)
        ms = time.ticks_diff(time.ticks_ms(), t0)
        used = free - gc.mem_free()
        print(text)
        print(binascii.hexlify(der).decode(), ms, used)
