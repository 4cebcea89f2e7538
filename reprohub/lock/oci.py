"""Bundles in an OCI registry (GHCR, ECR, GAR, Harbor, Artifactory, Docker Hub, Debian's ``docker-registry``):
``reprohub bundle --lock hub.lock oci://HOST/NAME:TAG`` pushes, ``REPROHUB_MIRROR=oci://HOST/NAME:TAG`` reads.

A registry addresses blobs by ``sha256:<hex>`` of their bytes -- exactly what a lock pins -- and checks the
digest of every push.  A bundle becomes one blob per file of the bundle folder (:mod:`reprohub.lock.bundle`):
each artifact and request body is a blob whose digest *is* its lock sha256, each repo tree the blob of its
deterministic zip, and the index a blob too; an OCI image manifest (artifact type
``application/vnd.reprohub.bundle.v1+json``, ORAS's conventions) lists them, each layer annotated with its
path in the bundle (``org.opencontainers.image.title``, so ``oras pull`` writes the same folder) and what it
stands for.  Pushing asks ``HEAD`` for each blob first: an unchanged lock uploads nothing.

Reading, the manifest is fetched once per process and a bundle path is mapped to its blob; the blob is then
downloaded, streamed and verified as any download (``Range`` resume where the registry answers 206).

**Auth** as registries do it: anonymous first; on a 401, the challenge decides.  ``Bearer realm=...,
service=...,scope=...`` asks the realm for a token (with the credentials, where there are some) and sends it;
``Basic`` sends the credentials.  Credentials come from ``REPROHUB_OCI_TOKEN`` (a bearer token as it is), from
``REPROHUB_OCI_USERNAME``/``REPROHUB_OCI_PASSWORD``, or from Docker's ``config.json`` ``auths`` entry for the
registry -- never from a lock, never written to output or records.  A registry that refuses them (or asks
and none are set) is an :class:`~reprohub.errors.AuthError` naming what to set.  Plain HTTP is used only for
``127.0.0.1``/``localhost``/``[::1]`` and the hosts ``REPROHUB_OCI_INSECURE`` names, https everywhere else.

Why not oras-py: the protocol used here is small (HEAD, a monolithic upload, a manifest PUT and GET), and a blob
must come through reprohub's own downloader -- hashed while it streams, resumed with ``Range``, retried, fenced
from the hermetic recorder -- which a library's own pull would bypass; ``oras`` (the CLI) reads what this
writes, by its layer titles.

Example:
    >>> parse_reference("oci://127.0.0.1:5000/team/hub-bundle:v1")
    OciReference(registry='http://127.0.0.1:5000', name='team/hub-bundle', reference='v1')
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .. import settings
from ..errors import AuthError, DownloadError, SettingError

ARTIFACT_TYPE = "application/vnd.reprohub.bundle.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
TITLE = "org.opencontainers.image.title"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_REFERENCE = re.compile(r"oci://(?P<host>[A-Za-z0-9.\-\[\]:]+)/(?P<name>[a-z0-9]+(?:[._\-/][a-z0-9]+)*)"
                        r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._\-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class OciReference:
    """A registry base URL, a repository name and a tag or ``sha256:`` manifest digest."""

    registry: str
    name: str
    reference: str

    def url(self, kind: str, ref: str) -> str:
        """``<registry>/v2/<name>/<kind>/<ref>`` (kind: ``blobs`` or ``manifests``)."""
        return f"{self.registry}/v2/{self.name}/{kind}/{ref}"


def is_oci(location: str) -> bool:
    return location.strip().lower().startswith("oci://")


def parse_reference(location: str) -> OciReference:
    """``oci://HOST[:PORT]/NAME[:TAG|@sha256:HEX]`` (tag ``latest`` when none).

    Raises:
        SettingError: not such a reference.
    """
    found = _REFERENCE.match(location.strip())
    if not found:
        raise SettingError("an OCI reference like oci://ghcr.io/acme/hub-bundle:v1 (or @sha256:<manifest digest>)",
                           repr(location), "fix the bundle target or REPROHUB_MIRROR")
    host = found["host"]
    insecure = {name.strip() for name in (settings.read(settings.OCI_INSECURE) or "").split(",") if name.strip()}
    plain = host.rsplit(":", 1)[0] in LOOPBACK or host.startswith("[::1]") or host in insecure \
        or host.rsplit(":", 1)[0] in insecure
    scheme = "http" if plain else "https"
    return OciReference(f"{scheme}://{host}", found["name"], found["digest"] or found["tag"] or "latest")


def push_bundle(folder: Path, target: OciReference, downloader) -> "tuple[list[str], list[str]]":
    """Push every file of the bundle ``folder`` as a blob and a manifest naming them under ``target``'s tag;
    returns (uploaded, already there) as bundle paths."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    auth = RegistryAuth(target.registry, downloader)
    uploaded, present, layers = [], [], []
    for path in files:
        rel = path.relative_to(folder).as_posix()
        digest, size = _sha256_of(path), path.stat().st_size
        if _has_blob(target, digest, auth):
            present.append(rel)
        else:
            _upload(target, digest, path.read_bytes(), auth)
            uploaded.append(rel)
        layers.append({"mediaType": "application/octet-stream", "digest": digest, "size": size,
                       "annotations": {TITLE: rel}})
    if not _has_blob(target, "sha256:" + hashlib.sha256(EMPTY).hexdigest(), auth):
        _upload(target, "sha256:" + hashlib.sha256(EMPTY).hexdigest(), EMPTY, auth)
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": EMPTY_TYPE, "digest": "sha256:" + hashlib.sha256(EMPTY).hexdigest(),
                           "size": len(EMPTY)},
                "layers": layers, "annotations": {"org.opencontainers.image.description": "a reprohub bundle"}}
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    response = auth.call("PUT", target.url("manifests", target.reference), {"Content-Type": MANIFEST_TYPE}, body=body)
    _expect(response, (201,), f"the manifest of {target.name}:{target.reference}")
    return uploaded, present


class RegistryAuth:
    """The ``Authorization`` header for one registry, learned from its 401 challenges (module docstring)."""

    def __init__(self, registry: str, downloader) -> None:
        self.registry, self.downloader = registry, downloader
        self.header: "str | None" = None
        self._lock = threading.Lock()
        token = settings.read(settings.OCI_TOKEN)
        self.bearer = token
        self.basic = _basic_credentials(registry)

    def headers(self) -> dict:
        return {"Authorization": self.header} if self.header else {}

    def call(self, method: str, url: str, headers: "dict | None" = None, body: "bytes | None" = None):
        """``method url``, answering one 401 challenge and asking again."""
        sent = self.header
        response = self.downloader.request(method, url, {**(headers or {}), **self.headers()}, body=body)
        if response.status_code != 401:
            return response
        if sent is not None and not self._renewable(response):
            raise _auth_error(self.registry, "HTTP 401: it refused the credentials sent")
        with self._lock:  # a prefetch thread may be answering the same challenge: answer it once
            if self.header == sent:
                self._answer(response, url)
        response = self.downloader.request(method, url, {**(headers or {}), **self.headers()}, body=body)
        if response.status_code == 401:
            raise _auth_error(self.registry, "HTTP 401 with the credentials it asked for")
        return response

    def _renewable(self, response) -> bool:
        """A 401 to a bearer token sent: a token for another scope (a push after a pull) is asked for anew."""
        return response.headers.get("WWW-Authenticate", "").lower().startswith("bearer")

    def _answer(self, response, url: str) -> None:
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.basic:
                raise _auth_error(self.registry, "HTTP 401 asking for a user name and password")
            self.header = "Basic " + base64.b64encode(self.basic.encode()).decode()
            return
        if scheme.lower() != "bearer":
            raise _auth_error(self.registry, f"HTTP 401 with a challenge reprohub does not speak ({scheme or 'none'})")
        if self.bearer:
            self.header = f"Bearer {self.bearer}"
            self.bearer = None  # a 401 to it next time asks the realm instead
            return
        fields = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if "realm" not in fields:
            raise _auth_error(self.registry, "a Bearer challenge without a realm")
        query = "&".join(f"{k}={quote(v, safe=':/')}" for k, v in fields.items() if k in ("service", "scope"))
        headers = {"Authorization": "Basic " + base64.b64encode(self.basic.encode()).decode()} if self.basic else {}
        answered = self.downloader.request("GET", f"{fields['realm']}{'&' if '?' in fields['realm'] else '?'}{query}",
                                           headers)
        if answered.status_code != 200:
            raise _auth_error(self.registry, f"HTTP {answered.status_code} from its token service {fields['realm']}"
                              + ("" if self.basic else " (no credentials were set)"))
        found = answered.json()
        token = found.get("token") or found.get("access_token")
        if not token:
            raise _auth_error(self.registry, "a token service answer without a token")
        self.header = f"Bearer {token}"


def _basic_credentials(registry: str) -> "str | None":
    """``user:password`` for ``registry``: the environment's, else Docker's ``config.json`` ``auths`` entry."""
    user, password = settings.read(settings.OCI_USERNAME), settings.read(settings.OCI_PASSWORD)
    if user and password:
        return f"{user}:{password}"
    folder = Path(settings.read(settings.DOCKER_CONFIG) or Path.home() / ".docker")
    try:
        auths = json.loads((folder / "config.json").read_text()).get("auths", {})
    except (OSError, ValueError, AttributeError):
        return None
    host = registry.split("://", 1)[1]
    entry = next((v for k, v in auths.items() if k.split("://")[-1].rstrip("/") in (host, f"{host}/v1")), None)
    try:
        return base64.b64decode(entry["auth"]).decode() if entry and entry.get("auth") else None
    except (ValueError, TypeError):
        return None


def _auth_error(registry: str, found: str) -> AuthError:
    return AuthError(f"access to the OCI registry {registry}", found,
                     "set REPROHUB_OCI_USERNAME and REPROHUB_OCI_PASSWORD (or REPROHUB_OCI_TOKEN), or log in with "
                     "`docker login`; for GHCR in GitHub Actions, the user is the actor and the password GITHUB_TOKEN")


class OciBundle:
    """A pushed bundle read as a mirror: bundle paths mapped to blob URLs through its manifest (fetched once)."""

    def __init__(self, reference: OciReference, downloader) -> None:
        self.reference, self.downloader = reference, downloader
        self.auth = RegistryAuth(reference.registry, downloader)
        self._blobs: "dict[str, str] | None" = None

    def blob_url(self, item: str) -> "str | None":
        """The blob URL holding the bundle path ``item``; ``None`` when the bundle has no such file."""
        if self._blobs is None:
            response = self.auth.call("GET", self.reference.url("manifests", self.reference.reference),
                                      {"Accept": MANIFEST_TYPE})
            _expect(response, (200,), f"the manifest of {self.reference.name}:{self.reference.reference}")
            layers = response.json().get("layers", [])
            self._blobs = {layer.get("annotations", {}).get(TITLE, ""): layer["digest"] for layer in layers}
        digest = self._blobs.get(item)
        return self.reference.url("blobs", digest) if digest else None


def _sha256_of(path: Path) -> str:
    from ..fetch.fsutil import sha256_file

    return "sha256:" + sha256_file(path)


def _has_blob(target: OciReference, digest: str, auth: RegistryAuth) -> bool:
    return auth.call("HEAD", target.url("blobs", digest)).status_code == 200


def _upload(target: OciReference, digest: str, data: bytes, auth: RegistryAuth) -> None:
    """A monolithic upload: POST for a session, PUT the bytes with their digest (the registry checks it)."""
    started = auth.call("POST", f"{target.registry}/v2/{target.name}/blobs/uploads/")
    _expect(started, (202,), f"an upload session on {target.registry}")
    location = started.headers["Location"]
    if location.startswith("/"):
        location = target.registry + location
    joiner = "&" if "?" in location else "?"
    done = auth.call("PUT", f"{location}{joiner}digest={digest}", {"Content-Type": "application/octet-stream"},
                     body=data)
    _expect(done, (201,), f"the blob {digest}")


def _expect(response, statuses: tuple, what: str) -> None:
    if response.status_code not in statuses:
        raise DownloadError(f"{what} accepted (HTTP {'/'.join(map(str, statuses))})",
                            f"HTTP {response.status_code} {response.reason or ''}: {response.text[:200]}".strip(),
                            "check the registry reference and that it accepts anonymous pushes")
