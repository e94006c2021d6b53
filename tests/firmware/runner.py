# Runs under MicroPython: executes every test_* function of one test module.
#
#   micropython runner.py MODULE
#
# Prints "PASS name" or "FAIL name" with the traceback, then a closing line
# "N passed, M failed"; exits 1 when anything failed.

import gc
import sys


def main(argv):
    module = __import__(argv[1])
    # Say where the firmware came from, so a run of compiled .mpy files can be told apart.
    for name, mod in sorted(sys.modules.items()):
        origin = getattr(mod, "__file__", None)
        if origin and not name.startswith("test_") and name != "runner":
            print("FIRMWARE", name, origin)
    names = sorted(n for n in dir(module) if n.startswith("test_"))
    passed = failed = 0
    for name in names:
        gc.collect()
        try:
            getattr(module, name)()
            passed += 1
            print("PASS", name)
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print("FAIL", name)
            sys.print_exception(e)
    print("%s: %d passed, %d failed" % (argv[1], passed, failed))
    sys.exit(1 if failed or not passed else 0)


main(sys.argv)
