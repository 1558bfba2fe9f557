"""A tiny local Hugging Face Hub for tests: the endpoints huggingface_hub 2.4 calls to upload and download a model repo.

Point the real client at it with ``HF_ENDPOINT=<server.url>`` (plus any dummy token and
``HF_HUB_DISABLE_XET=1``, so uploads take the plain LFS path instead of the Xet protocol). Implemented,
as read from the installed client (``hf_api.py``, ``_commit_api.py``, ``lfs.py``, ``file_download.py``):

    POST /api/repos/create                                   HfApi.create_repo
    POST /api/validate-yaml                                  create_commit (README.md metadata check)
    POST /api/models/{repo}/preupload/{rev}                  upload mode per file: "regular" or "lfs"
    POST /{repo}.git/info/lfs/objects/batch                  LFS batch API (basic transfer)
    PUT  /lfs-upload/{sha256}, POST /lfs-verify/{sha256}     LFS object upload + verify
    POST /api/models/{repo}/commit/{rev}                     ndjson commit (inline base64 files, LFS pointers)
    GET  /api/models/{repo}[/revision/{rev}]                 repo info (sha, siblings)
    GET  /api/models/{repo}/tree/{rev}[/{path}]              file listing (snapshot_download)
    HEAD/GET /{repo}/resolve/{rev}/{path}                    file metadata (ETag, X-Repo-Commit, size) + bytes;
                                                             LFS files redirect (X-Linked-Etag, X-Linked-Size) to
    GET  {cdn}/lfs-files/{sha256}                            a second origin standing in for the Hub's CDN

Writes need an ``Authorization: Bearer ...`` header. Files matching the LFS patterns of the repo's
``.gitattributes`` (``*.safetensors``, ``*.bin``, ... as on the Hub), binary files and files over
10 MB are uploaded through LFS; others inline in the commit. State lives in memory, blobs on disk.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in
                        ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.h5", "*.onnx", "*.zip"))
LFS_MIN_SIZE = 10 * 1024 * 1024
ZERO_COMMIT = "0" * 40


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class _File:
    sha256: str
    size: int
    lfs: bool


@dataclass
class _Repo:
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit
    commits: dict[str, dict[str, _File]] = field(default_factory=dict)  # commit -> tree {path: file}


class HubServer:
    """Run with ``with HubServer(tmp_path) as hub: ...``; ``hub.url`` is the endpoint, ``hub.requests`` the log."""

    def __init__(self, root: str | Path, username: str = "genrec-tester"):
        self.blob_dir = Path(root) / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        # Two origins: the Hub itself and a stand-in for its CDN (the client follows redirects only within the Hub).
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
        for httpd in self._servers:
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self._servers[0].server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        host, port = self._servers[1].server_address[:2]
        return f"http://{host}:{port}"

    # ---- storage ------------------------------------------------------------------------------------------
    def store_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        (self.blob_dir / sha256).write_bytes(data)
        return sha256

    def read_blob(self, sha256: str) -> bytes:
        return (self.blob_dir / sha256).read_bytes()

    def resolve(self, repo_id: str, revision: str) -> str | None:
        repo = self.repos[repo_id]
        if revision in repo.branches:
            return repo.branches[revision]
        return revision if revision in repo.commits else None

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """{path: content} of a repo at a revision (what a test compares with what it pushed)."""
        tree = self.repos[repo_id].commits[self.resolve(repo_id, revision)]
        return {path: self.read_blob(f.sha256) for path, f in tree.items()}

    def commit(self, repo_id: str, branch: str, changes: dict[str, _File | None], message: str) -> str:
        repo = self.repos[repo_id]
        parent = repo.branches.get(branch)
        tree = dict(repo.commits[parent]) if parent else {}
        for path, f in changes.items():
            if f is None:
                tree = {p: v for p, v in tree.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
            else:
                tree[path] = f
        sha = hashlib.sha1(json.dumps([parent, message, len(repo.commits), sorted((p, f.sha256) for p, f in tree.items())]).encode()).hexdigest()
        repo.commits[sha] = tree
        repo.branches[branch] = sha
        return sha

    def upload_mode(self, repo_id: str, branch: str, path: str, sample: bytes, size: int) -> str:
        commit = self.repos[repo_id].branches.get(branch)
        attributes = self.files(repo_id, commit).get(".gitattributes", b"").decode() if commit else ""
        patterns = [line.split()[0] for line in attributes.splitlines() if "filter=lfs" in line]
        lfs = any(fnmatch.fnmatch(Path(path).name, p) for p in patterns) or size > LFS_MIN_SIZE or b"\0" in sample
        return "lfs" if lfs else "regular"


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    # ---- plumbing -----------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    def _authorized(self) -> bool:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._error(401, "Invalid credentials in Authorization header")
            return False
        return True

    def _repo(self, repo_id: str) -> _Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _route(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        with self.hub.lock:
            self.hub.requests.append((self.command, path))
        routes = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", self.preupload),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", self.commit),
            ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)(/revision/(?P<rev>[^/]+))?", self.repo_info),
            ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(/(?P<sub>.+))?", self.tree),
            ("POST", r"/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", self.lfs_batch),
            ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", self.lfs_upload),
            ("POST", r"/lfs-verify/(?P<oid>[0-9a-f]{64})", self.lfs_verify),
            ("GET", r"/lfs-files/(?P<oid>[0-9a-f]{64})", self.lfs_file),
            ("HEAD", r"/lfs-files/(?P<oid>[0-9a-f]{64})", self.lfs_file),
            ("GET", r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve_file),
            ("HEAD", r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve_file),
        ]
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if method == self.command and match:
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                with self.hub.lock:
                    return handler(query=query, **args)
        self._body()
        self._error(404, f"no route for {self.command} {path} in the test Hub server")

    do_GET = do_HEAD = do_POST = do_PUT = _route

    # ---- upload endpoints -------------------------------------------------------------------------------------
    def create_repo(self, query) -> None:
        payload = json.loads(self._body())
        if not self._authorized():
            return
        if payload.get("type", "model") != "model":
            return self._error(400, "the test Hub server only hosts model repos")
        repo_id = f"{payload.get('organization') or self.hub.username}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        if repo_id in self.hub.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        self.hub.repos[repo_id] = _Repo()
        sha256 = self.hub.store_blob(GITATTRIBUTES.encode())
        self.hub.commit(repo_id, "main", {".gitattributes": _File(sha256, len(GITATTRIBUTES), lfs=False)}, "initial commit")
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self, query) -> None:
        content = json.loads(self._body())["content"]
        match = re.match(r"^---\n(.*?)\n---\n", content, flags=re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as e:
            return self._json(400, {"errors": [{"message": f"invalid YAML: {e}"}]})
        if metadata is not None and not isinstance(metadata, dict):
            return self._json(400, {"errors": [{"message": "metadata must be a YAML mapping"}]})
        self._json(200, {"errors": [], "warnings": []})

    def preupload(self, query, repo: str, rev: str) -> None:
        payload = json.loads(self._body())
        if not self._authorized() or self._repo(repo) is None:
            return
        commit = self.hub.resolve(repo, rev)
        tree = self.hub.repos[repo].commits.get(commit, {})
        files = []
        for f in payload["files"]:
            mode = self.hub.upload_mode(repo, rev, f["path"], base64.b64decode(f["sample"]), f["size"])
            existing = tree.get(f["path"])
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else git_blob_sha1(self.hub.read_blob(existing.sha256))
            files.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": files, "commitOid": commit})

    def lfs_batch(self, query, repo: str) -> None:
        payload = json.loads(self._body())
        if not self._authorized() or self._repo(repo) is None:
            return
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            return self._error(400, "the test Hub server supports LFS uploads with the basic transfer only")
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not (self.hub.blob_dir / obj["oid"]).exists():
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}"},
                                    "verify": {"href": f"{self.hub.url}/lfs-verify/{obj['oid']}"}}
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), content_type="application/vnd.git-lfs+json")

    def lfs_upload(self, query, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, f"LFS object content does not match oid {oid}")
        self.hub.store_blob(data)
        self._send(200)

    def lfs_verify(self, query, oid: str) -> None:
        payload = json.loads(self._body())
        path = self.hub.blob_dir / oid
        if not path.exists() or path.stat().st_size != payload["size"]:
            return self._error(404, f"LFS object {oid} missing or of the wrong size")
        self._json(200, {"success": True})

    def commit(self, query, repo: str, rev: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not self._authorized() or self._repo(repo) is None:
            return
        if query.get("create_pr"):
            return self._error(400, "the test Hub server does not implement pull requests")
        header = lines[0]["value"] if lines and lines[0]["key"] == "header" else {}
        if rev not in self.hub.repos[repo].branches:
            return self._error(404, f"branch {rev} not found", "RevisionNotFound")
        if header.get("parentCommit") not in (None, self.hub.repos[repo].branches[rev]):
            return self._error(412, "parentCommit is not the head of the branch")
        changes: dict[str, _File | None] = {}
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                data = base64.b64decode(value["content"])
                changes[value["path"]] = _File(self.hub.store_blob(data), len(data), lfs=False)
            elif key == "lfsFile":
                blob = self.hub.blob_dir / value["oid"]
                if not blob.exists():
                    return self._error(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                changes[value["path"]] = _File(value["oid"], blob.stat().st_size, lfs=True)
            elif key in ("deletedFile", "deletedFolder"):
                changes[value["path"]] = None
            else:
                return self._error(400, f"unknown commit operation {key!r}")
        sha = self.hub.commit(repo, rev, changes, header.get("summary", ""))
        self._json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.hub.url}/{repo}/commit/{sha}", "pullRequestUrl": None})

    # ---- download endpoints ---------------------------------------------------------------------------------------
    def _tree(self, repo: str, rev: str) -> tuple[str, dict[str, _File]] | None:
        if self._repo(repo) is None:
            return None
        commit = self.hub.resolve(repo, rev)
        if commit is None:
            self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return None
        return commit, self.hub.repos[repo].commits[commit]

    def repo_info(self, query, repo: str, rev: str = "main") -> None:
        found = self._tree(repo, rev)
        if found:
            commit, tree = found
            self._json(200, {"id": repo, "modelId": repo, "sha": commit, "private": False, "tags": [],
                             "siblings": [{"rfilename": p} for p in sorted(tree)]})

    def tree(self, query, repo: str, rev: str, sub: str = "") -> None:
        found = self._tree(repo, rev)
        if not found:
            return
        _, tree = found
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        prefix = sub.rstrip("/") + "/" if sub else ""
        entries, folders = [], set()
        for path in sorted(p for p in tree if p.startswith(prefix)):
            rest = path[len(prefix):].split("/")
            if len(rest) > 1 and not recursive:
                folders.add(prefix + rest[0])
                continue
            folders.update(prefix + "/".join(rest[:depth]) for depth in range(1, len(rest)))
            f = tree[path]
            if f.lfs:
                pointer = lfs_pointer(f.sha256, f.size)
                entries.append({"type": "file", "path": path, "size": f.size, "oid": git_blob_sha1(pointer),
                                "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": len(pointer)}})
            else:
                entries.append({"type": "file", "path": path, "size": f.size, "oid": git_blob_sha1(self.hub.read_blob(f.sha256))})
        entries += [{"type": "directory", "path": d, "size": 0, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(folders)]
        self._json(200, entries)

    def resolve_file(self, query, repo: str, rev: str, file: str) -> None:
        found = self._tree(repo, rev)
        if not found:
            return
        commit, tree = found
        f = tree.get(file)
        if f is None:
            return self._error(404, f"Entry not found: {file}", "EntryNotFound")
        if f.lfs:  # the Hub answers LFS files with a redirect to its CDN
            return self._send(302, headers={"Location": f"{self.hub.cdn_url}/lfs-files/{f.sha256}", "X-Repo-Commit": commit,
                                            "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(f.size), "ETag": f'"{f.sha256}"'})
        data = self.hub.read_blob(f.sha256)
        self._send(200, data, {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": commit}, content_type="application/octet-stream")

    def lfs_file(self, query, oid: str) -> None:
        path = self.hub.blob_dir / oid
        if not path.exists():
            return self._error(404, f"LFS object {oid} not found")
        data = path.read_bytes()
        ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if ranged:
            start = int(ranged.group(1))
            return self._send(206, data[start:], {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}", "ETag": f'"{oid}"'},
                              content_type="application/octet-stream")
        self._send(200, data, {"ETag": f'"{oid}"'}, content_type="application/octet-stream")
