"""Serving a video file with HTTP ``Range`` support, from a fixed snapshot of its size.

Browsers seek in a ``<video>`` with ``Range: bytes=a-b`` requests and will not seek at all without
``Accept-Ranges: bytes``. The size is read once from the opened file, and exactly that many bytes
are sent: the preview grows while a job runs, and a body longer than its ``Content-Length`` would
break the connection.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from starlette.responses import Response, StreamingResponse

CHUNK = 256 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiable(Exception):
    """A ``Range`` header that names no byte of the file (answered with 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte span a ``Range`` header asks for, or None for the whole file.

    One range only (``a-b``, ``a-``, ``-n``): a video player never asks for more, and a multi-range
    header is answered with the whole file, which RFC 9110 allows.
    """
    if header is None:
        return None
    if "," in header:
        return None
    match = _RANGE.match(header)
    if match is None or (not match.group(1) and not match.group(2)):
        raise RangeNotSatisfiable(header)
    first, last = match.group(1), match.group(2)
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(header)
    return start, end


def file_response(path: Path, range_header: str | None, media_type: str = "video/mp4", *, method: str = "GET") -> Response:
    """``path`` as a 200, or the asked span as a 206; 416 with ``Content-Range: bytes */size`` when unsatisfiable."""
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    try:
        span = parse_range(range_header, size)
    except RangeNotSatisfiable:
        os.close(fd)
        return Response(
            content=b'{"error":"range not satisfiable"}', status_code=416, media_type="application/json",
            headers={**headers, "Content-Range": f"bytes */{size}"},
        )
    start, end = (0, size - 1) if span is None else span
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if method == "HEAD":
        os.close(fd)
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(_read_span(fd, start, length), status_code=status, headers=headers, media_type=media_type)


async def _read_span(fd: int, start: int, length: int) -> AsyncIterator[bytes]:
    """``length`` bytes from ``start`` of an open file, read off the event loop; closes the file."""
    try:
        done = 0
        while done < length:
            block = await anyio.to_thread.run_sync(os.pread, fd, min(CHUNK, length - done), start + done)
            if not block:  # the file shrank (replaced under us): stop rather than send garbage
                break
            done += len(block)
            yield block
    finally:
        os.close(fd)
