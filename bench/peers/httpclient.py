"""A small HTTP client on the standard library, for loopback only.

One `Http` per load-driving thread. Both systems are driven through this same code, so
client overhead is identical on each side.

Each request opens its own connection (`Connection: close`). Over a kept-alive connection,
Django's runserver (which both Label Studio and Tally-on-SQLite run on) writes a response's
headers and body in two segments; Nagle's algorithm holds the second until the client ACKs
the first, and the client delays that ACK by up to 40 ms. That stall, measured here at
35-40 ms a request, would be the client's artifact, not either system's speed. A new loopback
connection costs about 0.1 ms and starts in quick-ACK mode.
"""

import http.client
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class HttpError(Exception):
    def __init__(self, method: str, path: str, status: int, body: bytes):
        self.status = status
        self.body = body
        super().__init__(f"{method} {path} answered {status}: {body[:300]!r}")


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float
    headers: dict

    def json(self):
        return json.loads(self.body) if self.body else None


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body: fields name -> value, files name -> (filename, bytes, type)."""
    boundary = "bench-" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content, content_type) in files.items():
        parts.append(
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n"
            ).encode()
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Http:
    def __init__(self, base_url: str, *, auth_header: str, timeout: float = 60.0):
        split = urlsplit(base_url)
        if split.scheme != "http" or split.hostname not in LOOPBACK:
            raise ValueError(f"the benchmark only talks to loopback servers, not {base_url!r}")
        self.host = split.hostname
        self.port = split.port or 80
        self.timeout = timeout
        self.auth_header = auth_header
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body=None,
        body: bytes | None = None,
        content_type: str | None = None,
        query: dict | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> Reply:
        """Send one request and read the whole answer; `seconds` is the client-side wall time
        from sending the request to the last byte of the body."""
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {"Authorization": self.auth_header, "Accept": "*/*", "Connection": "close"}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            conn = self._connection()
            start = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A connection dropped before any answer (a server restarting its worker):
                # try once more on a new one. A second failure is real and propagates.
                self.close()
                if attempt == 2:
                    raise
                continue
            seconds = time.perf_counter() - start
            self.close()
            reply = Reply(response.status, data, seconds, dict(response.getheaders()))
            if response.status not in expect:
                raise HttpError(method, path, response.status, data)
            return reply
        raise AssertionError("unreachable")
