# Runs under MicroPython: a simulated rooftop meter for the virtual board.
# Registers only grow; household load minus a daylight solar curve decides
# whether energy is imported or exported in each interval.

import reading


class SyntheticMeter:
    def __init__(self, import_wh=1204350, export_wh=880120):
        self.import_wh = import_wh
        self.export_wh = export_wh

    def reading(self, number, ts, interval=60):
        """The encoded reading number taken at ts; number 0 is the boot event."""
        if number == 0:
            return reading.device_event(number, ts, reading.TIME_SYNCHRONISED, reading.EVENT_BOOT, "fw 0.1.0")
        minute = (ts // 60) % 1440
        solar = 0 if minute < 360 or minute > 1080 else (minute - 360) * (1080 - minute) // 40
        load = 250 + (number * 37) % 400
        wh = abs(load - solar) * interval // 3600 + 1
        if solar > load:
            self.export_wh += wh
        else:
            self.import_wh += wh
        return reading.meter_interval(
            number, ts, reading.TIME_SYNCHRONISED, self.import_wh, self.export_wh, load - solar
        )
