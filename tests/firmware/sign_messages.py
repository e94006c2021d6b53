# Runs under MicroPython: signs each message (one hex line of the file argv[2]) with
# the hex key argv[1]; prints one hex signature (r || s) per line. Messages come in a
# file because the unix port aborts on command-line arguments of a few hundred bytes.

import binascii
import sys

import p256

key = p256.SigningKey(int(sys.argv[1], 16))
with open(sys.argv[2]) as f:
    for line in f:
        print(binascii.hexlify(key.sign(binascii.unhexlify(line.strip()))).decode())
