"""The device label: a QR code with the device id and key fingerprint, as SVG (with the
text beside it, for a label printer) and PNG (the code alone)."""

from __future__ import annotations

import io
from pathlib import Path
from xml.sax.saxutils import escape

import segno


def content(device_id: str, fingerprint: str) -> str:
    """What the QR code says: a field app or an auditor looks the device up with it."""
    return f"wattproof:{device_id}?fp=sha256:{fingerprint}"


def write(folder: Path, device_id: str, fingerprint: str) -> tuple[Path, Path]:
    qr = segno.make(content(device_id, fingerprint), error="m")
    png = folder / "label.png"
    qr.save(str(png), scale=8, border=4)
    buf = io.BytesIO()
    qr.save(buf, kind="svg", scale=4, border=4, xmldecl=False, svgns=False)
    size = qr.symbol_size(scale=4, border=4)[0]
    groups = [fingerprint[i : i + 16] for i in range(0, 64, 16)]
    text = [f"<tspan x='{size + 10}' dy='{22 if i else 0}'>{escape(g)}</tspan>" for i, g in enumerate(groups)]
    svg = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{size + 230}' height='{size}'>"
        f"<g>{buf.getvalue().decode()}</g>"
        f"<text x='{size + 10}' y='{size // 2 - 40}' font-family='monospace' font-size='18' font-weight='bold'>"
        f"{escape(device_id)}</text>"
        f"<text x='{size + 10}' y='{size // 2 - 10}' font-family='monospace' font-size='13'>{''.join(text)}</text>"
        "</svg>\n"
    )
    path = folder / "label.svg"
    path.write_text(svg)
    return path, png
