"""The commands that serve and show: ``serve`` (a local GitHub-compatible host) and ``demo``."""

from __future__ import annotations

from pathlib import Path

from ..errors import ReprohubError
from .common import EXIT_OK, say


def serve(args) -> int:
    from ..testing.server import HubServer

    try:
        server = HubServer(port=args.port)
    except OSError as err:
        raise ReprohubError(f"a free port {args.port} on 127.0.0.1", f"{err.strerror or err}",
                            "pass --port 0 to pick a free port, or stop what listens there") from None
    server.set_latency(args.latency / 1000)
    for item in args.repo:
        name, _, path = item.partition("=")
        server.add_repo(name, path)
    for item in args.file:
        name, _, path = item.partition("=")
        server.add_file(name, Path(path))
    say(f"serving on {server.url}", f"  export REPROHUB_GITHUB_API_URL={server.api_url}", f"  files: {server.url}/files/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def demo(args) -> int:
    from ..testing.demo.run import run_demo

    return run_demo(args.workdir)

