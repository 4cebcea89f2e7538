"""Every environment variable reprohub reads, defined once with its meaning.

No other module reads ``os.environ`` for a setting: each asks this module, so
the README's table of variables can be checked against :data:`VARIABLES`
(``tests/test_structure.py`` does), and an empty value means *unset*
everywhere (the XDG rule), never "the empty string".

Example:
    >>> import os
    >>> os.environ["REPROHUB_RETRIES"] = "2"; read("REPROHUB_RETRIES")
    '2'
    >>> os.environ["REPROHUB_RETRIES"] = ""; read("REPROHUB_RETRIES") is None
    True
    >>> del os.environ["REPROHUB_RETRIES"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import SettingError

VERSION = "0.1.0"
DEFAULT_GITHUB_API = "https://api.github.com"


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name and what it means (the README's table is built from these)."""

    name: str
    meaning: str


TORCH_HOME = "TORCH_HOME"
XDG_CACHE_HOME = "XDG_CACHE_HOME"
OFFLINE = "REPROHUB_OFFLINE"
GITHUB_API_URL = "REPROHUB_GITHUB_API_URL"
ARCHIVE_URL = "REPROHUB_ARCHIVE_URL"
GITHUB_TOKEN = "GITHUB_TOKEN"
MIRROR = "REPROHUB_MIRROR"
TRUST = "REPROHUB_TRUST"
TIMEOUT = "REPROHUB_TIMEOUT"
RETRIES = "REPROHUB_RETRIES"
LOCK_TIMEOUT = "REPROHUB_LOCK_TIMEOUT"
PREFETCH = "REPROHUB_PREFETCH"
PREFETCH_HOSTS = "REPROHUB_PREFETCH_HOSTS"
SSL_CERT_FILE = "SSL_CERT_FILE"
SSL_CERT_DIR = "SSL_CERT_DIR"
REQUESTS_CA_BUNDLE = "REQUESTS_CA_BUNDLE"
CURL_CA_BUNDLE = "CURL_CA_BUNDLE"
NETRC = "NETRC"
# torch's and CUDA's own numerics switches: reprohub only records them (reprohub.golden.numerics)
ATEN_CPU_CAPABILITY = "ATEN_CPU_CAPABILITY"
CUBLAS_WORKSPACE_CONFIG = "CUBLAS_WORKSPACE_CONFIG"
NVIDIA_TF32_OVERRIDE = "NVIDIA_TF32_OVERRIDE"
GITHUB_STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
HF_HUB_DISABLE_XET = "HF_HUB_DISABLE_XET"
TRACE_BUDGET = "REPROHUB_TRACE_BUDGET_MIB"
SHARED_CACHE = "REPROHUB_SHARED_CACHE"
OCI_USERNAME = "REPROHUB_OCI_USERNAME"
OCI_PASSWORD = "REPROHUB_OCI_PASSWORD"
OCI_TOKEN = "REPROHUB_OCI_TOKEN"
OCI_INSECURE = "REPROHUB_OCI_INSECURE"
DOCKER_CONFIG = "DOCKER_CONFIG"
SWH_URL = "REPROHUB_SWH_URL"
SWH_TOKEN = "REPROHUB_SWH_TOKEN"
SWH_TIMEOUT = "REPROHUB_SWH_TIMEOUT"
SWH_POLL_MAX = "REPROHUB_SWH_POLL_MAX"

VARIABLES: dict[str, Variable] = {v.name: v for v in (
    Variable(TORCH_HOME, "the hub dir is $TORCH_HOME/hub (as torch.hub)"),
    Variable(XDG_CACHE_HOME, "without TORCH_HOME, the hub dir is $XDG_CACHE_HOME/torch/hub (as torch.hub)"),
    Variable(OFFLINE, "1/true/yes/on: no network at all; a cache miss names what is missing"),
    Variable(GITHUB_API_URL, "GitHub-compatible REST API base (default https://api.github.com)"),
    Variable(ARCHIVE_URL, "where commit archives are downloaded from without the API "
                          "(default: derived from the API URL; {owner}, {repo}, {commit} placeholders)"),
    Variable(GITHUB_TOKEN, "token sent to the API and archive hosts only, never logged"),
    Variable(MIRROR, "bundle locations (paths, file:// or http(s):// URLs, separated by spaces or commas) "
                     "tried before the origin for everything a lock pins"),
    Variable(TRUST, "owner/repo,owner/* or all: trusted without asking"),
    Variable(TIMEOUT, "read timeout of downloads, in seconds (default 60)"),
    Variable(RETRIES, "retries of a failing download (default 5)"),
    Variable(LOCK_TIMEOUT, "seconds to wait for another process's download (default 3600)"),
    Variable(PREFETCH, "pinned downloads a locked cold load starts at once while the repo archive downloads "
                       "(default 4; 0: none)"),
    Variable(PREFETCH_HOSTS, "hosts besides a repo's own (and GitHub's for github.com repos) whose pinned files "
                             "a locked cold load may fetch early (names separated by commas; * for any)"),
    Variable(SSL_CERT_FILE, "CA bundle for HTTPS, as OpenSSL and urllib read it (REQUESTS_CA_BUNDLE still wins)"),
    Variable(SSL_CERT_DIR, "folder of CA certificates for HTTPS, when SSL_CERT_FILE is unset"),
    Variable(REQUESTS_CA_BUNDLE, "CA bundle for HTTPS, as requests reads it (wins over SSL_CERT_FILE)"),
    Variable(CURL_CA_BUNDLE, "CA bundle for HTTPS when REQUESTS_CA_BUNDLE is unset, as requests reads it"),
    Variable(NETRC, "netrc file with credentials for download hosts (default ~/.netrc), as requests reads it; "
                    "proxy variables (HTTPS_PROXY, NO_PROXY...) are honoured as requests honours them"),
    Variable(ATEN_CPU_CAPABILITY, "torch's: the CPU kernels it dispatches to (default, avx2, avx512); recorded "
                                  "in each golden's environment"),
    Variable(CUBLAS_WORKSPACE_CONFIG, "CUDA's: cuBLAS workspace (the golden fixture sets :4096:8 unless set); "
                                      "recorded"),
    Variable(NVIDIA_TF32_OVERRIDE, "NVIDIA's: 0 turns TF32 off in every library; recorded"),
    Variable(GITHUB_STEP_SUMMARY, "GitHub Actions': the job summary file; the pytest plugin appends a Markdown "
                                  "summary of golden failures and changes to it"),
    Variable(SHARED_CACHE, "read-only hub dirs (separated by the path separator, : on Linux) consulted in order "
                           "after your own cache and before mirrors and the origin; never written into"),
    Variable(OCI_USERNAME, "user name for OCI registries (oci:// mirrors and bundle pushes), with REPROHUB_OCI_PASSWORD"),
    Variable(OCI_PASSWORD, "password or access token for OCI registries; sent only to the registry and its token "
                           "service, never logged"),
    Variable(OCI_TOKEN, "a bearer token for OCI registries, sent as it is (instead of a user name and password)"),
    Variable(OCI_INSECURE, "registry hosts (host or host:port, separated by commas) spoken to over plain HTTP; "
                           "127.0.0.1 and localhost always are"),
    Variable(DOCKER_CONFIG, "Docker's: the folder of config.json, whose auths entries log in to OCI registries "
                            "(default ~/.docker)"),
    Variable(SWH_URL, "Software Heritage's root, the last source of a pinned commit no cache, mirror or origin has "
                      "(default https://archive.softwareheritage.org; off: never asked); never taken from a lock"),
    Variable(SWH_TOKEN, "a bearer token for Software Heritage's API (a higher rate limit); sent to that host only, "
                        "never logged or recorded"),
    Variable(SWH_TIMEOUT, "seconds one fetch from Software Heritage may take, cooking and rate-limit waits included "
                          "(default 1800)"),
    Variable(SWH_POLL_MAX, "the longest wait, in seconds, between two polls of Software Heritage's vault "
                           "(default 30; the first is 1)"),
    Variable(TRACE_BUDGET, "MiB of module inputs and outputs a traced golden keeps for attribution (default 64)"),
    Variable(HF_HUB_DISABLE_XET, "huggingface_hub's: a locked run sets it to 1 unless set, so downloads go over "
                                 "HTTP, which reprohub pins (Xet's native sockets escape every patch)"),
)}


def read(name: str) -> str | None:
    """The value of a declared variable, ``None`` when unset or empty.

    Raises:
        KeyError: ``name`` is not declared in :data:`VARIABLES` (a reprohub bug).
    """
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a declared reprohub setting")
    value = os.environ.get(name)
    return value if value else None


def ca_bundle() -> str | None:
    """The CA certificates HTTPS downloads verify against, as requests and OpenSSL pick them."""
    return read(REQUESTS_CA_BUNDLE) or read(CURL_CA_BUNDLE) or read(SSL_CERT_FILE) or read(SSL_CERT_DIR)


def proxies_or_netrc() -> bool:
    """Whether a proxy variable or a netrc file is configured: then requests must look at the
    environment for every URL (which proxy, which credentials); otherwise it has nothing to find.  Asked when the
    first session is made: urllib.request is imported then, not with reprohub."""
    import urllib.request

    if urllib.request.getproxies_environment():
        return True
    netrc = read(NETRC)
    return any(os.path.exists(os.path.expanduser(p)) for p in ([netrc] if netrc else ["~/.netrc", "~/_netrc"]))


def set_default(name: str, value: str) -> bool:
    """Set a declared variable for this process (and its children) unless it is set; whether it was set now."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a declared reprohub setting")
    if read(name) is not None:
        return False
    os.environ[name] = value
    return True


def read_flag(name: str) -> bool:
    """True when a declared variable is set to 1, true, yes or on (any case)."""
    return (read(name) or "").strip().lower() in ("1", "true", "yes", "on")


def read_number(name: str, default: float) -> float:
    """A declared variable as a number, ``default`` when unset.

    Raises:
        SettingError: the value is not a number (the message names the variable).
    """
    value = read(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingError(f"{name} as a number", repr(value), f"unset it, or write e.g. {name}={default:g}") from None
