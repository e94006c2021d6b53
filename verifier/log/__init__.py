"""The transparency log: Merkle math, signed notes and tiles (pure); the ledger, checkpoints,
witnesses' cosignatures, the static log; the witness."""
