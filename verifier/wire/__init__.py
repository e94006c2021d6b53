"""The wire formats, pure: strict CBOR, COSE keys and signatures, the packet, the problem types, times."""
