# Runs under MicroPython in a board's flash folder: signs the bytes of the file argv[1]
# with the board's device key (ES256, r || s) and prints the signature in hex. The key
# stays in the board's flash; only the signature leaves, as with mpremote on a real board.

import binascii
import sys

import files
import journal
import p256

key = p256.SigningKey.from_bytes(journal.read_file(files.KEY))
print(binascii.hexlify(key.sign(journal.read_file(sys.argv[1]))).decode())
