"""Test images and a real registry for the image tests.

No public registry is reachable from the test machines, so the tests make their own: Debian's
`docker-registry` on a loopback port, filled with OCI images built here, pushed with `skopeo copy`.
The base layer is the default snapshot's root filesystem (Debian bookworm with python3, made from
Debian's mirror by rootfs/build), tarred with numeric owners; the other layers are written with
Python's tarfile, so they can carry whiteouts, opaque directories and hostile entries.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time

SNAPSHOT_ROOTFS = os.environ.get("ATOLL_SNAPSHOTS", "/var/lib/atoll/snapshots") + "/default/rootfs"
# scripts/setup takes the binary only (the package would enable a service on port 5000).
REGISTRY_BIN = next((p for p in ("/usr/bin/docker-registry", os.path.join(os.path.dirname(__file__), "../../.build/tools/docker-registry"))
                     if os.access(p, os.X_OK)), "docker-registry")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="atoll-registry-")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\n"
                "log:\n  level: error\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                f"http:\n  addr: 127.0.0.1:{self.port}\n"
            )
        self.log = open(os.path.join(self.dir, "registry.log"), "w")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", config], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError("docker-registry did not start")

    def push(self, layout_dir, tag, name):
        """Copies the OCI layout's image `tag` to <registry>/<name> (name may carry a :tag)."""
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout_dir}:{tag}", f"docker://{self.host}/{name}"],
            check=True, capture_output=True)
        return f"{self.host}/{name}"

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout being written: blobs, then one manifest per tag."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.manifests = []

    def blob(self, data):
        digest = _sha(data)
        with open(os.path.join(self.path, "blobs", "sha256", digest[7:]), "wb") as f:
            f.write(data)
        return digest

    def blob_file(self, path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()
        shutil.move(path, os.path.join(self.path, "blobs", "sha256", digest[7:]))
        return digest, os.path.getsize(os.path.join(self.path, "blobs", "sha256", digest[7:]))

    def layer(self, tar_bytes, compression="gzip"):
        """Adds a layer: returns its descriptor and diff id."""
        diff_id = _sha(tar_bytes)
        if compression == "gzip":
            data, media = gzip.compress(tar_bytes, compresslevel=1), "application/vnd.oci.image.layer.v1.tar+gzip"
        elif compression == "zstd":
            data = subprocess.run(["zstd", "-q", "-c", "-3"], input=tar_bytes, capture_output=True, check=True).stdout
            media = "application/vnd.oci.image.layer.v1.tar+zstd"
        else:
            data, media = tar_bytes, "application/vnd.oci.image.layer.v1.tar"
        digest = self.blob(data)
        return {"mediaType": media, "digest": digest, "size": len(data)}, diff_id

    def image(self, tag, layers, config=None):
        """Writes a manifest of `layers` ((descriptor, diff id) pairs, bottom first) tagged `tag`."""
        cfg = {
            "architecture": "amd64", "os": "linux",
            "config": config or {},
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
        }
        cfg_bytes = json.dumps(cfg).encode()
        cfg_digest = self.blob(cfg_bytes)
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": len(cfg_bytes)},
            "layers": [l for l, _ in layers],
        }
        m_bytes = json.dumps(manifest).encode()
        m_digest = self.blob(m_bytes)
        self.manifests.append({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_digest, "size": len(m_bytes),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        })
        self._write_index()
        return m_digest

    def index(self, tag, manifest_digests):
        """An image index (multi-platform list) naming manifests already written: one linux/amd64,
        the rest claimed as linux/arm64 (Atoll must pick amd64)."""
        entries = []
        for i, digest in enumerate(manifest_digests):
            size = os.path.getsize(os.path.join(self.path, "blobs", "sha256", digest[7:]))
            entries.append({
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
                "platform": {"architecture": "amd64" if i == 0 else "arm64", "os": "linux"},
            })
        idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}).encode()
        digest = self.blob(idx)
        self.manifests.append({
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": len(idx),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        })
        self._write_index()

    def _write_index(self):
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.manifests}, f)


def rootfs_layer(layout, compression="zstd"):
    """The default snapshot's root filesystem as one layer (GNU tar, numeric owners, xattrs)."""
    out = os.path.join(layout.path, "rootfs.tar")
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "-C", SNAPSHOT_ROOTFS, "-cf", out, "."], check=True)
    with open(out, "rb") as f:
        diff_id = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    if compression == "zstd":
        subprocess.run(["zstd", "-q", "-T0", "-3", "--rm", out, "-o", out + ".zst"], check=True)
        path, media = out + ".zst", "application/vnd.oci.image.layer.v1.tar+zstd"
    else:
        subprocess.run(["gzip", "-6", out], check=True)
        path, media = out + ".gz", "application/vnd.oci.image.layer.v1.tar+gzip"
    digest, size = layout.blob_file(path)
    return {"mediaType": media, "digest": digest, "size": size}, diff_id


def tar_of(entries):
    """A tar stream (PAX) of entries: (name, kind, data_or_target, mode, uid)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload, mode, uid in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, 1_700_000_000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def build_test_images(registry, workdir, base_compression="zstd"):
    """Pushes the images the tests use; returns their references by role.

    - `multi`: the rootfs (zstd) + an app layer (gzip: a file, a setuid file, a hard link, a
      symlink) + a layer (uncompressed) that whites out /etc/motd and makes /opt/app/cache
      opaque, with ENV, WORKDIR and USER in the config.
    - `index`: the same manifest behind an image index with an arm64 decoy.
    - `python`: the rootfs alone, pushed as library/python:3.11.12-slim-bookworm (the stand-in for
      Image.debian_slim("3.11") through a registry mirror).
    - `escape`: a layer whose entry is `../escape` (must be refused).
    - `small`: one gzip layer of one file (docker save archives take no zstd layers).
    """
    layout = Layout(os.path.join(workdir, "layout"))
    base = rootfs_layer(layout, base_compression)
    app = layout.layer(tar_of([
        ("opt/app", "dir", b"", 0o755, 0),
        ("opt/app/hello.py", "file", b"print('hello from the image')\n", 0o644, 1000),
        ("opt/app/tool", "file", b"#!/bin/sh\necho tool\n", 0o4755, 0),
        ("opt/app/same.py", "hardlink", "opt/app/hello.py", 0o644, 1000),
        ("opt/app/latest", "symlink", "hello.py", 0o777, 0),
        ("opt/app/cache", "dir", b"", 0o755, 0),
        ("opt/app/cache/old", "file", b"stale", 0o644, 0),
    ]), "gzip")
    top = layout.layer(tar_of([
        ("etc/.wh.motd", "file", b"", 0o644, 0),
        ("opt/app/cache", "dir", b"", 0o755, 0),
        ("opt/app/cache/.wh..wh..opq", "file", b"", 0o644, 0),
        ("opt/app/cache/new", "file", b"fresh", 0o644, 0),
    ]), "none")
    config = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=from-image"], "WorkingDir": "/opt/app", "User": "1000:1000",
              "Cmd": ["python3"], "Labels": {"org.example": "atoll-test"}}
    multi = layout.image("multi", [base, app, top], config)
    layout.index("index", [multi, multi])
    # The stand-in for python:3.11.12-slim-bookworm. Image.debian_slim's Dockerfile runs apt-get
    # and pip, which need Debian's mirror and PyPI; sandboxes in the tests reach neither, so the
    # stand-in carries stubs of those (and of debconf-set-selections, which the default snapshot
    # lacks) that print what they were asked and succeed.
    stub = b'#!/bin/sh\necho "stand-in $(basename "$0") $*"\n'
    stubs = layout.layer(tar_of([
        ("usr/local/bin", "dir", b"", 0o755, 0),
        ("usr/local/bin/apt-get", "file", stub, 0o755, 0),
        ("usr/local/bin/pip", "file", stub, 0o755, 0),
        ("usr/local/bin/debconf-set-selections", "file", stub, 0o755, 0),
    ]), "gzip")
    layout.image("python", [base, stubs], {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["python3"]})
    layout.image("small", [layout.layer(tar_of([("hello.txt", "file", b"small\n", 0o644, 0)]), "gzip")], {})
    layout.image("escape", [base, layout.layer(tar_of([("../escape", "file", b"x", 0o644, 0)]), "gzip")], {})
    refs = {
        "multi": registry.push(layout.path, "multi", "atoll-test/multi:1"),
        "index": registry.push(layout.path, "index", "atoll-test/index:1"),
        "python": registry.push(layout.path, "python", "library/python:3.11.12-slim-bookworm"),
        "escape": registry.push(layout.path, "escape", "atoll-test/escape:1"),
        "small": registry.push(layout.path, "small", "atoll-test/small:1"),
    }
    shutil.rmtree(layout.path, ignore_errors=True)
    return refs
