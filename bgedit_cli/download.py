"""Downloads that verify before anything is put in place: what `bgedit weights fetch` and `bgedit data fetch` run.

    fetch_url(url, dest, expected=Expected("sha256", "7be5be79", "..."), manual_hint="...", progress=cb)
    install_file(src, dest, expected, ...)      # --from FILE: verify a file obtained elsewhere, copy it into place

`fetch_url` streams to `.<name>.part` beside `dest` (same folder, so the final rename is atomic and a later run
finds the partial file to resume it), then checks the received size against the server's, hashes the file and
compares the digest with the published one, runs an optional extra check (a zip's CRCs), and only then renames it
to `dest`. A partial file is resumed with an HTTP `Range` request; a server that ignores `Range` (answers 200)
sends the whole file again. Connection errors, timeouts, responses cut short and 5xx/408/429 answers are retried
with exponential backoff (`RETRY`), continuing from the bytes already received. Every failure is a `DownloadError`
with a one-line message saying what to do: a 404 names the URL and the manual route, a hash mismatch removes the
file and prints both digests, an unreachable host says to download by hand and install with `--from`, a full disk
says how much room is needed. `dest` is never half-written: it either keeps its old state or holds a verified file.

Library choice: `urllib.request` from the standard library. `torch.hub.download_url_to_file` also streams to a
temp file beside the destination and checks a SHA-256 prefix, but it cannot resume (its temp name is random and
it never sends `Range`), does not retry, checks only SHA-256 prefixes (MoCo publishes an MD5, the ADE20K digest
is a SHA-1) and draws a tqdm bar; `requests` is not a dependency and would bring nothing urllib lacks here.
urllib follows redirects (GitHub release assets redirect) and keeps the `Range` header across them; it also
reads `file://` URLs, so `--mirror file:///shared/weights` works for a cluster's shared folder.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.client
import os
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from bgedit_cli import __version__
from bgedit_cli.errors import BgeditError, InputError

# progress(description, done, total): bytes received (or entries unpacked) so far, and the total if known.
Progress = Callable[[str, int, "int | None"], None]

CHUNK = 1 << 20
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class DownloadError(BgeditError):
    """A download or install failed; nothing was put at the destination."""


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries per file; the wait before try k (k >= 2) is `base_delay_s * 2**(k-2)`, at most `max_delay_s`."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    timeout_s: float = 60.0  # per socket operation (connect, each read)

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempt - 2))


RETRY = RetryPolicy()


@dataclasses.dataclass(frozen=True)
class Expected:
    """The published digest of a file: `digest` is a full hex digest or its prefix, of hashlib algorithm `algo`."""

    algo: str
    digest: str

    def matches(self, digest: str) -> bool:
        return digest.lower().startswith(self.digest.lower())

    @property
    def label(self) -> str:
        return f"{self.algo}:{self.digest}"


def file_digest(path: Path, algo: str, progress: Progress | None = None) -> str:
    """Hex digest of a file (1 MiB reads); `progress("verifying", done, total)` after each read."""
    h = hashlib.new(algo)
    total, done = path.stat().st_size, 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress("verifying", done, total)
    return h.hexdigest()


def part_path(dest: Path) -> Path:
    """The partial download beside `dest` (hidden; kept between runs so that the next one resumes it)."""
    return dest.parent / f".{dest.name}.part"


def mirror_url(mirror: str, file_name: str) -> str:
    """The URL of `file_name` on a mirror: a base URL serving the publishers' file names."""
    return mirror.rstrip("/") + "/" + urllib.parse.quote(file_name)


# ----------------------------------------------------------------------------------------------------------
# Download.


class _Retry(Exception):
    """A transient failure (connection, timeout, short body, 5xx): try again from the bytes already received."""


def fetch_url(url: str, dest: Path, expected: Expected | None, *, manual_hint: str,
              check: Callable[[Path], None] | None = None, progress: Progress | None = None,
              retry: RetryPolicy | None = None) -> str:
    """Download `url` to `dest` (module docstring) and return the file's digest (of `expected.algo`, or sha256).

    `expected` None means no digest is published: the size and `check` are then all that is verified (the caller
    says so). `manual_hint` ends the unreachable/404 messages, e.g. "download it by hand and run `bgedit weights
    fetch moco --from FILE`". `check(path)` raises a BgeditError for a file that is complete but unusable.
    """
    retry = retry or RETRY
    dest = Path(dest)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https", "file"):
        raise InputError(f"{url}: not an http://, https:// or file:// URL.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    algo = expected.algo if expected is not None else "sha256"
    restarted = False
    while True:
        resumed_from = part.stat().st_size if part.exists() else 0
        _download(url, part, manual_hint=manual_hint, progress=progress, retry=retry)
        digest = file_digest(part, algo, progress)
        if expected is None or expected.matches(digest):
            break
        part.unlink(missing_ok=True)
        if resumed_from and not restarted:  # the old partial file may come from another version of the file
            restarted = True
            continue
        raise DownloadError(f"{url}: hash mismatch: expected {expected.label}, got {algo}:{digest}; the "
                            f"download was removed. The server (or mirror) sends another file; {manual_hint}.")
    if check is not None:
        try:
            check(part)
        except BgeditError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return digest


def _download(url: str, part: Path, *, manual_hint: str, progress: Progress | None, retry: RetryPolicy) -> None:
    """Bring `part` to the complete file, resuming and retrying (module docstring)."""
    host = urllib.parse.urlsplit(url).hostname or url
    last = ""
    for attempt in range(1, retry.attempts + 1):
        if attempt > 1:
            time.sleep(retry.delay(attempt))
        try:
            _transfer(url, part, progress=progress, timeout=retry.timeout_s)
            return
        except _Retry as exc:
            last = str(exc)
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRY_STATUS:
                raise DownloadError(_http_message(url, exc.code, exc.reason, manual_hint)) from None
            last = f"HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError):  # a file:// mirror without the file
                raise DownloadError(f"{url}: no such file on the mirror; {manual_hint}.") from None
            last = f"cannot reach {host} ({exc.reason})"
        except (http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as exc:
            last = f"connection to {host} lost ({type(exc).__name__}: {exc})"
    got = part.stat().st_size if part.exists() else 0
    if last.startswith("cannot reach") and not got:
        raise DownloadError(f"{last} after {retry.attempts} tries; {manual_hint} (URL: {url}).")
    kept = f" {got} bytes are kept in {part}; run the command again to resume." if got else ""
    raise DownloadError(f"{url}: gave up after {retry.attempts} tries, last: {last}.{kept} Or {manual_hint}.")


def _transfer(url: str, part: Path, *, progress: Progress | None, timeout: float) -> None:
    """One request: append to `part` from its current size (206) or rewrite it (200); _Retry if cut short."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"bgedit/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the partial file is (at least) complete
            return
        raise
    with response:
        status = getattr(response, "status", None) or 200
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if offset and status == 206 and _range_start(response.headers.get("Content-Range")) == offset:
            mode, done = "ab", offset
            total = offset + length if length is not None else None
        else:  # no Range asked, or the server ignored it: the whole file again
            mode, done, total = "wb", 0, length
        ensure_space(part.parent, (total - done) if total is not None else None)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except http.client.IncompleteRead as exc:
                        f.write(exc.partial)
                        raise _Retry(f"connection closed after {done + len(exc.partial)} of {total} bytes") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress("downloading", done, total)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                part.unlink(missing_ok=True)
                raise disk_full(part, total) from None
            raise
    if total is not None and done < total:
        raise _Retry(f"connection closed after {done} of {total} bytes")
    if total is not None and done > total:
        part.unlink(missing_ok=True)
        raise _Retry(f"received {done} bytes, more than the {total} announced")


def _range_start(content_range: str | None) -> int | None:
    """`bytes 100-999/1000` -> 100."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    start = content_range[6:].split("-", 1)[0]
    return int(start) if start.isdigit() else None


def _http_message(url: str, code: int, reason: str, manual_hint: str) -> str:
    if code == 404:
        return (f"{url}: 404 Not Found (the server, or the --mirror, does not have this file); {manual_hint}.")
    if code in (401, 403):
        return f"{url}: {code} {reason} (access refused); {manual_hint}."
    return f"{url}: HTTP {code} {reason}; {manual_hint}."


def ensure_space(folder: Path, needed: int | None) -> None:
    """A DownloadError before writing `needed` bytes into `folder` if the disk has less room."""
    if needed is None:
        return
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(f"not enough disk space in {folder}: {_mb(needed)} needed, {_mb(free)} free. "
                            "Free some space (or pick another folder) and run the command again.")


def disk_full(path: Path, total: int | None) -> DownloadError:
    """The error for ENOSPC while writing `path` (which the caller removes)."""
    need = f" ({_mb(total)} needed)" if total else ""
    return DownloadError(f"disk full while writing {path.parent}{need}; the partial file was removed. Free some "
                         "space (or pick another folder) and run the command again.")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


# ----------------------------------------------------------------------------------------------------------
# Install a file obtained elsewhere.


def install_file(src: Path, dest: Path, expected: Expected | None, *, check: Callable[[Path], None] | None = None,
                 progress: Progress | None = None) -> str:
    """Copy `src` to a temp file beside `dest`, verify the copy (digest, then `check`), rename it into place;
    return the digest. A mismatch leaves `dest` as it was."""
    src, dest = Path(src).expanduser(), Path(dest)
    if not src.is_file():
        raise InputError(f"--from {src}: no such file.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.install"
    algo = expected.algo if expected is not None else "sha256"
    try:
        ensure_space(tmp.parent, src.stat().st_size)
        try:
            shutil.copyfile(src, tmp)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(tmp, src.stat().st_size) from None
            raise
        digest = file_digest(tmp, algo, progress)
        if expected is not None and not expected.matches(digest):
            raise DownloadError(f"--from {src}: hash mismatch: expected {expected.label}, got {algo}:{digest}; "
                                "nothing was installed. Is it the right file (and complete)?")
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest
