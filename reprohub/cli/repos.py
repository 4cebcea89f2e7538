"""The commands that look inside: ``list``, ``help``, ``cache``, ``bench``, ``env``, ``golden``."""

from __future__ import annotations

import json
from typing import Any

from pathlib import Path

from ..errors import SettingError
from .locks import read_existing_lock
from .common import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, EXIT_USAGE, emit, fail, make_hub, plural, say


def list(args) -> int:
    names = make_hub().list(args.spec, trust_repo=True if args.trust else "check", verbose=False)
    print(json.dumps(names) if args.json else "\n".join(names))
    return EXIT_OK


def help(args) -> int:
    if args.model is None:
        if args.spec in args.commands:  # `reprohub help lock`: the command's own help
            args.commands[args.spec].print_help()
            return EXIT_OK
        return fail(f"error: help takes SPEC MODEL (an entrypoint of a repo) or a command "
                     f"({', '.join(args.commands)}); found only {args.spec!r}", EXIT_USAGE)
    doc = make_hub().help(args.spec, args.model, trust_repo=True if args.trust else "check") or "(no docstring)"
    say(*doc.split("\n"))
    return EXIT_OK


def cache(args) -> int:
    from ..cache import tool
    from ..lock.lockfile import Lockfile

    keep = None
    if args.lock:
        lock = Lockfile.read(args.lock)
        keep = ({pin.commit for pin in lock.repos.values()}, set(lock.artifacts))
    return tool.run(args.action, args.names, make_hub().layout, keep, as_json=args.json)


def bench(args) -> int:
    from ..testing.bench import bench_load

    kwargs = dict(_entry_argument(item) for item in args.arg)
    for line in bench_load(args.spec, args.model, args.repeat, trust_repo=True if args.trust else "check", **kwargs):
        say(line)
    return EXIT_OK


def _entry_argument(item: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as a keyword argument: the value as a Python literal (``False``, ``3``), else as text."""
    import ast

    name, eq, text = item.partition("=")
    if not eq or not name.isidentifier():
        raise SettingError("--arg NAME=VALUE with NAME a Python identifier", repr(item), "write it as pretrained=False")
    try:
        return name, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return name, text


def env(args) -> int:
    from ..golden.environment import requirements

    lock = read_existing_lock(args.lock)
    if not lock.environments and (args.requirements or not lock.repos):
        return fail(f"error: {args.lock} records no environment (its goldens were recorded before reprohub "
                     "recorded them, or it has none); re-record with --hub-update", EXIT_ERROR)
    if args.requirements:
        lines = requirements({k: pin.values for k, pin in lock.environments.items()})
        emit(args, {"requirements": lines}, *lines)
        return EXIT_OK
    recorded_in: dict[str, list[str]] = {}  # one pass over the goldens, not one per environment
    for key, golden in sorted(lock.goldens.items()):
        recorded_in.setdefault(golden.environment, []).append(key)
    lines = [f"repo {spec}: {pin.swhid}" + (f", {pin.swhid_dir} ({pin.git_tree})" if pin.swhid_dir else
                                             f" (tree: {pin.git_tree or 'not recorded; re-record with --hub-update'})")
             for spec, pin in sorted(lock.repos.items())]
    for env_id, pin in sorted(lock.environments.items()):
        goldens = recorded_in.get(env_id, [])
        lines.append(f"environment {env_id} ({plural(len(goldens), 'golden')}: {', '.join(goldens)})")
        width = max(len(k) for k in pin.values)
        lines += [f"  {key:<{width}}  {value}" for key, value in sorted(pin.values.items())]
    emit(args, {"repos": {spec: {"swhid": pin.swhid, "swhid_dir": pin.swhid_dir, "git_tree": pin.git_tree}
                          for spec, pin in lock.repos.items()},
                "environments": {env_id: {"goldens": recorded_in.get(env_id, []), "values": pin.values}
                                    for env_id, pin in lock.environments.items()}}, *lines)
    return EXIT_OK


def golden(args) -> int:
    from ..golden.text import DAMAGED, diff_text, show_lines

    missing = [path for path in args.files if not Path(path).is_file()]
    if missing:
        return fail(f"error: no such golden file: {', '.join(missing)}", EXIT_USAGE)
    if args.action == "trace":
        return _golden_trace(args)
    if args.action == "show":
        shown = {path: show_lines(path) for path in args.files}
        damaged = [path for path, lines in shown.items() if lines[0].startswith(DAMAGED)]
        emit(args, [{"file": path, "golden": path not in damaged, "lines": lines} for path, lines in shown.items()],
                *(line for path, lines in shown.items()
                  for line in ([f"== {path}"] if len(args.files) > 1 else []) + lines))
        return EXIT_MISMATCH if damaged and not args.textconv else EXIT_OK
    if len(args.files) != 2:
        return fail(f"error: golden diff takes two files, OLD NEW; found {len(args.files)}", EXIT_USAGE)
    report = diff_text(*args.files)
    emit(args, {"old": args.files[0], "new": args.files[1], "matches": not report, "report": report},
            *(report.split("\n") if report else [f"{args.files[1]} matches {args.files[0]} (within the per-dtype "
                                                    "tolerances)"]))
    return EXIT_MISMATCH if report else EXIT_OK


def _golden_trace(args) -> int:
    """``reprohub golden trace FILE``: the kept calls of a traced golden, checked against the digest it names."""
    from ..errors import GoldenFileError
    from ..golden.calls import load_calls, names_record, tensor_leaves
    from ..golden.engine import load_golden
    from ..golden.text import calls_text

    if len(args.files) != 1:
        return fail(f"error: golden trace takes one golden file; found {len(args.files)}", EXIT_USAGE)
    path = Path(args.files[0])
    try:
        metadata = load_golden(path).metadata
        if not names_record(metadata):
            return fail(f"error: {path} kept no module calls: record it inside `with golden.trace(model):`",
                        EXIT_MISMATCH)
        record = load_calls(path, metadata)
    except GoldenFileError as err:
        return fail(f"error: {err}", EXIT_MISMATCH)
    def described(packed) -> dict:  # (this module's `list` is the command)
        return {place.lstrip(".") or "out": [str(t.dtype).removeprefix("torch."), [int(n) for n in t.shape]]
                for place, t in tensor_leaves(packed, record.tensors).items()}

    calls = [{"index": c.index, "module": c.module, "class": c.cls, "call": c.number, "training": c.training,
              "inputs": described(c.inputs), "output": described(c.output)} for c in record.calls]
    emit(args, {"file": str(path), "machine": record.machine, "kept": len(record.calls), "total": record.total,
                "calls": calls}, *calls_text(record).rstrip("\n").split("\n"))
    return EXIT_OK
