"""`bpllm scrape github` against a loopback stand-in for the GitHub API that these tests start.

The stand-in serves code search pages (``Link: rel="next"``), the repo and contents APIs and raw bytes,
and records every request with its arrival time, so the tests can check what the scraper *sent*: nothing
inside a rate-limit window, never the oversized file's bytes, no finished file a second time after a
SIGKILL. The .blend bytes are made here (a ``BLENDER-v500`` header plus bytes, gzip and zstd forms); the
real corpus files check the sniffing when the corpus is present.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.dataset import scrape as sc

REPO_ROOT = Path(__file__).resolve().parents[2]
BLEND_CORPUS = (REPO_ROOT.parent / "shared" / "corpus" / "blender" / "files").resolve()
WAIT = 60  # bound on every wait for the stand-in or a subprocess


def blend_bytes(seed: int, size: int = 3000) -> bytes:
    rng = random.Random(seed)
    return b"BLENDER-v500" + bytes(rng.getrandbits(8) for _ in range(size))


def zstd_bytes(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard", reason="zstandard (installed with bpy) makes the zstd form")
    return zstandard.ZstdCompressor().compress(data)


def git_sha(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


# --------------------------------------------------------------------------------------------- the stand-in

class StandIn:
    """A GitHub API on 127.0.0.1. ``files`` are ``(repo, path, bytes)``; ``faults`` map a request path to
    what happens the first time(s) it is asked for."""

    def __init__(self, files: list[tuple[str, str, bytes]], *, page_size: int = 3, stars: dict | None = None,
                 fake_sha: bool = False, sizes: dict | None = None) -> None:
        self.files = files
        self.page_size = page_size
        self.stars = stars or {}
        self.fake_sha = fake_sha
        self.sizes = sizes or {}  # path -> size the contents API claims
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[float, str]] = []      # (arrival, path?query) of every request
        self.windows: list[tuple[float, float]] = []  # (refused at, no request before)
        self.completed: list[str] = []               # raw paths whose bytes were all sent
        self.slow_started = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                stand_in.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # -- helpers for the tests
    def raw_path(self, repo: str, path: str) -> str:
        return f"/raw/{repo}/main/{path}"

    def requests_to(self, path: str) -> list[float]:
        return [t for t, p in self.log if p.split("?")[0] == path]

    def fault(self, path: str, *actions: str) -> None:
        self.faults[path] = list(actions)

    def sha_of(self, repo: str, path: str, data: bytes) -> str:
        return hashlib.sha1(f"{repo}/{path}".encode()).hexdigest() if self.fake_sha else git_sha(data)

    # -- serving
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        now = time.time()
        parts = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(parts.path)
        with self.lock:
            self.log.append((now, path + ("?" + parts.query if parts.query else "")))
            actions = self.faults.get(path) or []
            action = actions.pop(0) if actions else None
        if action == "ratelimit":
            reset = math.ceil(now) + 2
            self.windows.append((now, float(reset)))
            return self.send(h, 403, {"message": "API rate limit exceeded"},
                             {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)})
        if action == "retry-after":
            self.windows.append((now, now + 2))
            return self.send(h, 429, {"message": "slow down"}, {"Retry-After": "2"})
        if action == "500":
            return self.send(h, 500, {"message": "boom"})
        if action == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
            return None
        if path == "/search/code":
            return self.search(h, urllib.parse.parse_qs(parts.query))
        if path.startswith("/raw/"):
            return self.raw(h, path, slow=action == "slow")
        segs = path.strip("/").split("/")
        if len(segs) == 3 and segs[0] == "repos":
            repo = f"{segs[1]}/{segs[2]}"
            if not any(r == repo for r, _, _ in self.files):
                return self.send(h, 404, {"message": "Not Found"})
            return self.send(h, 200, {"full_name": repo, "stargazers_count": self.stars.get(repo, 7),
                                      "default_branch": "main",
                                      "license": {"key": "mit", "spdx_id": "MIT"} if repo != "c/gamma" else None})
        if len(segs) > 4 and segs[0] == "repos" and segs[3] == "contents":
            repo, fpath = f"{segs[1]}/{segs[2]}", "/".join(segs[4:])
            for r, p, data in self.files:
                if (r, p) == (repo, fpath):
                    return self.send(h, 200, {
                        "type": "file", "name": p.rsplit("/", 1)[-1], "path": p,
                        "size": self.sizes.get(p, len(data)), "sha": self.sha_of(r, p, data),
                        "download_url": self.url + urllib.parse.quote(self.raw_path(r, p))})
        return self.send(h, 404, {"message": "Not Found"})

    def search(self, h, query: dict) -> None:
        page = int(query.get("page", ["1"])[0])
        start = (page - 1) * self.page_size
        chunk = self.files[start:start + self.page_size]
        items = [{"name": p.rsplit("/", 1)[-1], "path": p, "sha": self.sha_of(r, p, d),
                  "url": f"{self.url}/repositories/1/contents/{p}?ref=main",
                  "html_url": f"https://github.com/{r}/blob/main/{p}",
                  "repository": {"full_name": r, "name": r.split("/")[1], "owner": {"login": r.split("/")[0]}}}
                 for r, p, d in chunk]
        headers = {}
        if start + self.page_size < len(self.files):
            nxt = dict(query, page=[str(page + 1)])
            headers["Link"] = f'<{self.url}/search/code?{urllib.parse.urlencode(nxt, doseq=True)}>; rel="next"'
        self.send(h, 200, {"total_count": len(self.files), "incomplete_results": False, "items": items}, headers)

    def raw(self, h, path: str, slow: bool) -> None:
        for r, p, data in self.files:
            if path == self.raw_path(r, p):
                break
        else:
            return self.send(h, 404, {"message": "Not Found"})
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        try:
            if slow:  # most of the bytes, then stall until the test has killed the client
                cut = len(data) * 2 // 3
                h.wfile.write(data[:cut])
                h.wfile.flush()
                self.slow_started.set()
                self.release.wait(WAIT)
                h.wfile.write(data[cut:])
            else:
                h.wfile.write(data)
            h.wfile.flush()
        except OSError:  # the client died mid-file
            return
        with self.lock:
            self.completed.append(path)

    def send(self, h, status: int, body, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(raw)


def assert_no_request_inside_windows(stand_in: StandIn) -> None:
    assert stand_in.windows, "the stand-in never refused: the test did not exercise a rate limit"
    for refused_at, until in stand_in.windows:
        inside = [(round(t - refused_at, 3), p) for t, p in stand_in.log if refused_at < t < until]
        assert not inside, f"requests inside the rate-limit window ({until - refused_at:.2f}s): {inside}"
        assert any(t >= until for t, _ in stand_in.log), "nothing was sent after the window: the scraper gave up"


def stored_copies(out: Path, data: bytes) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine.cli", "scrape", "github", *args]


# --------------------------------------------------------------------------------------------- sniffing

def test_sniff_accepts_plain_gzip_and_zstd_and_rejects_the_rest(tmp_path):
    data = blend_bytes(1)
    cases = {"plain": (data, "none"), "gz": (gzip.compress(data), "gzip"), "zst": (zstd_bytes(data), "zstd"),
             "png": (b"\x89PNG\r\n\x1a\n" + data, None), "gztext": (gzip.compress(b"hello world" * 50), None),
             "zsttext": (zstd_bytes(b"not a blend file" * 50), None), "empty": (b"", None),
             "badgz": (b"\x1f\x8b garbage", None)}
    for name, (raw, want) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        got, detail = sc.sniff_blend(path)
        assert got == want, (name, detail)
        if want is None:
            assert detail, name


def test_sniff_accepts_every_real_corpus_blend():
    if not BLEND_CORPUS.is_dir():
        pytest.skip(f"blender corpus not found at {BLEND_CORPUS} (../shared/corpus/blender beside the repo)")
    kinds = {}
    for path in sorted(BLEND_CORPUS.glob("*.blend")):
        kind, detail = sc.sniff_blend(path)
        assert kind, f"{path.name}: {detail}"
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {"none": 14, "gzip": 9, "zstd": 5}  # as the corpus README measured


def test_link_header_and_rate_limit_parsing():
    link = ('<https://api.github.com/search/code?q=x&page=2>; rel="next", '
            '<https://api.github.com/search/code?q=x&page=5>; rel="last"')
    assert sc.parse_link_next(link) == "https://api.github.com/search/code?q=x&page=2"
    assert sc.parse_link_next('<https://a/b?page=1>; rel="prev", <https://a/b?page=1>; rel="first"') is None
    assert sc.parse_link_next(None) is None
    now = 1000.0
    assert sc.rate_limit_until(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1003"}, b"", now) == 1003
    assert sc.rate_limit_until(429, {"Retry-After": "5"}, b"", now) == 1005
    assert sc.rate_limit_until(429, {"X-RateLimit-Reset": "1004"}, b"", now) == 1004
    assert sc.rate_limit_until(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1003", "Retry-After": "9"},
                               b"", now) == 1009  # both given: the later one
    assert sc.rate_limit_until(403, {"X-RateLimit-Remaining": "12"}, b"forbidden", now) is None
    assert sc.rate_limit_until(404, {"Retry-After": "5"}, b"", now) is None


# --------------------------------------------------------------------------------------------- scraping

def corpus_files() -> dict[str, bytes]:
    plain = blend_bytes(10)
    return {"plain": plain, "gz": gzip.compress(blend_bytes(11)), "zst": zstd_bytes(blend_bytes(12)),
            "big": blend_bytes(13, 6 * 1024), "text": b"# a python script, not a .blend\n" * 20}


def test_scrape_pages_rate_limit_oversize_rejects_and_dedups(tmp_path):
    f = corpus_files()
    files = [("a/alpha", "mat/plain.blend", f["plain"]), ("a/alpha", "mat/gz.blend", f["gz"]),
             ("b/beta", "scenes/zst.blend", f["zst"]), ("b/beta", "huge.blend", f["big"]),
             ("c/gamma", "notes/readme.blend", f["text"]), ("c/gamma", "copy of plain.blend", f["plain"]),
             ("a/alpha", "mat/gz again.blend", f["gz"])]
    # the contents API says huge.blend is 6 MB: over --max-size-mb 5, so its bytes must never be asked for
    with StandIn(files, sizes={"huge.blend": 6 * 1024 * 1024}) as gh:
        gh.fault("/search/code", "", "ratelimit")  # page 1 fine, page 2 refused once
        gh.fault("/repos/b/beta/contents/scenes/zst.blend", "500")
        out = tmp_path / "out"
        err = io.StringIO()
        summary = sc.scrape(sc.Options(query="extension:blend", out=out, api=gh.url, max_size_mb=5,
                                       per_page=3), stderr=err)
        assert_no_request_inside_windows(gh)
        assert len(gh.requests_to("/search/code")) == 4  # 3 pages + the refused one
        assert gh.requests_to(gh.raw_path("b/beta", "huge.blend")) == []
        assert len(gh.requests_to("/repos/b/beta/contents/scenes/zst.blend")) == 2  # 500, then the retry

        assert summary["complete"] and summary["pages"] == 3
        assert (summary["files"], summary["stored"], summary["duplicate"]) == (3, 3, 2)
        assert (summary["rejected"], summary["oversized"]) == (1, 1)
        assert "c/gamma/notes/readme.blend" in summary["rejected_files"][0]
        assert "rejected: c/gamma/notes/readme.blend: not a .blend file" in err.getvalue()
        for name in ("plain", "gz", "zst"):
            copies = stored_copies(out, f[name])
            assert len(copies) == 1, name
            digest = hashlib.sha256(f[name]).hexdigest()
            assert copies[0] == out / "files" / digest[:2] / f"{digest}.blend"
        assert stored_copies(out, f["text"]) == [] and stored_copies(out, f["big"]) == []

        rows = {r["sha256"]: r for r in read_jsonl(out / "metadata.jsonl")}
        assert len(rows) == 3
        plain = rows[hashlib.sha256(f["plain"]).hexdigest()]
        assert {(s["repository"], s["path"]) for s in plain["sources"]} == {
            ("a/alpha", "mat/plain.blend"), ("c/gamma", "copy of plain.blend")}
        assert (plain["repository"], plain["path"], plain["ref"], plain["licence"], plain["stars"]) == (
            "a/alpha", "mat/plain.blend", "main", "MIT", 7)
        assert plain["sha"] == git_sha(f["plain"]) and plain["size"] == len(f["plain"])
        assert [s["licence"] for s in plain["sources"]] == ["MIT", None]  # c/gamma has no licence
        assert rows[hashlib.sha256(f["zst"]).hexdigest()]["compression"] == "zstd"
        assert rows[hashlib.sha256(f["gz"]).hexdigest()]["compression"] == "gzip"
        skipped = {(r["path"], r["status"]) for r in read_jsonl(out / "skipped.jsonl")}
        assert skipped == {("notes/readme.blend", "rejected"), ("huge.blend", "oversized")}

        # a second run over a finished checkpoint sends nothing at all
        before = len(gh.log)
        again = sc.scrape(sc.Options(query="extension:blend", out=out, api=gh.url, max_size_mb=5, per_page=3),
                          stderr=io.StringIO())
        assert len(gh.log) == before and again["this_run"]["requests"] == 0
        assert again["files"] == 3 and again["complete"]


def test_duplicate_with_unverifiable_sha_is_downloaded_and_kept_once(tmp_path):
    """A server whose ``sha`` is not git's blob id: the bytes decide, after downloading both."""
    data = blend_bytes(20)
    files = [("a/one", "x.blend", data), ("b/two", "y.blend", data), ("b/two", "z.blend", blend_bytes(21))]
    with StandIn(files, fake_sha=True) as gh:
        gh.fault(gh.raw_path("b/two", "y.blend"), "drop")  # a dropped connection, retried
        summary = sc.scrape(sc.Options(query="q", out=tmp_path, api=gh.url), stderr=io.StringIO())
        assert len(gh.requests_to(gh.raw_path("b/two", "y.blend"))) == 2
    assert (summary["files"], summary["duplicate"]) == (2, 1)
    assert len(stored_copies(tmp_path, data)) == 1
    row = next(r for r in read_jsonl(tmp_path / "metadata.jsonl") if r["sha256"] == hashlib.sha256(data).hexdigest())
    assert [s["repository"] for s in row["sources"]] == ["a/one", "b/two"]


def test_min_stars_and_max_files(tmp_path):
    files = [("a/low", "1.blend", blend_bytes(30)), ("b/high", "2.blend", blend_bytes(31)),
             ("b/high", "3.blend", blend_bytes(32)), ("b/high", "4.blend", blend_bytes(33))]
    with StandIn(files, stars={"a/low": 2, "b/high": 50}) as gh:
        summary = sc.scrape(sc.Options(query="q", out=tmp_path, api=gh.url, min_stars=10, max_files=2),
                            stderr=io.StringIO())
        assert gh.requests_to("/repos/a/low/contents/1.blend") == []
        assert (summary["filtered"], summary["files"], summary["complete"]) == (1, 2, False)
        assert summary["stopped"] == "--max-files 2 reached"
        more = sc.scrape(sc.Options(query="q", out=tmp_path, api=gh.url, min_stars=10), stderr=io.StringIO())
    assert (more["files"], more["complete"]) == (3, True)
    assert more["this_run"]["downloads"] == 1


def test_sigkill_mid_download_then_rerun_stores_each_file_once(tmp_path):
    """The real CLI, killed with SIGKILL while a download is half on disk, then run again."""
    f = corpus_files()
    big = blend_bytes(40, 300 * 1024)  # larger than one read, so part of it reaches the disk before the kill
    files = [("a/alpha", "m1.blend", f["plain"]), ("a/alpha", "m2.blend", f["gz"]),
             ("b/beta", "m3.blend", big), ("b/beta", "readme.blend", f["text"]),
             ("c/gamma", "m1 copy.blend", f["plain"]), ("c/gamma", "huge.blend", f["big"]),
             ("c/gamma", "m4.blend", f["zst"])]
    wanted = [f["plain"], f["gz"], big, f["zst"]]
    out = tmp_path / "out"
    args = cli("--query", "extension:blend", "--out", str(out), "--api-url", None, "--max-size-mb", "5",
               "--per-page", "2")
    with StandIn(files, page_size=2, sizes={"huge.blend": 9 * 1024 * 1024}) as gh:
        args[args.index(None)] = gh.url
        gh.fault(gh.raw_path("b/beta", "m3.blend"), "slow")
        gh.fault("/repos/c/gamma", "retry-after")
        proc = subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if not gh.slow_started.wait(WAIT):
                proc.kill()
                pytest.fail(f"the slow download never started: {proc.communicate()}")
            deadline = time.monotonic() + WAIT
            while not list((out / "files").glob(".download.*.tmp")) or \
                    not any(p.stat().st_size for p in (out / "files").glob(".download.*.tmp")):
                assert time.monotonic() < deadline, "no partial download reached the disk"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            _, err1 = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        assert "GITHUB_TOKEN" in err1  # the one-line notice about unauthenticated limits
        gh.release.set()
        finished_first = set(gh.completed)
        assert gh.raw_path("a/alpha", "m1.blend") in finished_first  # the kill came mid-run, not at the start
        first_log = len(gh.log)

        done = subprocess.run(args + ["--json"], env=cli_env(), capture_output=True, text=True, timeout=WAIT * 2)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        second = [p.split("?")[0] for _, p in gh.log[first_log:]]

        assert not finished_first & set(second), "a finished file was downloaded again"
        assert gh.raw_path("b/beta", "m3.blend") in second  # the half-done one was fetched again
        assert gh.raw_path("c/gamma", "huge.blend") not in [p for _, p in gh.log]
        assert_no_request_inside_windows(gh)
    for data in wanted:
        assert len(stored_copies(out, data)) == 1
    assert stored_copies(out, f["text"]) == []
    assert not list(out.rglob("*.tmp")), "the half-written download was not discarded"
    assert summary["complete"] and (summary["files"], summary["rejected"], summary["oversized"]) == (4, 1, 1)
    rows = read_jsonl(out / "metadata.jsonl")
    assert sorted(r["sha256"] for r in rows) == sorted(hashlib.sha256(d).hexdigest() for d in wanted)
    assert next(r for r in rows if r["path"] == "m1.blend")["sources"][1]["repository"] == "c/gamma"


def test_sigkill_while_waiting_for_a_rate_limit_reset(tmp_path):
    """The reset time is in the checkpoint: a process started again inside the window waits for it too."""
    files = [("a/alpha", f"{i}.blend", blend_bytes(50 + i)) for i in range(4)]
    out = tmp_path / "out"
    with StandIn(files, page_size=2) as gh:
        args = cli("--query", "q", "--out", str(out), "--api-url", gh.url, "--per-page", "2")
        gh.fault("/repos/a/alpha/contents/1.blend", "ratelimit")
        proc = subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + WAIT
            while not gh.windows:
                assert time.monotonic() < deadline and proc.poll() is None, "the scraper was never rate limited"
                time.sleep(0.02)
            time.sleep(0.5)  # well inside the 2-second window
            proc.send_signal(signal.SIGKILL)
            _, err1 = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "rate limited" in err1
        assert time.time() < gh.windows[0][1], "the kill came after the window: the test proves nothing"
        done = subprocess.run(args, env=cli_env(), capture_output=True, text=True, timeout=WAIT * 2)
        assert done.returncode == 0, done.stderr
        assert_no_request_inside_windows(gh)
        assert "rate limited until" in done.stderr
    for _, _, data in files:
        assert len(stored_copies(out, data)) == 1


def test_bad_checkpoint_and_busy_folder_are_one_line_errors(tmp_path):
    (tmp_path / "checkpoint.json").write_text("{not json")
    done = subprocess.run(cli("--query", "q", "--out", str(tmp_path), "--api-url", "http://127.0.0.1:9"),
                          env=cli_env(), capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("bpllm scrape: ") and "checkpoint.json" in last and "Traceback" not in done.stderr
    (tmp_path / "checkpoint.json").unlink()
    held = sc._lock(tmp_path)
    try:
        with pytest.raises(sc.ScrapeError, match="another process"):
            sc.scrape(sc.Options(query="q", out=tmp_path, api="http://127.0.0.1:9"), stderr=io.StringIO())
    finally:
        os.close(held)
