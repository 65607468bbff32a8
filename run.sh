#!/usr/bin/env bash
# Set up the project in .venv/ and run it:
#   ./run.sh serve [server options]   install, then start the signaling server
#   ./run.sh test  [pytest options]   install with test tools, then run every test
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}

install() {
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "mpyc-webrtc needs Python 3.11 or newer as '$python' (set PYTHON=...)." >&2
        exit 1
    fi
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".$1"
}

system_packages() {
    # The WebRTC tests run every party inside throw-away network namespaces (iproute2).
    if ! command -v ip >/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y -qq iproute2
        else
            echo "The tests need iproute2 ('ip') and root for network namespaces." >&2
        fi
    fi
}

case "${1:-}" in
    serve)
        shift
        install ""
        exec .venv/bin/mpyc-webrtc-server --session sum:3 "$@"
        ;;
    test)
        shift
        system_packages
        install "[test]"
        .venv/bin/ruff check .
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        echo "usage: ./run.sh serve [server options] | ./run.sh test [pytest options]" >&2
        exit 2
        ;;
esac
