#!/usr/bin/env bash
# Resolve the CPU install against PyPI alone, as a new user's machine does: no pip config files, no find-links,
# no extra index (this machine's local wheel folders are switched off). Downloads metadata only; installs nothing.
#   constraints/resolve.sh            check: resolution succeeds and every resolved package is pinned in cpu.txt
#   constraints/resolve.sh --write    rewrite constraints/cpu.txt as that resolution's closure
set -xeuo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-check}
BOOTSTRAP_PYTHON=${BOOTSTRAP_PYTHON:-python3}
WORK=${RESOLVE_WORK:-$(mktemp -d)}
CONSTRAINTS=${CONSTRAINTS:-constraints/cpu.txt}

# Only PyPI: drop every pip setting that could point elsewhere.
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT PIP_NO_INDEX
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1

"$BOOTSTRAP_PYTHON" -m venv "$WORK/venv"
PIP="$WORK/venv/bin/python -m pip"
# A current pip reads wheel metadata from the index (PEP 658) instead of downloading multi-GB CUDA wheels.
$PIP install --quiet --upgrade pip
$PIP --version
$PIP config list
# --write keeps every existing pin and adds what the closure needs besides (to upgrade a package, edit or drop its
# line first).
$PIP install --dry-run --ignore-installed --progress-bar off --report "$WORK/report.json" -c "$CONSTRAINTS" \
    torch==2.13.0 -e ".[test]"
"$WORK/venv/bin/python" - "$WORK/report.json" "$CONSTRAINTS" "$MODE" <<'PY'
import json
import re
import sys

report, constraints, mode = sys.argv[1:]


def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


resolved = {
    canon(item["metadata"]["name"]): item["metadata"]["version"]
    for item in json.load(open(report))["install"]
    if canon(item["metadata"]["name"]) != "verl-ext"
}
if mode == "--write":
    head = [line for line in open(constraints) if line.startswith("#")]
    with open(constraints, "w") as f:
        f.writelines(head)
        f.writelines(f"{name}=={resolved[name]}\n" for name in sorted(resolved))
    print(f"wrote {constraints}: {len(resolved)} pins")
    sys.exit(0)
pins = {}
for line in open(constraints):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, version = line.partition("==")
        pins[canon(name)] = version
unpinned = sorted(set(resolved) - set(pins))
moved = {n: (pins[n], v) for n, v in resolved.items() if n in pins and pins[n] != v}
print(f"PyPI alone resolves {len(resolved)} packages")
if unpinned or moved:
    print(f"not pinned in {constraints}: {unpinned}; pinned but resolved otherwise: {moved}")
    print("regenerate with: constraints/resolve.sh --write")
    sys.exit(1)
print(f"every resolved package is pinned in {constraints}")
PY
