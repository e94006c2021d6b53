"""Devices: the enrollment record's rules, their lifecycle (enroll, rotate, revoke), the
ingest checks, their readings and energy."""
