"""The MQTT transport: boards publish packets to a broker, bridges take them to ingest and
answer with receipts (bridge.py; docs/operations.md)."""
