"""Gzip input read as a stream that hands over every byte it decoded before it reports damage,
and the one-line words for that damage. Split out of ``tagtree.io.readers``, which opens every
input through it."""

from __future__ import annotations

import gzip
import io
import zlib

GZIP_MAGIC = b"\x1f\x8b"


def is_gunzip(fh) -> bool:
    return isinstance(getattr(fh, "raw", None), Gunzip)


class Gunzip(io.RawIOBase):
    """Streaming gunzip that hands over every byte it decoded before it reports damage.

    ``gzip.GzipFile`` checks the CRC, the trailer and what follows inside the read that decodes
    the last bytes, and raises from it: with a bad CRC or garbage after the stream, the rows of
    that last read (all of them in a small file) never reach the caller. Here the raw deflate
    data is decoded member by member, the header and trailer are checked by hand, and an error
    is raised only once every decoded byte has been read: ``EOFError`` (truncated),
    ``gzip.BadGzipFile`` (bad header, CRC or length; garbage after the stream) or ``zlib.error``
    (corrupt deflate data). Several members one after another and zero padding are read as
    gzip does."""

    _IN = 1 << 16

    def __init__(self, fh):
        self.fh = fh
        self._in = b""
        self._out = b""
        self._error: BaseException | None = None
        self._done = False
        self._d = None  # the member being decoded

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.fh.close()
        super().close()

    def _fill(self, n: int) -> bool:
        """At least ``n`` bytes in the input buffer, or False at the end of the file."""
        while len(self._in) < n:
            more = self.fh.read(self._IN)
            if not more:
                return False
            self._in += more
        return True

    def _start_member(self) -> None:
        if not self._fill(10) or self._in[:2] != GZIP_MAGIC or self._in[2] != 8:
            raise gzip.BadGzipFile(f"Not a gzipped file ({self._in[:2]!r})")
        flags, pos = self._in[3], 10
        if flags & 4:  # FEXTRA
            if not self._fill(pos + 2):
                raise EOFError("truncated gzip header")
            pos += 2 + int.from_bytes(self._in[pos:pos + 2], "little")
        for flag in (8, 16):  # FNAME, FCOMMENT: zero-terminated
            if flags & flag:
                while (end := self._in.find(b"\0", pos)) < 0:
                    if not self._fill(len(self._in) + 1):
                        raise EOFError("truncated gzip header")
                pos = end + 1
        if flags & 2:  # FHCRC
            pos += 2
        if not self._fill(pos):
            raise EOFError("truncated gzip header")
        self._in = self._in[pos:]
        self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        self._crc, self._size = 0, 0

    def _end_member(self) -> None:
        # Everything offered after the stream's end; with max_length CPython leaves the same
        # bytes in unconsumed_tail too, so that is not added again.
        self._in = self._d.unused_data
        if not self._fill(8):
            raise EOFError("the gzip trailer is missing")
        crc, size = (int.from_bytes(self._in[i:i + 4], "little") for i in (0, 4))
        if crc != self._crc:
            raise gzip.BadGzipFile(f"CRC check failed {hex(crc)} != {hex(self._crc)}")
        if size != self._size & 0xFFFFFFFF:
            raise gzip.BadGzipFile("incorrect length of data produced")
        self._in, self._d = self._in[8:], None
        self._in = self._in.lstrip(b"\0")  # zero padding after a member is allowed
        while not self._in:
            more = self.fh.read(self._IN)
            if not more:
                self._done = True
                return
            self._in = more.lstrip(b"\0")

    def _step(self) -> None:
        if self._d is None:
            self._start_member()
            return
        if not self._in and not self._fill(1):
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        data = self._d.decompress(self._in, self._IN)
        self._in = self._d.unconsumed_tail
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._out += data
        if self._d.eof:
            self._end_member()

    def readinto(self, b) -> int:
        while not self._out and not self._done and self._error is None:
            try:
                self._step()
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                self._error = exc
        if not self._out:
            if self._error is not None:
                raise self._error
            return 0
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


# What a damaged gzip raises while it is read: a bad CRC or length, garbage after the stream,
# an early end, a corrupt deflate block.
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def gzip_problem(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, EOFError):
        return "the gzip stream ends early (truncated file)"
    if "Not a gzipped file" in text:
        return f"not gzip data after the end of the compressed stream ({text})"
    return f"corrupt gzip data ({text})"
