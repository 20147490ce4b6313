"""A small Hugging Face Hub stand-in on 127.0.0.1, so tests exercise the real `huggingface_hub` client.

It speaks the few endpoints a small upload and a file download use (see /work/shared/notes/ecosystem.md):
create a repo, validate a model card's YAML, pre-upload (always "regular": no LFS or xet), commit (ndjson with
base64 files), and HEAD/GET `/<repo>/resolve/<revision>/<path>`; uploads to Spaces too (a repo keeps the type
and SDK it was created with). Repos live in memory as a list of commits;
writes need `Authorization: Bearer <token>`; a private repo is invisible without it. Every request is
recorded, and any request it does not know is answered 404 and kept in `unknown`, so a test can show what
a newer client asked for.

    with HubServer(token="hf_test") as hub:
        ... HF_ENDPOINT=hub.url ...
        hub.files("user/name")   # {path: bytes} at main
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml


@dataclass
class Repo:
    private: bool
    type: str = "model"  # or "space"
    sdk: str | None = None  # a Space's SDK, as create_repo sent it
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (oid, files), oldest first

    def snapshot(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        if not self.commits:
            return None
        if revision == "main":
            return self.commits[-1]
        return next((c for c in self.commits if c[0] == revision), None)


class HubServer:
    def __init__(self, token: str = "hf_test_token"):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        snap = self.repos[repo_id].snapshot(revision)
        return dict(snap[1]) if snap else {}


# Routes, most specific first. Repo ids are exactly two path segments, as on the Hub.
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), "create"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("POST", re.compile(rf"/api/(?P<kind>models|spaces)/{_REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(rf"/api/(?P<kind>models|spaces)/{_REPO}/commit/(?P<rev>[^/]+)"), "commit"),
    ("HEAD", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
    ("GET", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), "resolve"),
]


def _handler_for(hub: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client expects

        def log_message(self, *args) -> None:  # quiet: the test output stays readable
            pass

        # -- plumbing ------------------------------------------------------------------------------
        def _dispatch(self) -> None:
            path = urlsplit(self.path).path
            with hub._lock:
                hub.requests.append((self.command, path))
            for method, pattern, name in _ROUTES:
                match = pattern.fullmatch(path)
                if method == self.command and match:
                    groups = {k: unquote(v) for k, v in match.groupdict().items()}
                    return getattr(self, name)(**groups)
            with hub._lock:
                hub.unknown.append((self.command, path))
            self._reply(404, {"error": f"not served by the test hub: {self.command} {path}"})

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

        def _body(self) -> bytes:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
            return data

        def _reply(self, status: int, payload=None, headers: dict | None = None,
                   raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            kind = "application/octet-stream" if raw is not None else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _require_auth(self) -> bool:
            if self._authorized():
                return True
            self._body()
            self._reply(401, {"error": "Invalid credentials in Authorization header"})
            return False

        def _visible_repo(self, repo_id: str, kind: str = "models") -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and not self._authorized()) or f"{repo.type}s" != kind:
                self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return None
            return repo

        # -- endpoints -----------------------------------------------------------------------------
        def create(self) -> None:
            if not self._require_auth():
                return
            body = json.loads(self._body())
            repo_id = f"{body.get('organization')}/{body['name']}"
            kind = body.get("type") or "model"
            url = f"{hub.url}/{'spaces/' if kind == 'space' else ''}{repo_id}"
            # huggingface_hub 1.x+ sends `visibility`, earlier versions `private`.
            private = bool(body.get("private")) or body.get("visibility") == "private"
            with hub._lock:
                if repo_id in hub.repos:
                    return self._reply(409, {"error": f"You already created this {kind} repo", "url": url})
                hub.repos[repo_id] = Repo(private=private, type=kind, sdk=body.get("sdk"))
            self._reply(200, {"url": url, "name": repo_id})

        def validate_yaml(self) -> None:
            content = json.loads(self._body())["content"]
            errors = []
            match = re.match(r"---\n(.*?)\n---\n", content, re.DOTALL)
            try:
                if match is None or not isinstance(yaml.safe_load(match.group(1)), dict):
                    errors.append({"message": "README.md has no YAML metadata block"})
            except yaml.YAMLError as e:
                errors.append({"message": f"invalid YAML: {e}"})
            self._reply(200, {"errors": errors, "warnings": []})

        def preupload(self, repo: str, rev: str, kind: str) -> None:
            if not self._require_auth() or self._visible_repo(repo, kind) is None:
                return
            files = json.loads(self._body())["files"]
            self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                         "oid": None} for f in files]})

        def commit(self, repo: str, rev: str, kind: str) -> None:
            if not self._require_auth():
                return
            target = self._visible_repo(repo, kind)
            if target is None:
                return
            lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
            with hub._lock:
                snap = target.snapshot(rev)
                files = dict(snap[1]) if snap else {}
                for line in lines:
                    if line["key"] == "file":
                        value = line["value"]
                        assert value.get("encoding") == "base64", value.get("encoding")
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif line["key"] == "deletedFile":
                        files.pop(line["value"]["path"], None)
                digest = hashlib.sha1(repr((len(target.commits), sorted(files.items()))).encode()).hexdigest()
                target.commits.append((digest, files))
            self._reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/{digest}", "commitOid": digest,
                              "pullRequestUrl": None})

        def resolve(self, repo: str, rev: str, path: str) -> None:
            target = self._visible_repo(repo)
            if target is None:
                return
            snap = target.snapshot(rev)
            if snap is None:
                return self._reply(404, {"error": f"revision {rev} not found"},
                                   {"X-Error-Code": "RevisionNotFound"})
            oid, files = snap
            if path not in files:
                return self._reply(404, {"error": "Entry not found"},
                                   {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": oid})
            content = files[path]
            self._reply(200, raw=content, headers={"ETag": f'"{hashlib.sha1(content).hexdigest()}"',
                                                   "X-Repo-Commit": oid})

    return Handler
