"""The wattproof verifier: checks device packets and keeps the authoritative ledger.

A library first: packet decoding, Merkle trees, signed notes, COSE and the profile's CBOR
import neither Flask nor a database driver. The HTTP service is verifier/http/ (its app
factory: verifier.app.create_app); storage is verifier/storage/ (SQLite and PostgreSQL backends)."""
