# HTTP/1.1 POST of packets to the verifier, over TLS when the URL says https.
# One request per connection keeps the board's state machine trivial.

import socket


class UplinkError(OSError):
    pass


def _split_url(url):
    scheme, _, rest = url.partition("://")
    if scheme not in ("http", "https"):
        raise UplinkError("uplink: unsupported URL " + url)
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80), "/" + path


def _connect(scheme, host, port, timeout):
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    s = socket.socket()
    try:
        s.settimeout(timeout)
        s.connect(addr)
        if scheme == "https":
            import ssl

            return ssl.wrap_socket(s, server_hostname=host)
    except BaseException:
        s.close()
        raise
    return s


def post(url, body, content_type="application/cbor", timeout=10):
    """POSTs body (bytes or memoryview); returns (status, response body bytes)."""
    scheme, host, port, path = _split_url(url)
    s = _connect(scheme, host, port, timeout)
    try:
        s.write(
            (
                "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (path, host, content_type, len(body))
            ).encode()
        )
        s.write(body)
        line = s.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise UplinkError("uplink: bad status line")
        status = int(parts[1])
        length = -1
        while True:
            line = s.readline()
            if not line or line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        answer = s.read(length) if length >= 0 else s.read()
        return status, answer or b""
    finally:
        s.close()
