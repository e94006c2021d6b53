"""The wattproof verifier: checks device packets and keeps the authoritative ledger.

A package per area, on floors (tests/test_layout.py): wire/ (pure formats), storage/, log/,
devices/, certificates/, communities/, charging/, provenance/, audit/, then the transports
http/ and web/, put together by app.py (its factory: verifier.app.create_app). The pure
modules (wire/, the log's mathematics and notes, provenance/checks.py) import neither Flask
nor a database driver: an auditor's `wattproof verify` needs only them."""
