"""The package's shape: no import cycles, no stage importing a stage above it, small modules,
every environment variable declared once and documented, and the README's map matching the folders."""

import ast
import os
import re
from pathlib import Path

import pytest

from reprohub import settings

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "reprohub"
README = (ROOT / "README.md").read_text()
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text()
MAX_LINES = 450

# Stages from the bottom up: a module may import its own stage and the ones below, never above.
STAGES = [
    {"redact", "errors", "settings"},
    {"refs"},
    {"fetch"},
    {"cache"},
    {"sources"},
    {"runtime"},
    {"lock"},
    {"golden"},
    {"hub", "artifacts"},
    {"api"},
    {"testing"},
    {"cli", "pytest_plugin", "__main__", ""},
]


def module_files() -> dict[str, Path]:
    """Dotted names below reprohub (package __init__ as the package name) -> file; the demo's repo excluded."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[:2] == ("testing", "demo") and len(rel.parts) > 3:
            continue  # the demo's hubconf repo and test project are data, not reprohub modules
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every reprohub module ``path`` imports, at any depth of the file (lazy imports count)."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    if name == "":
        package = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("reprohub"):
                target = node.module.removeprefix("reprohub").lstrip(".")
            else:
                continue
            for alias in node.names:  # `from . import settings` imports that module, not the package
                sub = f"{target}.{alias.name}".lstrip(".")
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("reprohub."):
                    found.add(alias.name.removeprefix("reprohub."))
    resolved = set()
    for target in found:
        while target not in known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in known and target != name:
            resolved.add(target)
    return resolved


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def stage_of(module: str) -> int:
    top = module.split(".")[0]
    for rank, names in enumerate(STAGES):
        if top in names:
            return rank
    raise AssertionError(f"reprohub.{module} belongs to no stage: add its folder to STAGES and to CONTRIBUTING.md")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_walker_sees_lazy_and_relative_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from ..errors import X\ndef f():\n    from ..api import default_hub\n")
    assert imports_of("runtime.m", module, {"errors", "api", "runtime.m"}) == {"errors", "api"}


def test_no_import_cycles_inside_reprohub():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(f"reprohub.{m}" for m in cycle)


def test_no_module_imports_a_stage_above_its_own():
    upward = [f"reprohub.{m} imports reprohub.{t}" for m, targets in import_graph().items()
              for t in targets if stage_of(t) > stage_of(m)]
    assert upward == []


@pytest.mark.parametrize("name,path", sorted(module_files().items()))
def test_modules_stay_small(name, path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"reprohub.{name} has {lines} lines; split it by responsibility"


def test_the_top_level_reads_as_the_architecture():
    entries = sorted(p.name for p in PACKAGE.iterdir() if not p.name.startswith((".", "__pycache__")))
    assert len(entries) <= 18, entries  # 18 since the loader became hub (repos) + artifacts (what its code downloads)


def test_only_settings_reads_the_environment():
    readers = []
    for name, path in module_files().items():
        if name == "settings":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"os\.environ(\.get)?\s*[\[(]\s*['\"]|os\.getenv\(", line):
                readers.append(f"reprohub/{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert readers == [], "read settings through reprohub.settings:\n" + "\n".join(readers)


def test_every_variable_reprohub_names_is_declared():
    named = set()
    for path in module_files().values():
        named |= set(re.findall(r"[\"'](REPROHUB_[A-Z_]+)[\"']", path.read_text()))
    internal = {"REPROHUB_DEMO_FILES"}  # the demo repo's own setting, passed by the demo to its hubconf
    assert named - internal <= set(settings.VARIABLES)


def test_each_variable_is_spelled_once_in_settings():
    """A name like REPROHUB_GITHUB_API_URL is declared in settings and used from there, never defined again."""
    again = [f"reprohub/{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
             for name, path in module_files().items() if name != "settings"
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.match(r"\s*[A-Z_]+\s*=\s*[\"']REPROHUB_", line)]
    assert again == [], "use the constant from reprohub.settings:\n" + "\n".join(again)


def test_the_readme_names_only_modules_and_files_that_exist():
    missing = [p for p in re.findall(r"`((?:reprohub|benchmarks|tests)/[\w/.]+\.py)`", README) if not (ROOT / p).exists()]
    notes = README.split("## Design notes", 1)[1]
    old_names = [n for n in ("pinning", "golden_store") if f"`{n}`" in notes]
    assert missing == [] and old_names == [] and "ARCHITECTURE.md" not in README, (missing, old_names)
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "never pulls" not in quick_start and "--index-url https://download.pytorch.org/whl/cpu" in quick_start


def test_readme_settings_table_matches_the_declared_variables():
    section = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in re.findall(r"^\| (.+?) \|", section, re.M):
        documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)(?:=[^`]*)?`", row))
    assert documented == set(settings.VARIABLES)


def test_the_map_in_contributing_matches_the_folders():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    mapped = set(re.findall(r"^\| `reprohub/(\w+)/` \|", CONTRIBUTING, re.M))
    assert mapped == folders
    for name, path in module_files().items():
        if "." in name and path.name != "__init__.py":
            assert f"`{path.stem}`" in CONTRIBUTING, f"CONTRIBUTING.md's map does not mention reprohub.{name}"


def test_names_of_the_old_flat_modules_still_import():
    from reprohub.cache import ArtifactStore, sha256_file  # noqa: F401
    from reprohub.golden import compare, flatten  # noqa: F401
    from reprohub.lock import GoldenPin, Lockfile  # noqa: F401
    from reprohub.sources import GitHubSource, git_spec_parts  # noqa: F401

    assert callable(compare) and Lockfile().entry_count()["repos"] == 0


def test_python_dash_m_reprohub_is_the_command_and_stays_torch_free():
    import subprocess
    import sys

    script = ("import runpy, sys; sys.argv = ['reprohub', '--help']\n"
              "try:\n    runpy.run_module('reprohub', run_name='__main__')\n"
              "except SystemExit as e:\n    assert e.code == 0, e.code\n"
              "assert 'torch' not in sys.modules, 'python -m reprohub --help imported torch'\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "lock" in proc.stdout and "fetch" in proc.stdout


HTTP_STACK = ("requests", "urllib3", "urllib.request", "http.client")
# what only a repo load, a lock or a bundle needs: never imported by weights from a warm cache
REPO_STEPS = ("reprohub.lock.lockfile", "reprohub.fetch.archive", "reprohub.lock.oci", "reprohub.fetch.tree",
              "reprohub.sources.swhid")


def test_the_http_stack_is_imported_at_the_first_request_not_with_reprohub(server, tmp_path):
    """``import reprohub`` and a warm ``load_state_dict_from_url`` import no HTTP module (nor a lock's, an archive's or
    a tree's machinery); the cold one does (issue 41, goal 4: ``python benchmarks/run.py --only imports``)."""
    import subprocess
    import sys

    import torch

    weights = tmp_path / "w.pt"
    torch.save({"w": torch.ones(2)}, weights)
    url = server.add_file("w.pt", weights.read_bytes())
    script = ("import sys, reprohub\n"
              f"stack = {HTTP_STACK!r}\n"
              "print([m for m in stack if m in sys.modules])\n"
              "state = reprohub.load_state_dict_from_url(sys.argv[1], progress=False)\n"
              "assert float(state['w'].sum()) == 2.0\n"
              "print([m for m in stack if m in sys.modules])\n"
              f"print([m for m in {REPO_STEPS!r} if m in sys.modules])\n")
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "home")}
    runs = [subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, timeout=120, env=env)
            for _ in ("cold", "warm")]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    (cold_import, cold_load, _), (warm_import, warm_load, warm_steps) = [run.stdout.splitlines() for run in runs]
    assert cold_import == warm_import == "[]" and warm_steps == "[]"
    assert "'requests'" not in warm_load and "'urllib3'" not in warm_load  # (torch itself imports urllib.request)
    assert "'requests'" in cold_load  # the first request imported it, and it worked
