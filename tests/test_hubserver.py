"""Real huggingface_hub downloads against the local fake Hub of tests/hubserver.py (no internet).

Each client runs in a subprocess, because huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE at import time
(and conftest.py sets HF_HUB_OFFLINE=1 for this process).
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hubserver import COUNT_WAITS, FakeHub, client_env

REPO = "fake-org/tiny-diffusion"
BIG = "unet/diffusion_pytorch_model.safetensors"
FP16 = "unet/diffusion_pytorch_model.fp16.safetensors"
CKPT = "v1-4.ckpt"
JSONS = ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "vae/config.json"]
ALLOW = ["*.json", BIG]

# catch(fn): what fn raised, and its waits (hubserver.COUNT_WAITS): the seconds it slept, the connections it opened.
_PRELUDE = COUNT_WAITS + """
import json, sys, time
def out(**kw):
    print(json.dumps(kw), flush=True)
def catch(fn):
    before = dict(WAITS)
    waits = lambda: {k: WAITS[k] - before[k] for k in WAITS}
    try:
        fn()
        return {"cls": None, **waits()}
    except Exception as e:
        return {"cls": type(e).__name__, "module": type(e).__module__,
                "mro": [c.__name__ for c in type(e).__mro__], **waits(), "msg": str(e)[:400]}
"""


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    rnd = random.Random(1234)
    contents = {
        "model_index.json": json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet"]}),
        "scheduler/scheduler_config.json": json.dumps({"_class_name": "PNDMScheduler", "num_train_timesteps": 1000}),
        "unet/config.json": json.dumps({"sample_size": 64, "in_channels": 4}),
        "vae/config.json": json.dumps({"latent_channels": 4}),
        "README.md": "# tiny\n",
    }
    for rel, text in contents.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / BIG).write_bytes(rnd.randbytes(3 * 1024 * 1024 + 123))
    (root / FP16).write_bytes(rnd.randbytes(1536 * 1024))
    (root / CKPT).write_bytes(rnd.randbytes(256 * 1024))  # LFS by extension although small
    return root


def _client(hub_url: str, home: Path, code: str, timeout: float = 60, **env) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _PRELUDE + code],
        env=client_env(hub_url, home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"client failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git_sha1(path: Path) -> str:
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _free_closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_snapshot_download_fetches_only_allowed_files_and_caches(repo_dir, tmp_path):
    home = tmp_path / "hf"
    with FakeHub({REPO: repo_dir}, lifetime_s=60) as hub:
        commit = hub.commits[REPO]
        code = f"""
from huggingface_hub import HfApi, snapshot_download
api = HfApi()
info = api.model_info({REPO!r}, revision="main", files_metadata=True)
by_commit = api.model_info({REPO!r}, revision=info.sha)
sib = {{s.rfilename: {{"size": s.size, "blob_id": s.blob_id,
        "lfs": dict(sha256=s.lfs.sha256, size=s.lfs.size) if s.lfs else None}} for s in info.siblings}}
files = api.list_repo_files({REPO!r})
path = snapshot_download({REPO!r}, revision="main", allow_patterns={ALLOW!r}, cache_dir={str(home / 'hub')!r})
out(sha=info.sha, sha2=by_commit.sha, siblings=sib, files=sorted(files), path=path)
"""
        first = _client(hub.url, home, code)
        first_requests, first_bytes = list(hub.requests), dict(hub.bytes_sent)

        # model_info(files_metadata=True): commit, sizes, blob ids, LFS sha256
        assert first["sha"] == first["sha2"] == commit
        originals = sorted(p.relative_to(repo_dir).as_posix() for p in repo_dir.rglob("*") if p.is_file())
        assert first["files"] == originals and sorted(first["siblings"]) == originals
        for rel in originals:
            s = first["siblings"][rel]
            assert s["size"] == (repo_dir / rel).stat().st_size
            if rel.endswith((".safetensors", ".ckpt")):
                assert s["lfs"] == {"sha256": _sha256(repo_dir / rel), "size": s["size"]}
            else:
                assert s["lfs"] is None and s["blob_id"] == _git_sha1(repo_dir / rel)

        # only the allowed files went over the wire, each exactly once
        wanted = JSONS + [BIG]
        assert first_bytes == {f"{REPO}/{rel}": (repo_dir / rel).stat().st_size for rel in wanted}
        assert all(f"{REPO}/{d}" not in first_bytes for d in (FP16, CKPT, "README.md"))
        resolve_paths = sorted(p for m, p, _ in first_requests if "/resolve/" in p)
        assert resolve_paths == sorted(f"/{REPO}/resolve/{commit}/{rel}" for rel in wanted for _ in ("HEAD", "GET"))
        api_calls = [(m, p) for m, p, _ in first_requests if p.startswith("/api/")]
        assert api_calls == [
            ("GET", f"/api/models/{REPO}/revision/main?blobs=true"),
            ("GET", f"/api/models/{REPO}/revision/{commit}"),
            ("GET", f"/api/models/{REPO}/tree/main?recursive=true&expand=false"),
            ("GET", f"/api/models/{REPO}/revision/main"),
            ("GET", f"/api/models/{REPO}/tree/{commit}?recursive=true&expand=false"),
        ]

        # standard cache layout
        storage = home / "hub" / "models--fake-org--tiny-diffusion"
        snap = storage / "snapshots" / commit
        assert Path(first["path"]) == snap
        assert (storage / "refs" / "main").read_text() == commit
        got = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
        assert got == sorted(wanted)
        for rel in wanted:
            assert (snap / rel).read_bytes() == (repo_dir / rel).read_bytes()
        blobs = {p.name for p in (storage / "blobs").iterdir()}
        assert blobs == {_git_sha1(repo_dir / r) for r in JSONS} | {_sha256(repo_dir / BIG)}
        assert (storage / "trees" / f"{commit}.json").is_file()

        # second time: metadata only (one repo_info call for "main"), no file bytes; by commit: no request at all
        hub.reset_counts()
        again = f"""
from huggingface_hub import snapshot_download
a = snapshot_download({REPO!r}, revision="main", allow_patterns={ALLOW!r})
b = snapshot_download({REPO!r}, revision={commit!r}, allow_patterns={ALLOW!r})
out(a=a, b=b)
"""
        second = _client(hub.url, home, again)
        assert second["a"] == second["b"] == str(snap)
        assert hub.total_bytes() == 0
        assert [(m, p) for m, p, _ in hub.requests] == [("GET", f"/api/models/{REPO}/revision/main")]


def test_killed_download_leaves_incomplete_file_and_restarts_from_zero(repo_dir, tmp_path):
    """huggingface_hub 2.4.0 does NOT resume across processes: file_download._download_to_tmp_and_move writes to
    `blobs/<etag>.<uuid8>.incomplete` (unique per process, opened "wb", never looked for again) and calls http_get
    with resume_size=0; a SIGKILL skips its `finally: unlink`, so the stale file stays until `hf cache prune`."""
    home = tmp_path / "hf"
    size = (repo_dir / BIG).stat().st_size
    key = f"{REPO}/{BIG}"
    code = f"""
from huggingface_hub import hf_hub_download
out(path=hf_hub_download({REPO!r}, {BIG!r}, revision="main"))
"""
    throttle = {"path_suffix": BIG, "bytes_per_s": 1_500_000}
    with FakeHub({REPO: repo_dir}, lifetime_s=60, throttle=throttle) as hub:
        proc = subprocess.Popen(
            [sys.executable, "-c", _PRELUDE + code],
            env=client_env(hub.url, home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 20
            while hub.bytes_sent.get(key, 0) < size // 3:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "download did not start"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert hub.wait_idle(5)  # the server notices the dead client at its next write
        sent_before_kill = hub.bytes_sent[key]
        assert size // 3 <= sent_before_kill < size

        blobs = home / "hub" / "models--fake-org--tiny-diffusion" / "blobs"
        leftovers = sorted(blobs.glob("*.incomplete"))
        assert len(leftovers) == 1
        stale = leftovers[0]
        assert stale.name.startswith(_sha256(repo_dir / BIG) + ".") and len(stale.name.split(".")) == 3
        # httpx2 iter_bytes(chunk_size=10 MiB) buffers in memory: a 3 MiB body is not on disk before it is complete
        assert stale.stat().st_size < size

        hub.throttle = None
        hub.reset_counts()
        done = _client(hub.url, home, code)
        assert Path(done["path"]).read_bytes() == (repo_dir / BIG).read_bytes()
        # True 2.4.0 behaviour: full re-download, no Range header, stale .incomplete left behind.
        assert hub.bytes_sent == {key: size}
        assert not any("Range" in h for _, _, h in hub.requests)
        assert [m for m, p, _ in hub.requests if p.endswith(BIG)] == ["HEAD", "GET"]
        assert stale.exists() and sorted(blobs.glob("*.incomplete")) == [stale]


def test_dropped_connection_is_resumed_with_range_in_the_same_process(tmp_path):
    """Within one call, http_get retries a broken body with `Range: bytes=<bytes written>-`. Bytes are written in
    10 MiB chunks (constants.DOWNLOAD_CHUNK_SIZE), so only a file > 10 MiB resumes mid-way; a smaller file restarts."""
    repo = tmp_path / "repo"
    repo.mkdir()
    rnd = random.Random(7)
    mib = 1024 * 1024
    (repo / "big.bin").write_bytes(rnd.randbytes(12 * mib))
    (repo / "small.bin").write_bytes(rnd.randbytes(3 * mib))
    code = """
from huggingface_hub import hf_hub_download
out(big=hf_hub_download("o/r", "big.bin"), small=hf_hub_download("o/r", "small.bin"))
"""
    fetch = 'from huggingface_hub import hf_hub_download\nout(path=hf_hub_download("o/r", {!r}))'
    drop_big = {"path_suffix": "big.bin", "drop_after_bytes": 11 * mib}
    with FakeHub({"o/r": repo}, lifetime_s=60, throttle=drop_big) as hub:
        res = _client(hub.url, tmp_path / "hf", fetch.format("big.bin"))
        assert Path(res["path"]).read_bytes() == (repo / "big.bin").read_bytes()
        gets = [(p, h.get("Range")) for m, p, h in hub.requests if m == "GET" and p.endswith("big.bin")]
        assert gets == [("/o/r/resolve/main/big.bin", None), ("/o/r/resolve/main/big.bin", f"bytes={10 * mib}-")]
        assert hub.bytes_sent["o/r/big.bin"] == 11 * mib + 2 * mib

        hub.throttle = {"path_suffix": "small.bin", "drop_after_bytes": 1 * mib}
        res = _client(hub.url, tmp_path / "hf", fetch.format("small.bin"))
        assert Path(res["path"]).read_bytes() == (repo / "small.bin").read_bytes()
        gets = [h.get("Range") for m, p, h in hub.requests if m == "GET" and p.endswith("small.bin")]
        assert gets == [None, None]  # nothing was on disk yet => restarted from byte 0
        assert hub.bytes_sent["o/r/small.bin"] == 1 * mib + 3 * mib


def test_unknown_revision_repo_and_file_errors(repo_dir, tmp_path):
    with FakeHub({REPO: repo_dir}, lifetime_s=60) as hub:
        code = f"""
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
api = HfApi()
out(
    info_rev=catch(lambda: api.model_info({REPO!r}, revision="no-such-branch")),
    info_commit=catch(lambda: api.model_info({REPO!r}, revision="0" * 40)),
    snap_rev=catch(lambda: snapshot_download({REPO!r}, revision="no-such-branch")),
    dl_rev=catch(lambda: hf_hub_download({REPO!r}, "model_index.json", revision="no-such-branch")),
    info_repo=catch(lambda: api.model_info("nobody/nothing")),
    snap_repo=catch(lambda: snapshot_download("nobody/nothing")),
    dl_repo=catch(lambda: hf_hub_download("nobody/nothing", "model_index.json")),
    dl_file=catch(lambda: hf_hub_download({REPO!r}, "missing.json")),
)
"""
        r = _client(hub.url, tmp_path / "hf", code)
    for k in ("info_rev", "info_commit", "snap_rev", "dl_rev"):
        assert r[k]["cls"] == "RevisionNotFoundError", (k, r[k])
    for k in ("info_repo", "snap_repo", "dl_repo"):
        assert r[k]["cls"] == "RepositoryNotFoundError", (k, r[k])
    assert r["dl_file"]["cls"] == "RemoteEntryNotFoundError" and "EntryNotFoundError" in r["dl_file"]["mro"]
    assert all(v["slept_s"] == 0 for v in r.values()), r  # an answer of the hub is final: no back-off, no retry


def test_refuses_other_hosts_and_stops_after_its_lifetime(repo_dir):
    for host in ("0.0.0.0", "localhost", "::", ""):
        with pytest.raises(ValueError):
            FakeHub({REPO: repo_dir}, host=host)
    hub = FakeHub({REPO: repo_dir}, lifetime_s=0.5).start()
    try:
        with urllib.request.urlopen(f"{hub.url}/api/models/{REPO}", timeout=5) as r:
            assert json.load(r)["sha"] == hub.commits[REPO]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{hub.url}/api/models/nobody/nothing", timeout=5)
        assert e.value.code == 401 and e.value.headers["X-Error-Code"] == "RepoNotFound"
        deadline = time.monotonic() + 5
        while hub.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not hub.running
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{hub.url}/api/models/{REPO}", timeout=2)
    finally:
        hub.stop()
        hub.stop()  # idempotent


def test_unreachable_endpoint_and_offline_mode_fail_fast(tmp_path):
    url = f"http://127.0.0.1:{_free_closed_port()}"
    code = f"""
import huggingface_hub.constants as C
from huggingface_hub import HfApi, snapshot_download
unreachable = catch(lambda: HfApi().model_info("o/r", files_metadata=True))
snap = catch(lambda: snapshot_download("o/r", revision="main"))
C.HF_HUB_OFFLINE = True  # what HF_HUB_OFFLINE=1 sets at import time
offline = catch(lambda: HfApi().model_info("o/r"))
snap_offline = catch(lambda: snapshot_download("o/r"))
out(unreachable=unreachable, snap=snap, offline=offline, snap_offline=snap_offline)
"""
    r = _client(url, tmp_path / "hf", code, timeout=30)
    print(json.dumps({k: (v["cls"], v["module"], v["slept_s"], v["connects"]) for k, v in r.items()}))
    assert r["unreachable"]["cls"] == "ConnectError" and r["unreachable"]["module"].startswith("httpx2")
    assert r["snap"]["cls"] == "LocalEntryNotFoundError"
    assert r["offline"]["cls"] == "OfflineModeIsEnabled"
    assert r["snap_offline"]["cls"] == "LocalEntryNotFoundError"
    # Fail fast: one try at the unreachable hub, none offline, and no back-off before giving up.
    assert [r[k]["connects"] for k in ("unreachable", "snap", "offline", "snap_offline")] == [1, 1, 0, 0], r
    assert all(v["slept_s"] == 0 for v in r.values()), r
