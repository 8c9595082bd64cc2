"""A request whose body limit holds for chunked bodies too: over MAX_BODY_BYTES is 413, never a cut body.

Werkzeug enforces MAX_CONTENT_LENGTH on a body without Content-Length (gunicorn passes chunked bodies so,
with wsgi.input_terminated) by reading at most that many bytes and stopping there: a larger body came out
cut at the limit, and its JSON failed to parse (400 malformed_payload). Reading one byte past the limit
tells a body that ends exactly there from one that goes on.
"""

from __future__ import annotations

from typing import IO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


class _CappedStream(LimitedStream):
    """Passes at most `maximum` bytes; the byte after them raises RequestEntityTooLarge."""

    def __init__(self, stream: IO[bytes], maximum: int):
        super().__init__(stream, maximum + 1, is_max=True)
        self.maximum = maximum

    def readinto(self, buffer) -> int:
        count = super().readinto(buffer)
        if self.tell() > self.maximum:
            raise RequestEntityTooLarge()
        return count


class BoundedRequest(Request):
    @cached_property
    def stream(self) -> IO[bytes]:
        maximum = self.max_content_length
        if maximum is not None and self.content_length is None and "wsgi.input_terminated" in self.environ:
            return _CappedStream(self.environ["wsgi.input"], maximum)
        return super().stream
