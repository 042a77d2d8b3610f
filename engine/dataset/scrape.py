"""A resumable GitHub scraper for .blend files: the first step from "materials on GitHub" to training rows.

Why each piece is the way it is:

- **Only the REST API, only urllib.** Code search (``GET {api}/search/code``, paged by the ``Link``
  header), the contents API for ``size`` and ``download_url`` (so an oversized file is skipped before a
  single byte of it is fetched), the repo API for licence and stars, and the bytes from ``download_url``.
  ``--api-url`` points the same code at GitHub Enterprise or at a test's loopback stand-in.
- **Rate limits are obeyed, not probed.** A 403/429 carrying ``X-RateLimit-Remaining: 0`` +
  ``X-RateLimit-Reset`` or ``Retry-After`` (and a success that says ``Remaining: 0``) sets a "no request
  before" time that is written to the checkpoint *before* waiting, so a process killed while it waits and
  started again waits too. Transient failures (5xx, a dropped connection, a timeout) are retried with a
  bounded exponential backoff.
- **kill -9 at any instant loses at most the file in flight.** ``DIR/checkpoint.json`` (queries, the page
  cursor, the queue of hits, every file's outcome) is rewritten atomically after each page and each file.
  A download streams into a ``.*.tmp`` file that the next run deletes; a file is *finished* once its bytes
  sit at their final name, and the checkpoint notes the intent before that rename, so a kill between the
  rename and the checkpoint still never downloads it again.
- **Content-addressed storage** (``DIR/files/<sha256[:2]>/<sha256>.blend``, the bytes exactly as served,
  compressed or not — Blender opens all three forms) makes "the same bytes from two repositories" one
  file by construction; ``metadata.jsonl`` lists every source of it.
"""
from __future__ import annotations

import email.utils
import errno
import gzip
import hashlib
import http.client
import io
import json
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from dsl.errors import BpllmError
from engine.atomic import TMP_SUFFIX, atomic_write_json, atomic_write_jsonl, clean_temp_files, read_json

DEFAULT_API = "https://api.github.com"
CHECKPOINT = "checkpoint.json"
METADATA = "metadata.jsonl"
SKIPPED = "skipped.jsonl"
LOCK = ".scrape.lock"
CHECKPOINT_VERSION = 1

BLEND_MAGIC = b"BLENDER"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

USER_AGENT = "bpllm-scrape/1 (+https://github.com)"
CHUNK = 64 * 1024
RESET_MARGIN_S = 0.25       # wait this much past a reset: the server's clock rounds, ours must not be early
DEFAULT_WAIT_S = 60.0       # a 429 / "secondary rate limit" 403 that names no time
MAX_REFUSALS = 30           # consecutive rate-limit refusals of one request before giving up on it
UNAUTH_NOTICE = ("bpllm scrape: no GITHUB_TOKEN set: requests are unauthenticated (api.github.com allows 60 an "
                 "hour and refuses code search without a token); export GITHUB_TOKEN=<token> for 5,000 an hour")


class ScrapeError(BpllmError):
    """A scrape that cannot go on (bad arguments, a search that keeps failing, DIR in use)."""


class HttpFailure(Exception):
    """A request that failed for good: ``status`` (None for a network error) and whether it was transient."""

    def __init__(self, url: str, status: int | None, message: str, transient: bool) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.status = status
        self.transient = transient


# --------------------------------------------------------------------------------------------- sniffing

def sniff_blend(path: Path) -> tuple[str | None, str]:
    """``(compression, detail)`` for a .blend file — ``"none"``, ``"gzip"`` or ``"zstd"`` — or ``(None, why)``.

    Only the first bytes are decompressed: a compressed form counts when its payload starts with ``BLENDER``.
    """
    with open(path, "rb") as fh:
        head = fh.read(16)
        if head.startswith(BLEND_MAGIC):
            return "none", "none"
        if head.startswith(GZIP_MAGIC):
            fh.seek(0)
            try:
                start = gzip.GzipFile(fileobj=fh).read(len(BLEND_MAGIC))
            except (OSError, EOFError, ValueError) as exc:  # not a gzip stream after all
                return None, f"gzip data that does not decompress ({exc})"
            if start == BLEND_MAGIC:
                return "gzip", "gzip"
            return None, f"gzip data that starts with {start!r}, not {BLEND_MAGIC!r}"
        if head.startswith(ZSTD_MAGIC):
            fh.seek(0)
            start = _zstd_start(fh, len(BLEND_MAGIC))
            if start is None:
                return "zstd", "zstd (not verified: no zstd decoder; `pip install zstandard`)"
            if start == BLEND_MAGIC:
                return "zstd", "zstd"
            return None, f"zstd data that starts with {start!r}, not {BLEND_MAGIC!r}"
    return None, f"starts with {head[:8]!r}, not a .blend header (BLENDER, gzip or zstd)"


def _zstd_start(fh: io.BufferedIOBase, n: int) -> bytes | None:
    """The first ``n`` decompressed bytes of a zstd stream, or None without a decoder.

    Python 3.14 has ``compression.zstd``; before it the ``zstandard`` package (installed with bpy) is
    imported lazily here, and only here.
    """
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14

        try:
            with zstd.ZstdFile(fh) as zf:
                return zf.read(n)
        except (OSError, EOFError, zstd.ZstdError) as exc:
            return f"<undecodable: {exc}>".encode()
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        return None
    try:
        return zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read(n)
    except zstandard.ZstdError as exc:
        return f"<undecodable: {exc}>".encode()


def git_blob_sha(path: Path) -> str:
    """Git's object id of a file's bytes: GitHub's ``sha``, so a served ``sha`` can be checked."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- HTTP

def parse_link_next(header: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header (RFC 8288), or None on the last page."""
    for part in (header or "").split(","):
        m = re.match(r'\s*<([^>]*)>\s*;(.*)', part)
        if m and re.search(r'rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?', m.group(2)):
            return m.group(1)
    return None


def rate_limit_until(status: int, headers: Any, body: bytes, now: float) -> float | None:
    """The epoch time before which no request may go, when a response is a rate-limit refusal."""
    retry_after = (headers.get("Retry-After") or "").strip()
    remaining = (headers.get("X-RateLimit-Remaining") or "").strip()
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if status not in (403, 429) and not (retry_after and status == 503):
        return None
    times = []
    if retry_after:
        try:
            times.append(now + max(0.0, float(retry_after)))
        except ValueError:
            try:
                times.append(email.utils.parsedate_to_datetime(retry_after).timestamp())
            except (TypeError, ValueError):
                times.append(now + DEFAULT_WAIT_S)
    if remaining == "0" or (reset and not remaining):  # a reset time without a count still names the wait
        try:
            times.append(float(reset))
        except ValueError:
            times.append(now + DEFAULT_WAIT_S)
    if not times and (status == 429 or b"rate limit" in body.lower()):
        times.append(now + DEFAULT_WAIT_S)  # GitHub's secondary limit: "wait at least a minute"
    return max(times) if times else None


TRANSIENT_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException)


@dataclass
class Http:
    """One client for every request: headers, rate-limit waits and retries live here and nowhere else.

    ``hold(t)`` is called with a "no request before" time before any wait starts (the scraper persists
    it); ``wait(t)`` does the waiting (a countdown).
    """

    api: str
    token: str | None
    hold: Callable[[float], None]
    wait: Callable[[float], None]
    note: Callable[[str], None]
    not_before: float = 0.0
    retries: int = 5
    backoff_s: float = 0.5
    backoff_cap_s: float = 30.0
    timeout_s: float = 60.0
    requests: int = 0
    sleep: Callable[[float], None] = time.sleep
    _api_host: str = field(init=False)

    def __post_init__(self) -> None:
        self._api_host = urllib.parse.urlsplit(self.api).netloc

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        # the token goes to the API's own host only, never to wherever a download_url points
        if self.token and urllib.parse.urlsplit(url).netloc == self._api_host:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def set_not_before(self, t: float) -> None:
        if t > self.not_before:
            self.not_before = t
            self.hold(t)

    def get(self, url: str, consume: Callable[[Any], Any]) -> Any:
        """GET ``url`` and return ``consume(response)``; raises :class:`HttpFailure` when it gives up."""
        attempt = refusals = 0
        while True:
            if time.time() < self.not_before + RESET_MARGIN_S:
                self.wait(self.not_before + RESET_MARGIN_S)
            self.requests += 1
            try:
                resp = urllib.request.urlopen(urllib.request.Request(url, headers=self._headers(url)),
                                              timeout=self.timeout_s)
            except urllib.error.HTTPError as err:
                try:
                    body = err.read()
                except (OSError, http.client.HTTPException):
                    body = b""
                until = rate_limit_until(err.code, err.headers, body, time.time())
                if until is not None:
                    refusals += 1
                    if refusals > MAX_REFUSALS:
                        raise HttpFailure(url, err.code, f"still rate limited after {MAX_REFUSALS} waits",
                                          transient=True) from None
                    self.set_not_before(max(until, time.time() + 1.0))
                    continue
                if err.code < 500 and err.code != 408:
                    raise HttpFailure(url, err.code, f"HTTP {err.code} {_message(body) or err.reason}",
                                      transient=False) from None
                problem = f"HTTP {err.code}"
            except TRANSIENT_ERRORS as exc:
                problem = _network_problem(exc)
            else:
                with resp:
                    self._watch_remaining(resp.headers)
                    try:
                        return consume(resp)
                    except TRANSIENT_ERRORS as exc:
                        problem = _network_problem(exc)
            attempt += 1
            if attempt > self.retries:
                raise HttpFailure(url, None, f"{problem} (gave up after {self.retries} retries)", transient=True)
            delay = min(self.backoff_cap_s, self.backoff_s * 2 ** (attempt - 1))
            self.note(f"{problem} on {_short(url)}: retry {attempt}/{self.retries} in {delay:g}s")
            self.sleep(delay)

    def _watch_remaining(self, headers: Any) -> None:
        """A success that spends the last request of the window: the next one waits for the reset."""
        if (headers.get("X-RateLimit-Remaining") or "").strip() == "0":
            try:
                reset = float(headers.get("X-RateLimit-Reset") or "")
            except ValueError:
                return
            if reset > time.time():
                self.set_not_before(reset)

    def get_json(self, url: str) -> tuple[Any, Any]:
        """``(parsed body, headers)``; a body that is not JSON is a permanent failure."""
        def consume(resp: Any) -> tuple[Any, Any]:
            raw = resp.read()
            try:
                return json.loads(raw.decode("utf-8") or "null"), resp.headers
            except ValueError as exc:
                raise HttpFailure(url, resp.status, f"not JSON ({exc})", transient=False) from None
        return self.get(url, consume)


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body.decode("utf-8")).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return ""


def _network_problem(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


def _short(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


# --------------------------------------------------------------------------------------------- progress

class Progress:
    """Pages, files and bytes on stderr: one updating bar on a terminal, a plain line every few seconds
    otherwise (a log file should not fill with carriage returns)."""

    def __init__(self, stream: TextIO, every_s: float = 5.0) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every_s = every_s
        self._last = 0.0
        self._shown = False

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False

    def line(self, text: str) -> None:
        """A message that stays (a rejection, a retry): printed above the bar."""
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def due(self, force: bool = False) -> bool:
        """Whether a bar update would show now (callers skip building the text otherwise)."""
        return force or time.monotonic() - self._last >= (0.1 if self.tty else self.every_s)

    def bar(self, text: str, fraction: float | None, force: bool = False) -> None:
        now = time.monotonic()
        if not self.due(force):
            return
        if self.tty:
            width = 24
            if fraction is None:
                gauge = ""
            else:
                filled = int(width * max(0.0, min(1.0, fraction)))
                gauge = "[" + "#" * filled + "." * (width - filled) + "] "
            self.stream.write("\r\x1b[K" + gauge + text)
            self._shown = True
        else:
            self.stream.write(text + "\n")
        self._last = now
        self.stream.flush()

    def countdown(self, until: float, why: str) -> None:
        """Sleep until ``until`` (epoch), showing the time left: the one place the scraper waits long."""
        stamp = time.strftime("%H:%M:%S", time.localtime(until))
        last_plain = 0.0
        while True:
            left = until - time.time()
            if left <= 0:
                break
            text = f"{why}: waiting {_clock(left)} until {stamp}; no request before then"
            if self.tty:
                self.stream.write("\r\x1b[K" + text)
                self._shown = True
                self.stream.flush()
            elif time.monotonic() - last_plain >= 15.0 or not last_plain:
                self.stream.write(text + "\n")
                self.stream.flush()
                last_plain = time.monotonic()
            time.sleep(min(1.0, max(0.0, left)))
        self._clear()

    def done(self) -> None:
        self._clear()


def _clock(seconds: float) -> str:
    s = int(seconds + 0.999)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# --------------------------------------------------------------------------------------------- the scraper

@dataclass
class Options:
    query: str
    out: Path
    api: str = DEFAULT_API
    max_files: int | None = None
    max_size_mb: float | None = None
    min_stars: int = 0
    per_page: int = 100
    token: str | None = None


def blob_relpath(sha256: str) -> str:
    """Where a file's bytes live under DIR: content-addressed, two-level so no folder grows huge."""
    return f"files/{sha256[:2]}/{sha256}.blend"


def item_key(repository: str, path: str) -> str:
    return f"{repository}/{path}"


def _new_state(api: str) -> dict[str, Any]:
    return {"version": CHECKPOINT_VERSION, "api": api, "queries": {}, "queue": [], "items": {}, "files": {},
            "repos": {}, "pending": {}, "not_before": 0.0, "pages": 0, "requests": 0, "bytes": 0}


class Scraper:
    """One run over DIR: load the checkpoint, finish what is queued, page the search, save after each step."""

    def __init__(self, opts: Options, stderr: TextIO | None = None) -> None:
        self.opts = opts
        self.out = Path(opts.out)
        self.progress = Progress(stderr or sys.stderr)
        self.state: dict[str, Any] = _new_state(opts.api)
        self.http = Http(api=opts.api, token=opts.token, hold=self._hold, wait=self._wait, note=self.progress.line)
        self.run_counts = {"pages": 0, "downloads": 0, "bytes": 0}
        self.stop_reason = ""

    # -- checkpoint ---------------------------------------------------------------------------------
    def _load(self) -> None:
        path = self.out / CHECKPOINT
        try:
            state = read_json(path)
        except ValueError as exc:
            raise ScrapeError(f"{path}: the checkpoint is not valid JSON ({exc})",
                              "move it away to start over, or restore it") from None
        if state is None:
            return
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise ScrapeError(f"{path}: not a bpllm scrape checkpoint (version {CHECKPOINT_VERSION})",
                              "point --out at a new folder")
        for key, value in _new_state(self.opts.api).items():
            state.setdefault(key, value)
        self.state = state
        self.http.not_before = float(state.get("not_before") or 0.0)

    def save(self) -> None:
        self.state["requests"] = self.state.get("requests_before", 0) + self.http.requests
        atomic_write_json(self.out / CHECKPOINT, {k: v for k, v in self.state.items() if k != "requests_before"},
                          indent=None)

    def _write_reports(self) -> None:
        """metadata.jsonl (a row per stored file, every source in it) and skipped.jsonl, from the checkpoint."""
        rows = []
        for sha256, f in self.state["files"].items():
            first = f["sources"][0]
            rows.append({"file": f["file"], "sha256": sha256, "bytes": f["bytes"], "compression": f["compression"],
                         **{k: first.get(k) for k in ("repository", "path", "ref", "sha", "size", "licence",
                                                      "stars", "html_url")},
                         "sources": f["sources"]})
        atomic_write_jsonl(self.out / METADATA, rows)
        skipped = [{"repository": it.get("repository"), "path": it.get("path"), "status": it["status"],
                    "reason": it.get("reason", "")}
                   for it in self.state["items"].values() if it["status"] not in ("stored", "duplicate")]
        atomic_write_jsonl(self.out / SKIPPED, skipped)

    def _hold(self, t: float) -> None:
        self.state["not_before"] = t
        self.save()  # before the wait starts: a process killed while waiting must wait again when restarted

    def _wait(self, until: float) -> None:
        self.progress.countdown(until, "rate limited")

    # -- run ----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        lock = _lock(self.out)
        try:
            return self._run()
        finally:
            self.progress.done()
            os.close(lock)

    def _run(self) -> dict[str, Any]:
        clean_temp_files(self.out)  # half-written downloads and checkpoints of a killed run
        self._load()
        self.state["requests_before"] = self.state.get("requests", 0)
        self._recover_pending()
        # files that failed transiently last time get another go
        for key, item in list(self.state["items"].items()):
            if item["status"] == "failed":
                del self.state["items"][key]
                if not any(q["key"] == key for q in self.state["queue"]):
                    self.state["queue"].append(item["hit"])
        q = self.state["queries"].setdefault(self.opts.query, {
            "next_url": self._search_url(), "pages_done": 0, "finished": False, "total_count": None})
        if time.time() < self.http.not_before + RESET_MARGIN_S:
            self.progress.line(f"bpllm scrape: the last run was rate limited until "
                               f"{time.strftime('%H:%M:%S', time.localtime(self.http.not_before))}; waiting")
        self.save()
        self._write_reports()
        while True:
            if self._full():
                self.stop_reason = f"--max-files {self.opts.max_files} reached"
                break
            if self.state["queue"]:
                self._process(self.state["queue"][0])
                continue
            if q["finished"] or not q["next_url"]:
                q["finished"] = True
                break
            self._fetch_page(q)
        self.save()
        self._write_reports()
        return self.summary()

    def _full(self) -> bool:
        return self.opts.max_files is not None and len(self.state["files"]) >= self.opts.max_files

    def _search_url(self) -> str:
        query = urllib.parse.urlencode({"q": self.opts.query, "per_page": self.opts.per_page, "page": 1})
        return f"{self.opts.api.rstrip('/')}/search/code?{query}"

    def _fetch_page(self, q: dict[str, Any]) -> None:
        url = q["next_url"]
        try:
            body, headers = self.http.get_json(url)
        except HttpFailure as exc:
            self.save()
            raise ScrapeError(f"code search failed: {exc}",
                              "run the same command again to resume from this page") from None
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise ScrapeError(f"code search at {_short(url)} answered without an 'items' list",
                              "check --api-url (it should be the API root, e.g. https://api.github.com)")
        known = set(self.state["items"]) | {h["key"] for h in self.state["queue"]}
        for raw in body["items"]:
            hit = _hit(raw)
            if hit is None:
                self.progress.line(f"bpllm scrape: a search hit without repository/path skipped: {str(raw)[:120]}")
                continue
            if hit["key"] in known:
                continue
            known.add(hit["key"])
            self.state["queue"].append(hit)
        nxt = parse_link_next(headers.get("Link"))
        q["next_url"] = urllib.parse.urljoin(url, nxt) if nxt else None
        q["finished"] = not nxt
        q["pages_done"] += 1
        if isinstance(body.get("total_count"), int):
            q["total_count"] = body["total_count"]
        self.state["pages"] = self.state.get("pages", 0) + 1
        self.run_counts["pages"] += 1
        self.save()
        self._show(force=True)

    # -- one file -----------------------------------------------------------------------------------
    def _finish(self, hit: dict[str, Any], status: str, reason: str = "", **extra: Any) -> None:
        self.state["items"][hit["key"]] = {"status": status, "reason": reason, "repository": hit["repository"],
                                           "path": hit["path"], "hit": hit, **extra}
        self.state["queue"] = [h for h in self.state["queue"] if h["key"] != hit["key"]]
        self.state["pending"].pop(hit["key"], None)
        if status not in ("stored", "duplicate"):
            self.progress.line(f"bpllm scrape: {status}: {hit['repository']}/{hit['path']}: {reason}")
        self.save()
        self._write_reports()
        self._show()

    def _process(self, hit: dict[str, Any]) -> None:
        api = self.opts.api.rstrip("/")
        repo = self._repo(hit["repository"])
        if self.opts.min_stars and repo.get("unavailable"):
            return self._finish(hit, "failed", "repository details unavailable for --min-stars; rerun to retry")
        source = {"repository": hit["repository"], "path": hit["path"], "licence": repo.get("licence"),
                  "stars": repo.get("stars"), "html_url": hit.get("html_url")}
        if self.opts.min_stars and (repo.get("stars") is None or repo["stars"] < self.opts.min_stars):
            return self._finish(hit, "filtered", f"{repo.get('stars')} stars < --min-stars {self.opts.min_stars}")
        ref = hit.get("ref") or repo.get("default_branch")
        url = f"{api}/repos/{hit['repository']}/contents/{urllib.parse.quote(hit['path'], safe='/')}"
        if ref:
            url += "?" + urllib.parse.urlencode({"ref": ref})
        try:
            meta, _ = self.http.get_json(url)
        except HttpFailure as exc:
            return self._finish(hit, "failed" if exc.transient else "missing", str(exc))
        if not isinstance(meta, dict) or meta.get("type", "file") != "file":
            return self._finish(hit, "missing", "the contents API did not describe a file")
        size = meta.get("size")
        source.update(ref=ref, sha=meta.get("sha") or hit.get("sha"), size=size)
        limit = self._limit_bytes()
        if limit is not None and isinstance(size, (int, float)) and size > limit:
            return self._finish(hit, "oversized", f"{human_bytes(size)} over --max-size-mb {self.opts.max_size_mb:g}",
                                size=size)
        known = self._verified_sha(source["sha"])
        if known:  # GitHub's sha is the git blob id, checked against bytes we already hold: same bytes
            return self._add_source(hit, known, source)
        download_url = meta.get("download_url")
        if not download_url:
            return self._finish(hit, "missing", "the contents API gave no download_url (a submodule or link?)")
        self._download(hit, urllib.parse.urljoin(url, download_url), source, limit)

    def _limit_bytes(self) -> int | None:
        return None if self.opts.max_size_mb is None else int(self.opts.max_size_mb * 1024 * 1024)

    def _verified_sha(self, sha: str | None) -> str | None:
        if not sha:
            return None
        for sha256, f in self.state["files"].items():
            if f.get("git_sha") == sha:
                return sha256
        return None

    def _repo(self, full_name: str) -> dict[str, Any]:
        """Licence, stars and default branch of a repository, asked once per repository and checkpointed."""
        cached = self.state["repos"].get(full_name)
        if cached is not None:
            return cached
        try:
            body, _ = self.http.get_json(f"{self.opts.api.rstrip('/')}/repos/{full_name}")
        except HttpFailure as exc:
            if exc.transient:
                self.progress.line(f"bpllm scrape: {full_name}: repository details unavailable ({exc}); "
                                   "licence and stars left empty")
                return {"licence": None, "stars": None, "default_branch": None, "unavailable": True}
            body = {}
        body = body if isinstance(body, dict) else {}
        lic = body.get("license") if isinstance(body.get("license"), dict) else {}
        info = {"licence": lic.get("spdx_id") or None, "stars": body.get("stargazers_count"),
                "default_branch": body.get("default_branch")}
        self.state["repos"][full_name] = info
        return info

    def _download(self, hit: dict[str, Any], url: str, source: dict[str, Any], limit: int | None) -> None:
        files_dir = self.out / "files"
        files_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".download.", suffix=TMP_SUFFIX, dir=files_dir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                sha256, n = self.http.get(url, lambda resp: self._stream(resp, tmp, limit))
            except HttpFailure as exc:
                return self._finish(hit, "failed" if exc.transient else "missing", str(exc))
            except _TooBig as exc:
                return self._finish(hit, "oversized", str(exc))
            self.run_counts["downloads"] += 1
            compression, detail = sniff_blend(tmp)
            if compression is None:
                return self._finish(hit, "rejected", f"not a .blend file: {detail}", sha256=sha256)
            if detail != compression:
                self.progress.line(f"bpllm scrape: {hit['repository']}/{hit['path']}: {detail}")
            git_sha = git_blob_sha(tmp)
            record = {"sha256": sha256, "bytes": n, "compression": compression,
                      "git_sha": git_sha if git_sha == source.get("sha") else None, "source": source}
            # the intent first, then the rename: a kill between the two finds the bytes and the record
            self.state["pending"][hit["key"]] = record
            self.save()
            target = self.out / blob_relpath(sha256)
            if target.exists():
                tmp.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            self._settle(hit, record)
        finally:
            if tmp.exists():
                tmp.unlink()

    def _stream(self, resp: Any, tmp: Path, limit: int | None) -> tuple[str, int]:
        h = hashlib.sha256()
        n = 0
        with open(tmp, "wb") as fh:  # a retry starts the file again
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                if limit is not None and n > limit:
                    raise _TooBig(f"more than --max-size-mb {self.opts.max_size_mb:g} arrived "
                                  "(the contents API understated its size); download abandoned")
                h.update(chunk)
                fh.write(chunk)
                self.run_counts["bytes"] += len(chunk)
                self._show()
            fh.flush()
            os.fsync(fh.fileno())
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) != n:
            raise http.client.IncompleteRead(b"", int(length) - n)
        os.chmod(tmp, 0o666 & ~_UMASK)
        return h.hexdigest(), n

    def _settle(self, hit: dict[str, Any], record: dict[str, Any]) -> None:
        sha256 = record["sha256"]
        f = self.state["files"].get(sha256)
        if f is None:
            self.state["files"][sha256] = {"file": blob_relpath(sha256), "bytes": record["bytes"],
                                           "compression": record["compression"], "git_sha": record["git_sha"],
                                           "sources": [record["source"]]}
            self.state["bytes"] = self.state.get("bytes", 0) + record["bytes"]
            return self._finish(hit, "stored", sha256=sha256)
        if not f.get("git_sha") and record.get("git_sha"):
            f["git_sha"] = record["git_sha"]
        return self._add_source(hit, sha256, record["source"])

    def _add_source(self, hit: dict[str, Any], sha256: str, source: dict[str, Any]) -> None:
        sources = self.state["files"][sha256]["sources"]
        if not any(s["repository"] == source["repository"] and s["path"] == source["path"] for s in sources):
            sources.append(source)
        first = sources[0]
        self._finish(hit, "duplicate", f"same bytes as {first['repository']}/{first['path']}", sha256=sha256)

    def _recover_pending(self) -> None:
        """A kill between a file's rename and its checkpoint: the bytes are there, so settle without a download."""
        for key, record in list(self.state["pending"].items()):
            hit = next((h for h in self.state["queue"] if h["key"] == key), None)
            if hit is not None and (self.out / blob_relpath(record["sha256"])).is_file():
                self._settle(hit, record)
            else:
                self.state["pending"].pop(key, None)

    # -- reporting ----------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {"stored": 0, "duplicate": 0, "rejected": 0, "oversized": 0, "filtered": 0, "missing": 0, "failed": 0}
        for item in self.state["items"].values():
            out[item["status"]] = out.get(item["status"], 0) + 1
        return out

    def _show(self, force: bool = False) -> None:
        if not self.progress.due(force):
            return
        c = self.counts()
        seen = sum(c.values())
        q = self.state["queries"].get(self.opts.query, {})
        total = q.get("total_count")
        if self.opts.max_files is not None:
            total = min(total, self.opts.max_files) if total is not None else self.opts.max_files
            fraction = len(self.state["files"]) / max(1, self.opts.max_files)
        else:
            fraction = seen / total if total else None
        text = (f"pages {q.get('pages_done', 0)} · files {seen}" + (f"/{total}" if total else "")
                + f" (stored {c['stored']}, dup {c['duplicate']}, rejected {c['rejected']}, "
                f"oversized {c['oversized']}) · {human_bytes(self.run_counts['bytes'])}")
        self.progress.bar(text, fraction, force=force)

    def summary(self) -> dict[str, Any]:
        c = self.counts()
        q = self.state["queries"].get(self.opts.query, {})
        return {
            "query": self.opts.query, "out": str(self.out), "api": self.opts.api,
            "complete": bool(q.get("finished")) and not self.state["queue"],
            "stopped": self.stop_reason or None,
            "pages": q.get("pages_done", 0), "files": len(self.state["files"]),
            "bytes": sum(f["bytes"] for f in self.state["files"].values()),
            **c, "queued": len(self.state["queue"]),
            "this_run": {**self.run_counts, "requests": self.http.requests},
            "rejected_files": [f"{it['repository']}/{it['path']}: {it['reason']}"
                               for it in self.state["items"].values() if it["status"] == "rejected"],
            "metadata": str(self.out / METADATA), "checkpoint": str(self.out / CHECKPOINT),
        }


class _TooBig(Exception):
    """More bytes arrived than --max-size-mb allows."""


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def _hit(raw: Any) -> dict[str, Any] | None:
    """The parts of a code-search hit the scraper needs (ref from the hit's contents ``url`` when present)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        return None
    repo = raw.get("repository") if isinstance(raw.get("repository"), dict) else {}
    full = repo.get("full_name")
    if not full:
        owner = (repo.get("owner") or {}).get("login") if isinstance(repo.get("owner"), dict) else None
        full = f"{owner}/{repo['name']}" if owner and repo.get("name") else None
    if not full or full.count("/") != 1:
        return None
    ref = None
    if isinstance(raw.get("url"), str):
        ref = (urllib.parse.parse_qs(urllib.parse.urlsplit(raw["url"]).query).get("ref") or [None])[0]
    path = raw["path"].lstrip("/")
    return {"key": item_key(full, path), "repository": full, "path": path, "ref": ref, "sha": raw.get("sha"),
            "html_url": raw.get("html_url")}


def _lock(out: Path) -> int:
    """One scraper per DIR: two would interleave checkpoints. The lock dies with its process (kill -9 too)."""
    import fcntl

    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise ScrapeError(f"{out} is being scraped by another process",
                              "wait for it to finish, or stop it and run again to resume") from None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def scrape(opts: Options, stderr: TextIO | None = None) -> dict[str, Any]:
    """Run (or resume) a scrape into ``opts.out`` and return its summary."""
    return Scraper(opts, stderr).run()
