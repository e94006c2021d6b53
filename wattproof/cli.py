"""`wattproof`: serve, demo and sim subcommands (docs list an example for each)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _serve(args: argparse.Namespace) -> int:
    from waitress.server import TcpWSGIServer, create_server

    from verifier import create_app

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    app = create_app({"DATABASE": str(args.db)})
    server = create_server(app, host=args.host, port=args.port, threads=args.threads)
    # The first line names the real port (useful with --port 0).
    if not isinstance(server, TcpWSGIServer):
        raise SystemExit("serve binds exactly one TCP address")
    port = server.getsockname()[1]
    print(f"verifier listening on http://{args.host}:{port}", flush=True)
    server.run()
    return 0


def _sample_packet(args: argparse.Namespace) -> int:
    from hardware import sim

    packet_path, key_path = sim.sample_packet(args.readings, args.out)
    print(f"{packet_path} ({packet_path.stat().st_size} bytes, {args.readings} readings)")
    print(key_path)
    return 0


def _sim_board(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from hardware import sim

    profile = sim.load_profile(args.profile)
    root = args.dir or Path(tempfile.mkdtemp(prefix=f"wattproof-{args.profile}-"))
    device_id = args.device_id or f"virtual-{args.profile}"
    site = sim.Site(profile, root, device_id, args.verifier, speed=args.speed, console=True)
    site.start()
    assert site.console is not None
    print(f"profile    {args.profile}: {profile['description']}")
    print(f"device id  {device_id}")
    print(f"flash      {site.board.flash}")
    print(f"verifier   {args.verifier}")
    print(f"speed      {args.speed:g}x (one reading every {profile.get('interval_s', 60) / args.speed:g} s)")
    print(f"console    {site.console.meter_port}")
    print(f'try        mpremote connect {site.console.meter_port} resume exec "import wattproof; wattproof.status()"')
    print("Ctrl-C stops the board.", flush=True)
    try:
        while site.board.running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        site.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from wattproof import demo

    return demo.run(hours=args.hours, speed=args.speed, workdir=args.workdir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wattproof", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the verifier under a production WSGI server")
    serve.add_argument("--db", type=Path, required=True, help="SQLite database file (created if missing)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    serve.add_argument("--threads", type=int, default=4)
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="a verifier and five virtual boards, end to end, then a summary")
    demo.add_argument("--hours", type=float, default=10, help="simulated hours to measure (default 10)")
    demo.add_argument("--speed", type=float, default=1800, help="simulated seconds per real second (default 1800)")
    demo.add_argument("--workdir", type=Path, help="keep the database and board flash here")
    demo.set_defaults(func=_demo)

    sim = sub.add_parser("sim", help="virtual boards")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    sample = sim_sub.add_parser("sample-packet", help="build one real packet under MicroPython")
    sample.add_argument("--readings", type=int, default=16, help="readings in the packet (1..256)")
    sample.add_argument("--out", type=Path, required=True, help="folder for packet.cbor and device-key.pub.pem")
    sample.set_defaults(func=_sample_packet)
    board = sim_sub.add_parser("board", help="run the firmware on a virtual board with simulated peripherals")
    board.add_argument("--profile", required=True, help="a board profile from hardware/profiles")
    board.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    board.add_argument("--verifier", default="http://127.0.0.1:8080", help="verifier URL")
    board.add_argument("--dir", type=Path, help="folder for the board's flash and peripherals (kept)")
    board.add_argument("--device-id", help="device id (default virtual-PROFILE)")
    board.set_defaults(func=_sim_board)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hardware.sim import SimError

    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except SimError as e:
        print(f"wattproof: {e}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
