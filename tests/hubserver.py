"""A small fake Hugging Face Hub HTTP server for tests (standard library only).

It serves, on 127.0.0.1 only, just the endpoints that ``huggingface_hub`` 2.4.0 uses for
``HfApi.model_info`` / ``repo_info``, ``list_repo_tree`` / ``list_repo_files``, ``hf_hub_download``
and ``snapshot_download``:

* ``GET /api/models/{repo_id}`` and ``GET /api/models/{repo_id}/revision/{revision}`` (``?blobs=true`` adds
  size / blobId / lfs to each sibling) -> model info JSON with ``sha`` and ``siblings``.
* ``GET /api/models/{repo_id}/tree/{revision}[/{path}]`` (``?recursive=true&expand=false``) -> a JSON list of
  ``{"type": "file"|"directory", "oid", "size", "path", "lfs": {"oid", "size", "pointerSize"}}``, paginated
  with a GitHub-style ``Link: <...>; rel="next"`` header past ``page_size`` entries.
* ``HEAD`` / ``GET /{repo_id}/resolve/{revision}/{path}`` -> 200 (or 206 for a ``Range`` request) with
  ``ETag`` (git blob sha1, or the sha256 for LFS files), ``X-Repo-Commit``, ``Content-Length``,
  ``Accept-Ranges: bytes`` and, for LFS files, ``X-Linked-Etag`` / ``X-Linked-Size``. No redirect and no
  ``X-Xet-*`` header is ever sent, so the client always uses plain HTTP (hf_xet stays unused).
* ``GET /api/agent-harnesses`` -> an empty registry (only fetched when telemetry is not disabled).

Errors carry the headers ``hf_raise_for_status`` turns into exceptions: ``X-Error-Code: RepoNotFound``
(401, as the real Hub answers anonymous clients) -> ``RepositoryNotFoundError``; ``RevisionNotFound`` (404)
-> ``RevisionNotFoundError``; ``EntryNotFound`` (404, with ``X-Repo-Commit``) -> ``RemoteEntryNotFoundError``.

Clients must read ``HF_ENDPOINT=<hub.url>`` at import time, so run them in a subprocess (see
``client_env``). Nothing is logged to stdout or stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["FakeHub", "HubFile", "client_env", "COUNT_WAITS", "LFS_EXTENSIONS", "LFS_MIN_SIZE"]

# Python source for the top of a client process: from then on WAITS counts the seconds the process asks to sleep
# and the TCP connections it opens. A client that retries with back-off shows in both, on any machine at any
# load, where a time limit would fail on a busy one (or pass a slow retry on a fast one).
COUNT_WAITS = """
import socket as _socket, time as _time
WAITS = {"slept_s": 0.0, "connects": 0}
_sleep, _connect = _time.sleep, _socket.socket.connect

def _counted_sleep(seconds):
    WAITS["slept_s"] += seconds
    _sleep(seconds)

def _counted_connect(sock, address):
    WAITS["connects"] += 1
    return _connect(sock, address)

_time.sleep, _socket.socket.connect = _counted_sleep, _counted_connect
"""

LFS_EXTENSIONS = (".safetensors", ".bin", ".ckpt", ".msgpack", ".onnx", ".pt", ".pth", ".h5", ".gguf")
LFS_MIN_SIZE = 1_000_000  # files larger than this are LFS files whatever their extension
_CHUNK = 64 * 1024
_HEX40 = re.compile(r"[0-9a-f]{40}")
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_API_RE = re.compile(rf"^/api/models/{_REPO}(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?P<rest>/.*)?)?$")
_RESOLVE_RE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_RECORDED_HEADERS = ("Range", "Accept-Encoding", "If-None-Match", "If-Range", "Authorization")
_TIMESTAMP = "2024-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class HubFile:
    path: str  # posix path inside the repo
    local: Path
    size: int
    blob_id: str  # git blob sha1 (of the LFS pointer for LFS files, as on the Hub)
    sha256: str | None  # LFS oid, None for regular files
    pointer_size: int | None

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(path: str, size: int) -> bool:
    return size > LFS_MIN_SIZE or path.lower().endswith(LFS_EXTENSIONS)


def _index_folder(folder: Path) -> dict[str, HubFile]:
    files: dict[str, HubFile] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or ".git" in p.relative_to(folder).parts:
            continue
        rel = p.relative_to(folder).as_posix()
        size = p.stat().st_size
        if _is_lfs(rel, size):
            h = hashlib.sha256()
            with p.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            sha256 = h.hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
            files[rel] = HubFile(rel, p, size, _git_blob_sha1(pointer), sha256, len(pointer))
        else:
            files[rel] = HubFile(rel, p, size, _git_blob_sha1(p.read_bytes()), None, None)
    return files


def _default_commit(files: dict[str, HubFile]) -> str:
    h = hashlib.sha1()
    for f in files.values():  # sorted by path
        h.update(f"{f.path}\0{f.size}\0{f.blob_id}\0{f.sha256 or ''}\n".encode())
    return h.hexdigest()


def client_env(hub_url: str, home: Path, base: dict | None = None, **extra: str) -> dict[str, str]:
    """Environment for a client subprocess: HF_ENDPOINT=hub_url, caches under ``home``, no token, no proxy,
    HF_HUB_OFFLINE unset, telemetry off. Extra keyword arguments are added (e.g. HF_HUB_OFFLINE="1")."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(("HF_", "HUGGING_FACE_", "HUGGINGFACE_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        and k not in ("TRANSFORMERS_OFFLINE",)
    }
    env.update(
        HF_ENDPOINT=hub_url,
        HF_HOME=str(home),
        HF_HUB_CACHE=str(Path(home) / "hub"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: "FakeHub"

    def handle_error(self, request, client_address):  # quiet: clients get killed on purpose
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    sys_version = ""
    timeout = 30  # idle keep-alive connections are dropped after this
    server: _Server

    # ---- plumbing -------------------------------------------------------------------------------
    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr logging
        pass

    def setup(self):
        super().setup()
        self.server.hub._track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.hub._track(self.connection, add=False)

    def do_GET(self):
        self._dispatch(head=False)

    def do_HEAD(self):
        self._dispatch(head=True)

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"", head: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **headers}
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _json(self, obj, head: bool, headers: dict[str, str] | None = None, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self._reply(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body, head)

    def _error(self, status: int, code: str | None, message: str, head: bool, commit: str | None = None):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._json({"error": message}, head, headers, status)

    # ---- routing --------------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        hub = self.server.hub
        hub._record(self.command, self.path, {h: self.headers[h] for h in _RECORDED_HEADERS if h in self.headers})
        try:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            if split.path == "/api/agent-harnesses":
                return self._json({"standardEnvVars": [], "harnesses": {}}, head)
            if m := _API_RE.match(split.path):
                return self._api(m, query, head)
            if m := _RESOLVE_RE.match(split.path):
                return self._resolve(m, head)
            self._error(404, None, "Not found", head)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def _repo_and_commit(self, repo_id: str, rev: str, head: bool) -> tuple[dict, str] | None:
        hub = self.server.hub
        files = hub._files.get(repo_id)
        if files is None:
            self._error(401, "RepoNotFound", "Repository not found", head)
            return None
        commit = hub.resolve(repo_id, rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
            return None
        return files, commit

    def _api(self, m: re.Match, query: dict, head: bool) -> None:
        repo_id = m["repo"]
        rev = unquote(m["rev"]) if m["rev"] else "main"
        found = self._repo_and_commit(repo_id, rev, head)
        if found is None:
            return
        files, commit = found
        if m["kind"] == "tree":
            return self._tree(repo_id, files, commit, m["rev"], unquote(m["rest"] or "").strip("/"), query, head)
        if m["rest"]:
            return self._error(404, None, "Not found", head)
        blobs = query.get("blobs", "").lower() in ("1", "true")
        siblings = []
        for f in files.values():
            s: dict = {"rfilename": f.path}
            if blobs:
                s.update(size=f.size, blobId=f.blob_id)
                if f.sha256:
                    s["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": f.pointer_size}
            siblings.append(s)
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": commit,
            "lastModified": _TIMESTAMP,
            "createdAt": _TIMESTAMP,
            "private": False,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(f.size for f in files.values()),
        }
        self._json(info, head)

    def _tree(self, repo_id, files, commit, raw_rev, prefix, query, head) -> None:
        hub = self.server.hub
        recursive = query.get("recursive", "").lower() in ("1", "true")
        expand = query.get("expand", "").lower() in ("1", "true")
        dirs: set[str] = set()
        for path in files:
            parts = path.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        if prefix and prefix not in dirs:
            return self._error(404, "EntryNotFound", f"{prefix} does not exist on {commit}", head, commit)
        base = prefix + "/" if prefix else ""

        def wanted(path: str) -> bool:
            return path.startswith(base) and (recursive or "/" not in path[len(base):])

        entries = [
            {"type": "directory", "oid": hashlib.sha1(f"tree {commit} {d}".encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(dirs)
            if wanted(d)
        ]
        for f in files.values():
            if wanted(f.path):
                e: dict = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
                if f.sha256:
                    e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
                entries.append(e)
        page_size = 50 if expand else hub.page_size
        start = int(query.get("cursor", "0") or 0)
        page = entries[start : start + page_size]
        headers = {}
        if start + page_size < len(entries):
            rest = "/" + quote(prefix, safe="") if prefix else ""
            nxt = (
                f"{hub.url}/api/models/{repo_id}/tree/{raw_rev}{rest}"
                f"?recursive={str(recursive).lower()}&expand={str(expand).lower()}&cursor={start + page_size}"
            )
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._json(page, head, headers)

    def _resolve(self, m: re.Match, head: bool) -> None:
        hub = self.server.hub
        repo_id, rev, path = m["repo"], unquote(m["rev"]), unquote(m["file"])
        found = self._repo_and_commit(repo_id, rev, head)
        if found is None:
            return
        files, commit = found
        f = files.get(path)
        if f is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {commit}", head, commit)
        headers = {
            "Content-Type": "application/json" if path.endswith(".json") else "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{f.etag}"',
            "X-Repo-Commit": commit,
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if f.sha256:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
        start, end, status = 0, f.size - 1, 200
        rng = self.headers.get("Range")
        if rng and "," not in rng and (rm := _RANGE_RE.match(rng)):  # multiple ranges: ignored, full 200
            a, b = rm.groups()
            if a:
                start, end = int(a), min(int(b), f.size - 1) if b else f.size - 1
            elif b:
                start, end = max(f.size - int(b), 0), f.size - 1
            if not a and not b or start >= f.size or start > end:
                headers["Content-Range"] = f"bytes */{f.size}"
                return self._reply(416, headers, b"", head)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
        length = max(end - start + 1, 0)
        self.send_response(status)
        headers["Content-Length"] = str(length)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and length:
            self._send_body(f, start, length, f"{repo_id}/{path}")

    def _send_body(self, f: HubFile, start: int, length: int, key: str) -> None:
        hub = self.server.hub
        throttle = hub.throttle or {}
        suffix = throttle.get("path_suffix")
        matched = bool(throttle) and (suffix is None or key.endswith(suffix))
        rate = float(throttle.get("bytes_per_s") or 0) if matched else 0.0
        drop_after = throttle.get("drop_after_bytes") if matched and key not in hub._dropped else None
        chunk = min(_CHUNK, max(int(rate / 20), 1024)) if rate else _CHUNK
        sent, t0 = 0, time.monotonic()
        with hub._transfer(), f.local.open("rb") as fh:
            fh.seek(start)
            while sent < length:
                if hub._stopping.is_set():
                    self.close_connection = True
                    return
                n = min(chunk, length - sent)
                if drop_after is not None:
                    n = min(n, drop_after - sent)
                    if n <= 0:  # simulate a dropped connection: FIN before the announced Content-Length
                        hub._dropped.add(key)
                        self.close_connection = True
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_WR)
                        return
                data = fh.read(n)
                if not data:
                    self.close_connection = True
                    return
                self.wfile.write(data)
                sent += len(data)
                hub._add_bytes(key, len(data))
                if rate:
                    delay = t0 + sent / rate - time.monotonic()
                    if delay > 0:
                        hub._stopping.wait(delay)


class FakeHub:
    """A fake Hugging Face Hub serving local folders on http://127.0.0.1:<port>.

    ``repos``: repo_id -> folder whose files (recursively) are the repo's files at one commit.
    ``commits``: repo_id -> 40-hex commit (default: sha1 of the folder's listing and blob ids).
    ``throttle``: ``{"path_suffix": str | tuple[str, ...] | None, "bytes_per_s": float, "drop_after_bytes": int}``
    applies to GET bodies of files whose "repo_id/path" ends with ``path_suffix`` (all files if None):
    ``bytes_per_s`` paces the body; ``drop_after_bytes`` closes the connection once per file after that many
    body bytes (the client sees a short body). ``throttle`` may be changed while the server runs.
    ``refs``: repo_id -> {branch: commit}; starts as {"main": commit}, may be extended.
    A timer stops the server ``lifetime_s`` after ``start()`` in any case.
    """

    page_size = 1000  # tree entries per page (50 with expand=true), as on the Hub

    def __init__(
        self,
        repos: dict[str, Path],
        host: str = "127.0.0.1",
        lifetime_s: float = 120,
        commits: dict[str, str] | None = None,
        throttle: dict | None = None,
        port: int = 0,
    ):
        if host != "127.0.0.1":
            raise ValueError(f"FakeHub only binds to 127.0.0.1, not {host!r}")
        if lifetime_s <= 0:
            raise ValueError("lifetime_s must be > 0")
        self.host, self.port, self.lifetime_s = host, int(port), float(lifetime_s)
        self._files: dict[str, dict[str, HubFile]] = {}
        self.commits: dict[str, str] = {}
        for repo_id, folder in repos.items():
            folder = Path(folder)
            if not folder.is_dir():
                raise ValueError(f"{repo_id}: {folder} is not a folder")
            self._files[repo_id] = _index_folder(folder)
            commit = (commits or {}).get(repo_id) or _default_commit(self._files[repo_id])
            if not _HEX40.fullmatch(commit):
                raise ValueError(f"{repo_id}: commit must be 40 lowercase hex digits, got {commit!r}")
            self.commits[repo_id] = commit
        self.refs: dict[str, dict[str, str]] = {r: {"main": c} for r, c in self.commits.items()}
        self.throttle = dict(throttle) if throttle else None
        self.bytes_sent: dict[str, int] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(threading.Lock())
        self._active = 0
        self._conns: set[socket.socket] = set()
        self._dropped: set[str] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self.stopped_at: float | None = None

    # ---- info -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeHub not started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def files(self, repo_id: str) -> dict[str, HubFile]:
        return dict(self._files[repo_id])

    def resolve(self, repo_id: str, revision: str) -> str | None:
        """The commit a revision (branch name or full commit sha) points to, None if unknown."""
        commit = self.commits.get(repo_id)
        if commit is None:
            return None
        if revision == commit:
            return commit
        return self.refs.get(repo_id, {}).get(revision)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(self.bytes_sent.values())

    def reset_counts(self) -> None:
        with self._lock:
            self.bytes_sent.clear()
            self.requests.clear()

    def _record(self, method: str, path: str, headers: dict) -> None:
        with self._lock:
            self.requests.append((method, path, headers))

    def _add_bytes(self, key: str, n: int) -> None:
        with self._lock:
            self.bytes_sent[key] = self.bytes_sent.get(key, 0) + n

    @contextlib.contextmanager
    def _transfer(self):
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 5) -> bool:
        """Wait until no file body is being sent (e.g. after killing a client mid-download). True if idle."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "FakeHub":
        if self._server is not None:
            raise RuntimeError("FakeHub already started")
        server = _Server((self.host, self.port), _Handler)
        server.hub = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"FakeHub:{self.port}", daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopping.is_set() or self._server is None:
                return
            self._stopping.set()
            conns = list(self._conns)
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        self._server.shutdown()  # waits for serve_forever to return (runs in its own thread)
        self._server.server_close()
        for c in conns:  # drop keep-alive / in-flight connections too
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.stopped_at = time.monotonic()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
