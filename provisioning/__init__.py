"""Technician tooling: enrolling devices with the verifier (and, next, flashing and keying boards)."""
