# Meter drivers. Each driver's read() returns (import_wh, export_wh, power_w or None) as
# integers, or raises MeterError; identity() names the meter so a swap can be noticed, and
# serial() is its serial number as its bus reports it, or None where the bus gives none.


class MeterError(OSError):
    pass


def make(cfg, board, root="."):
    """The driver for the meter section of a board profile."""
    model = cfg["model"]
    if model in ("sdm120", "sdm630"):
        from meters.sdm import Sdm

        return Sdm(cfg, board)
    if model == "pzem004t":
        from meters.pzem import Pzem

        return Pzem(cfg, board)
    if model == "s0":
        from meters.s0 import S0

        return S0(cfg, board, root)
    raise MeterError("unknown meter model " + model)
