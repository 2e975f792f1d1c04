#!/usr/bin/env bash
# Interoperability of `background-tasks mcp` with the Python MCP SDK, in both protocol modes
# ("legacy": the initialize handshake; "2026-07-28": stateless). For .ci/run:
#   tests/mcp_interop/run.sh BINARY [VENV_DIR]
# Creates VENV_DIR (default target/mcp-venv) once, with mcp pinned; skips with a note when
# there is no Python 3.10 or newer (mcp 2.3.0 needs it).
set -euo pipefail
binary=$1
venv=${2:-target/mcp-venv}
here=$(cd "$(dirname "$0")" && pwd)
python=$(command -v python3 || true)
if [ -z "$python" ] || ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "note: skipping the Python MCP interop test: no python3 >= 3.10 (mcp 2.3.0 needs it)"
    exit 0
fi
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("mcp") == "2.3.0"' 2>/dev/null; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp==2.3.0'
fi
status=0
for mode in legacy 2026-07-28; do
    timeout 300 "$venv/bin/python" "$here/interop.py" "$binary" "$mode" || status=1
done
exit $status
