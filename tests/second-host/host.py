#!/usr/bin/env python3
"""A second host for plugin.wasm, written in Python on the `wasmtime` package
from PyPI: it proves the component needs nothing from our Rust host. Every
import of the world (registry, filesystem with its `output` resource, events)
is implemented here from the WIT alone, with the standard library.

Usage:
    host.py PLUGIN.wasm --source HOST[:PORT]/PATH [--include-package EXPR]...
            [--exclude-package NAME]... [--skip-vex-images] [--no-packages]
            [--log-level LEVEL] BUNDLE_DIR

It runs `pull-packages` (unless --no-packages) then `pull-package-versions`,
as `host run ... pull` does, and prints both summaries as one JSON document on
stdout. Exit codes: 0 success, 1 the pull failed, 2 usage error.

Deliberately small: plain HTTP, anonymous access, one request at a time, no
retries, gzip or plain tar layers (not zstd). See the README section "Loading
the plugin from another host".
"""

import argparse
import errno
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import stat as statmod
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request

import wasmtime
import wasmtime.component as wc
from wasmtime.component import Record, ResourceHost, ResourceType, Variant

WIT_VERSION = "0.1.0"
PKG = "deckhouse:packages-mirror"

# Limits shared with the Rust host, so both hosts accept the same registries.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_SMALL_BODY = 16 * 1024 * 1024
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_OPEN_OUTPUTS = 64
REQUEST_TIMEOUT_S = 300

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ACCEPT_MANIFESTS = ", ".join(MANIFEST_TYPES)

LEVELS = ["error", "warn", "info", "debug", "trace"]

# wasmtime-py lowers a `result` without tags when the ok and err payloads have
# different Python classes, and picks `ok` whenever the ok side could be
# `None` (an `option`, or no payload) -- so `result<option<descriptor>,
# registry-error>` could never carry an error. Tagged results everywhere
# (`Variant("ok", x)` / `Variant("err", e)`) make every call site explicit.
wc.ResultType._tagged = lambda self: True  # type: ignore[method-assign]


def ok(value=None):
    return Variant("ok", value)


def err(error):
    return Variant("err", error)


def record(**fields):
    """A WIT record; Python names use `_` where WIT names use `-`."""
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def field(r, name):
    return getattr(r, name.replace("_", "-"))


class Failure(Exception):
    """An import failed; `value` is the WIT error variant to return."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


def fs_err(tag, message):
    return Failure(Variant(tag, message))


def reg_err(tag, message=None):
    return Failure(Variant(tag, message))


# ---------------------------------------------------------------- events


class Events:
    def __init__(self, level):
        self.level = LEVELS.index(level)
        self.cancelled = False

    def log(self, level, message):
        if LEVELS.index(level) <= self.level:
            print(f"{level}: {message}", file=sys.stderr, flush=True)

    def progress(self, event):
        tag, payload = event.tag, event.payload
        if tag == "package-started":
            line = f"[{payload[1]}/{payload[2]}] package {payload[0]}"
        elif tag == "phase":
            line = f"{payload[0]}: {payload[1]}"
        elif tag == "blobs-planned":
            line = f"transferring {payload[0]} blobs ({payload[1]} bytes)"
        elif tag == "archive-written":
            line = f"wrote {payload[0]} ({payload[1]} bytes)"
        else:
            line = f"{tag}: {payload}"
        self.log("info", line)


# ------------------------------------------------------------ filesystem


def path_components(path):
    """The rules of the WIT header: relative, `/`-separated, no `.`/`..`."""
    if path == ".":
        return []
    why = None
    if path == "":
        why = "is empty"
    elif "\0" in path:
        why = "contains a NUL byte"
    elif "\\" in path:
        why = "contains a backslash"
    elif path.startswith("/"):
        why = "is absolute"
    else:
        for part in path.split("/"):
            if part == "":
                why = "has an empty component"
            elif part in (".", ".."):
                why = "has a `.` or `..` component"
    if why:
        raise fs_err("denied", f"path {path!r} {why}")
    return path.split("/")


def os_error(e, path):
    """An OSError on guest path `path` as an fs-error (never a host path)."""
    code = e.errno
    if code == errno.ELOOP:
        return fs_err("denied", f"{path}: is a symbolic link, which is not followed")
    if code == errno.ENOENT:
        return fs_err("not-found", f"{path}: not found")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return fs_err("no-space", f"{path}: the disk is full (no space left on device)")
    if code in (errno.EACCES, errno.EPERM):
        return fs_err("denied", f"{path}: permission denied")
    return fs_err("other", f"{path}: {e.strerror or e}")


class Confined:
    """The bundle directory; no guest path leaves it."""

    def __init__(self, root):
        self.root = os.path.realpath(root)

    def resolve(self, path):
        full = self.root
        exists = True
        for part in path_components(path):
            full = os.path.join(full, part)
            if not exists:
                continue
            try:
                if statmod.S_ISLNK(os.lstat(full).st_mode):
                    raise fs_err(
                        "denied",
                        f"path {path!r} goes through a symbolic link, which is not followed",
                    )
            except OSError:
                exists = False
        return full

    def open_read(self, path):
        full = self.resolve(path)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise os_error(e, path) from None
        return os.fdopen(fd, "rb")

    def create(self, path):
        full = self.resolve(path)
        try:
            fd = os.open(
                full,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
            )
        except OSError as e:
            raise os_error(e, path) from None
        return os.fdopen(fd, "wb", buffering=256 * 1024)

    def stat(self, path):
        full = self.resolve(path)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise os_error(e, path) from None
        is_dir = statmod.S_ISDIR(st.st_mode)
        return record(size=0 if is_dir else st.st_size, is_dir=is_dir)

    def create_dir_all(self, path):
        full = self.resolve(path)
        try:
            os.makedirs(full, exist_ok=True)
        except OSError as e:
            raise os_error(e, path) from None

    def read_file(self, path, max_bytes):
        with self.open_read(path) as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise fs_err("other", f"{path}: more than the {max_bytes} bytes allowed")
        return data

    def write_file(self, path, data):
        full = self.resolve(path)
        tmp_guest = f"{path}.write.tmp"
        tmp = self.resolve(tmp_guest)
        try:
            with self.create(tmp_guest) as f:
                f.write(data)
                f.flush()
                os.fdatasync(f.fileno())
            os.rename(tmp, full)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise os_error(e, path) from None

    def rename(self, source, target):
        src, dst = self.resolve(source), self.resolve(target)
        try:
            os.rename(src, dst)
        except OSError as e:
            raise os_error(e, f"rename {source} to {target}") from None

    def remove(self, path):
        full = self.resolve(path)
        if full == self.root:
            raise fs_err("denied", "the bundle directory itself cannot be removed")
        try:
            if statmod.S_ISDIR(os.lstat(full).st_mode):
                shutil.rmtree(full)  # does not follow links inside the tree
            else:
                os.unlink(full)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise os_error(e, path) from None

    def list_dir(self, path):
        full = self.resolve(path)
        try:
            return sorted(os.listdir(full))
        except OSError as e:
            raise os_error(e, path) from None


class Output:
    """An archive being written (the WIT `output` resource)."""

    def __init__(self, fs, path):
        self.fs = fs
        self.path = path
        self.file = fs.create(path)

    def _open(self):
        if self.file is None:
            raise fs_err("other", f"{self.path}: output already finished")
        return self.file

    def write(self, data):
        try:
            self._open().write(data)
        except OSError as e:
            raise os_error(e, self.path) from None

    def copy_from(self, src, offset, length):
        out = self._open()
        with self.fs.open_read(src) as source:
            size = os.fstat(source.fileno()).st_size
            if offset + length > size:
                raise fs_err(
                    "other",
                    f"{src}: is {size} bytes; cannot copy {length} bytes from offset {offset}",
                )
            source.seek(offset)
            left = length
            try:
                while left:
                    chunk = source.read(min(left, 1024 * 1024))
                    if not chunk:
                        break
                    out.write(chunk)
                    left -= len(chunk)
            except OSError as e:
                raise os_error(e, f"{self.path} (copying from {src})") from None
            if left:
                raise fs_err(
                    "other",
                    f"{src}: copied {length - left} of {length} bytes; the file changed while being read",
                )

    def finish(self):
        out = self._open()
        self.file = None
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as e:
            raise os_error(e, self.path) from None
        finally:
            out.close()

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


# ------------------------------------------------------------ layers


class TooBig(Exception):
    pass


class Limited:
    """A reader that refuses to deliver more than `limit` bytes."""

    def __init__(self, inner, limit):
        self.inner, self.left = inner, limit

    def read(self, n=-1):
        want = self.left + 1 if n is None or n < 0 else min(n, self.left + 1)
        data = self.inner.read(want)
        if len(data) > self.left:
            raise TooBig()
        self.left -= len(data)
        return data


class Prefixed:
    """`prefix` followed by the rest of `inner` (after sniffing)."""

    def __init__(self, prefix, inner):
        self.prefix, self.inner = prefix, inner

    def read(self, n=-1):
        if self.prefix:
            if n is None or n < 0:
                data, self.prefix = self.prefix + self.inner.read(), b""
                return data
            data, self.prefix = self.prefix[:n], self.prefix[n:]
            return data
        return self.inner.read(n)


def normalize_entry_name(name):
    while True:
        if name.startswith("./"):
            name = name[2:]
        elif name.startswith("/"):
            name = name[1:]
        else:
            return name


def scan_layer(raw, names, max_bytes):
    """The regular files among `names` in a gzip or plain tar stream, in the
    order of `names`. Raises ValueError with the reason when it cannot."""
    if not names:
        return []
    wanted = [normalize_entry_name(n) for n in names]
    found = [None] * len(names)
    prefix = raw.read(4)
    if prefix.startswith(b"\x28\xb5\x2f\xfd"):
        raise ValueError("layer is zstd-compressed, which this host does not read")
    stream = Prefixed(prefix, raw)
    if prefix.startswith(b"\x1f\x8b"):
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    try:
        with tarfile.open(fileobj=Limited(stream, max_bytes), mode="r|") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                name = normalize_entry_name(member.name)
                if name not in wanted:
                    continue
                slot = wanted.index(name)
                if found[slot] is not None:
                    continue
                if member.size > MAX_FILE_BYTES:
                    raise ValueError(
                        f"file {name} in layer is {member.size} bytes, more than the {MAX_FILE_BYTES} allowed"
                    )
                found[slot] = tar.extractfile(member).read()
                if all(f is not None for f in found):
                    break
    except TooBig:
        raise ValueError(
            f"layer has more than {max_bytes} bytes of uncompressed data before the requested files"
        ) from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"layer is not a readable tar: {e}") from None
    return [
        record(name=name, content=content)
        for name, content in zip(names, found)
        if content is not None
    ]


# ------------------------------------------------------------ registry

REPO_PART = re.compile(r"^[a-z0-9._-]+$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def valid_repo(repo):
    return (
        0 < len(repo) <= 255
        and all(p not in ("", ".", "..") and REPO_PART.match(p) for p in repo.split("/"))
    )


def bare_media_type(value):
    return (value or "").split(";")[0].strip().lower()


def media_type_from_body(body):
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("mediaType"), str):
        t = bare_media_type(doc["mediaType"])
        return t if t in MANIFEST_TYPES else None
    if doc.get("schemaVersion") != 2:
        return None
    if "manifests" in doc:
        return MANIFEST_TYPES[1]
    if "config" in doc or "layers" in doc:
        return MANIFEST_TYPES[0]
    return None


class Registry:
    """The `registry` import over plain HTTP, anonymous, one request at a time."""

    def __init__(self, source, fs, events):
        host, _, root = source.partition("/")
        self.host, self.root = host, root.strip("/")
        self.fs, self.events = fs, events
        # Loopback registries: never through a proxy from the environment.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def full_repo(self, repo):
        if not valid_repo(repo):
            raise reg_err("other", f"invalid repository name {repo!r}")
        return f"{self.root}/{repo}" if self.root else repo

    def display(self, full):
        return f"{self.host}/{full}"

    def url(self, path):
        return f"http://{self.host}/v2/{path}"

    def check_cancelled(self):
        if self.events.cancelled:
            raise reg_err("cancelled")

    def send(self, method, url, what, accept=None, timeout=REQUEST_TIMEOUT_S):
        """The response, or (status, reason, body) for an HTTP error status."""
        self.check_cancelled()
        req = urllib.request.Request(url, method=method)
        if accept:
            req.add_header("Accept", accept)
        try:
            return self.opener.open(req, timeout=timeout), None
        except urllib.error.HTTPError as e:
            body = e.read(64 * 1024) if method != "HEAD" else b""
            return None, (e.code, e.reason, body)
        except TimeoutError as e:
            raise reg_err("timeout", f"{what}: {e}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError):
                raise reg_err("timeout", f"{what}: {reason}") from None
            raise reg_err("other", f"{what}: {reason}") from None

    @staticmethod
    def failure(status, reason, body, what):
        """The registry-error for an error answer (distribution-spec codes)."""
        codes = []
        try:
            for e in json.loads(body).get("errors", []):
                codes.append((str(e.get("code", "")), str(e.get("message", ""))))
        except (ValueError, AttributeError):
            pass
        has = lambda c: any(code == c for code, _ in codes)
        if status == 404 or has("NAME_UNKNOWN") or has("MANIFEST_UNKNOWN") or has("BLOB_UNKNOWN"):
            tag = "not-found"
        elif status == 401 or has("UNAUTHORIZED"):
            tag = "unauthorized"
        elif status == 403 or has("DENIED"):
            tag = "denied"
        else:
            tag = "other"
        message = f"{what}: {status} {reason}"
        if codes:
            message += ": " + "; ".join(
                f"{c}: {m}" if c and m else (c or m) for c, m in codes
            )
        if tag == "unauthorized":
            message += " (this host has no credentials)"
        return reg_err(tag, message)

    def read_body(self, resp, limit, what):
        data = resp.read(limit + 1)
        if len(data) > limit:
            raise reg_err("integrity", f"{what}: answer larger than {limit} bytes")
        return data

    def list_tags(self, repo, timeout_ms):
        full = self.full_repo(repo)
        what = f"listing tags of {self.display(full)}"
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        url = self.url(f"{full}/tags/list?n=1000")
        tags, seen = [], set()
        while url not in seen:
            seen.add(url)
            timeout = REQUEST_TIMEOUT_S
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise reg_err("timeout", f"{what}: timed out after {timeout_ms} ms")
            resp, error = self.send("GET", url, what, timeout=timeout)
            if error:
                raise self.failure(*error, what)
            with resp:
                link = resp.headers.get("Link")
                body = self.read_body(resp, MAX_SMALL_BODY, what)
            try:
                page = json.loads(body)
                tags.extend(page.get("tags") or [])
            except (ValueError, AttributeError) as e:
                raise reg_err("other", f"{what}: unexpected tag list: {e}") from None
            match = re.search(r'<([^>]*)>\s*;[^,]*rel="?next"?', link or "")
            if not match:
                break
            next_url = urllib.parse.urljoin(url, match.group(1))
            if urllib.parse.urlsplit(next_url).netloc != self.host:
                raise reg_err("other", f"{what}: the next page is on another server")
            url = next_url
        return tags

    def manifest_url(self, ref):
        repo, reference = field(ref, "repo"), field(ref, "reference")
        full = self.full_repo(repo)
        if not (TAG.match(reference) or DIGEST.match(reference)):
            raise reg_err("other", f"invalid reference {reference!r} for {self.display(full)}")
        sep = "@" if DIGEST.match(reference) else ":"
        return self.url(f"{full}/manifests/{reference}"), f"{self.display(full)}{sep}{reference}"

    @staticmethod
    def check_digest(reference, digest, what):
        if DIGEST.match(reference) and reference != digest:
            raise reg_err("integrity", f"{what}: the registry served content with digest {digest}")

    def resolve_one(self, ref):
        url, what = self.manifest_url(ref)
        resp, error = self.send("HEAD", url, what, accept=ACCEPT_MANIFESTS)
        if error:
            status = error[0]
            if status == 404:
                return None
            if status in (403, 405, 501):
                # Registries that refuse HEAD still serve GET.
                return self.resolve_by_get(ref)
            raise self.failure(*error, what)
        with resp:
            digest = (resp.headers.get("Docker-Content-Digest") or "").strip()
            length = resp.headers.get("Content-Length")
            media_type = bare_media_type(resp.headers.get("Content-Type"))
        if DIGEST.match(digest) and length and length.strip().isdigit() and media_type in MANIFEST_TYPES:
            self.check_digest(field(ref, "reference"), digest, what)
            return record(media_type=media_type, digest=digest, size=int(length))
        return self.resolve_by_get(ref)

    def resolve_by_get(self, ref):
        try:
            return field(self.fetch_manifest(ref), "descriptor")
        except Failure as f:
            if f.value.tag == "not-found":
                return None
            raise

    def fetch_manifest(self, ref):
        url, what = self.manifest_url(ref)
        resp, error = self.send("GET", url, what, accept=ACCEPT_MANIFESTS)
        if error:
            raise self.failure(*error, what)
        with resp:
            content_type = bare_media_type(resp.headers.get("Content-Type"))
            body = self.read_body(resp, MAX_MANIFEST_BYTES, what)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.check_digest(field(ref, "reference"), digest, what)
        media_type = content_type if content_type in MANIFEST_TYPES else media_type_from_body(body)
        if media_type is None:
            raise reg_err("other", f"{what}: the answer is not an image manifest or index")
        return record(
            descriptor=record(media_type=media_type, digest=digest, size=len(body)),
            body=body,
        )

    def blob_response(self, repo, digest):
        full = self.full_repo(repo)
        if not DIGEST.match(digest):
            raise reg_err("other", f"invalid blob digest {digest!r}")
        what = f"blob {digest} of {self.display(full)}"
        resp, error = self.send("GET", self.url(f"{full}/blobs/{digest}"), what)
        if error:
            raise self.failure(*error, what)
        return resp, what

    def fetch_blob(self, fetch):
        repo, digest, size, path = (field(fetch, k) for k in ("repo", "digest", "size", "path"))
        resp, what = self.blob_response(repo, digest)
        tmp_guest = f"{path}.download.tmp"

        def fs_failure(f):
            return reg_err("filesystem", f.value) if isinstance(f, Failure) else f

        try:
            dest = self.fs.resolve(path)
            tmp = self.fs.resolve(tmp_guest)
        except Failure as f:
            resp.close()
            raise fs_failure(f) from None
        try:
            with resp:
                announced = resp.headers.get("Content-Length")
                if announced and announced.strip().isdigit() and int(announced) != size:
                    raise reg_err(
                        "integrity", f"{what}: the registry announced {announced} bytes, expected {size}"
                    )
                hasher, received = hashlib.sha256(), 0
                try:
                    out = self.fs.create(tmp_guest)
                except Failure as f:
                    raise fs_failure(f) from None
                with out:
                    while True:
                        self.check_cancelled()
                        chunk = resp.read(1024 * 1024)
                        if not chunk:
                            break
                        received += len(chunk)
                        if received > size:
                            raise reg_err("integrity", f"{what}: more than the expected {size} bytes")
                        hasher.update(chunk)
                        try:
                            out.write(chunk)
                        except OSError as e:
                            raise fs_failure(os_error(e, path)) from None
            if received != size:
                raise reg_err("integrity", f"{what}: received {received} bytes, expected {size}")
            got = "sha256:" + hasher.hexdigest()
            if got != digest:
                raise reg_err("integrity", f"{what}: the bytes hash to {got}")
            try:
                os.rename(tmp, dest)
            except OSError as e:
                raise fs_failure(os_error(e, path)) from None
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def read_layer_files(self, repo, digest, names, max_bytes):
        resp, what = self.blob_response(repo, digest)
        with resp:
            try:
                return scan_layer(resp, names, max_bytes)
            except ValueError as e:
                raise reg_err("integrity", f"{what}: {e}") from None


# ------------------------------------------------------------ linking


def guarded(func, *args):
    """Runs an import; a Failure becomes the WIT `err` value."""
    try:
        return ok(func(*args))
    except Failure as f:
        return err(f.value)


class Host:
    def __init__(self, plugin, source, bundle, events):
        self.events = events
        self.fs = Confined(bundle)
        self.registry = Registry(source, self.fs, events)
        self.outputs = {}
        self.next_rep = 1
        self.engine = wasmtime.Engine()
        self.component = wc.Component.from_file(self.engine, plugin)
        self.linker = wc.Linker(self.engine)
        self.output_type = ResourceType.host(1)
        self.linker.add_wasip2()
        with self.linker.root() as root:
            with root.add_instance(f"{PKG}/registry@{WIT_VERSION}") as inst:
                self.define_registry(inst)
            with root.add_instance(f"{PKG}/filesystem@{WIT_VERSION}") as inst:
                self.define_filesystem(inst)
            with root.add_instance(f"{PKG}/events@{WIT_VERSION}") as inst:
                self.define_events(inst)

    def define_registry(self, inst):
        reg = self.registry
        inst.add_func(
            "list-tags",
            lambda _s, repo, timeout_ms: guarded(reg.list_tags, repo, timeout_ms),
        )
        inst.add_func(
            "resolve", lambda _s, refs: [guarded(reg.resolve_one, r) for r in refs]
        )
        inst.add_func(
            "fetch-manifests",
            lambda _s, refs: [guarded(reg.fetch_manifest, r) for r in refs],
        )
        inst.add_func(
            "fetch-blobs", lambda _s, fetches: [guarded(reg.fetch_blob, f) for f in fetches]
        )
        inst.add_func(
            "read-layer-files",
            lambda _s, repo, digest, names, max_bytes: guarded(
                reg.read_layer_files, repo, digest, names, max_bytes
            ),
        )

    def output(self, store, handle):
        return self.outputs[handle.to_host(store).rep]

    def create_output(self, path):
        if len(self.outputs) >= MAX_OPEN_OUTPUTS:
            raise fs_err("denied", f"{path}: too many open outputs; the limit is {MAX_OPEN_OUTPUTS}")
        rep = self.next_rep
        self.next_rep += 1
        self.outputs[rep] = Output(self.fs, path)
        return ResourceHost.own(rep, 1)

    def drop_output(self, _store, rep):
        out = self.outputs.pop(rep, None)
        if out is not None:
            out.close()

    def read_stored_layer(self, path, names, max_bytes):
        with self.fs.open_read(path) as f:
            try:
                return scan_layer(f, names, max_bytes)
            except ValueError as e:
                raise fs_err("other", f"{path}: {e}") from None

    def define_filesystem(self, inst):
        fs = self.fs
        inst.add_resource("output", self.output_type, self.drop_output)
        inst.add_func(
            "[method]output.write",
            lambda s, h, data: guarded(lambda: self.output(s, h).write(data)),
        )
        inst.add_func(
            "[method]output.copy-from",
            lambda s, h, src, offset, length: guarded(
                lambda: self.output(s, h).copy_from(src, offset, length)
            ),
        )
        inst.add_func(
            "[method]output.finish", lambda s, h: guarded(lambda: self.output(s, h).finish())
        )
        inst.add_func("stat", lambda _s, path: guarded(fs.stat, path))
        inst.add_func("create-dir-all", lambda _s, path: guarded(fs.create_dir_all, path))
        inst.add_func(
            "read-file", lambda _s, path, max_bytes: guarded(fs.read_file, path, max_bytes)
        )
        inst.add_func("write-file", lambda _s, path, data: guarded(fs.write_file, path, data))
        inst.add_func("rename", lambda _s, a, b: guarded(fs.rename, a, b))
        inst.add_func("remove", lambda _s, path: guarded(fs.remove, path))
        inst.add_func("list-dir", lambda _s, path: guarded(fs.list_dir, path))
        inst.add_func("create-output", lambda _s, path: guarded(self.create_output, path))
        inst.add_func(
            "read-layer-files",
            lambda _s, path, names, max_bytes: guarded(
                self.read_stored_layer, path, names, max_bytes
            ),
        )

    def define_events(self, inst):
        ev = self.events
        inst.add_func("log", lambda _s, level, message: ev.log(level, message))
        inst.add_func("progress", lambda _s, event: ev.progress(event))
        inst.add_func("cancelled", lambda _s: ev.cancelled)

    def call(self, export, options):
        """One export call in a fresh store and instance, as the Rust host does."""
        store = wasmtime.Store(self.engine)
        wasi = wasmtime.WasiConfig()
        wasi.inherit_stderr()  # panic messages; no preopens, env or args
        store.set_wasi(wasi)
        instance = self.linker.instantiate(store, self.component)
        func = instance.get_func(store, export)
        if func is None:
            raise SystemExit(f"error: the plugin does not export {export}")
        try:
            return func(store, options)
        finally:
            for rep in list(self.outputs):
                self.drop_output(store, rep)


def to_plain(value):
    """WIT values as JSON-ready Python values."""
    if isinstance(value, Record):
        return {k: to_plain(v) for k, v in vars(value).items()}
    if isinstance(value, Variant):
        return {value.tag: to_plain(value.payload)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("plugin")
    p.add_argument("--source", required=True, help="HOST[:PORT]/PATH, plain HTTP")
    p.add_argument("--include-package", action="append", default=[])
    p.add_argument("--exclude-package", action="append", default=[])
    p.add_argument("--skip-vex-images", action="store_true")
    p.add_argument("--no-packages", action="store_true")
    p.add_argument("--log-level", choices=LEVELS, default="info")
    p.add_argument("bundle")
    args = p.parse_args(argv)

    os.makedirs(args.bundle, exist_ok=True)
    events = Events(args.log_level)
    signal.signal(signal.SIGINT, lambda *_: setattr(events, "cancelled", True))
    host = Host(args.plugin, args.source, args.bundle, events)
    options = record(
        source_root=args.source,
        include_packages=args.include_package,
        exclude_packages=args.exclude_package,
        only_extra_images=False,
        skip_vex_images=args.skip_vex_images,
        bundle_chunk_size=0,
        access_timeout_ms=0,
        dry_run=False,
        proxy_registry=False,
    )
    exports = ["pull-package-versions"]
    if not args.no_packages:
        exports.insert(0, "pull-packages")
    summaries = {}
    for export in exports:
        result = host.call(export, options)
        if result.tag == "err":
            error = result.payload
            message = f"{error.tag}: {error.payload}" if error.payload else error.tag
            print(f"error: {export}: {message}", file=sys.stderr)
            return 2 if error.tag == "invalid-options" else 1
        summaries[export] = to_plain(result.payload)
    json.dump(summaries, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
