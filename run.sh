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
    # Exactly the versions in requirements.lock (see its header): pip first (it must know
    # --build-constraint), then the project, its dependencies and its build backend.
    .venv/bin/python -m pip install --quiet -c requirements.lock --upgrade pip
    .venv/bin/python -m pip install --quiet -c requirements.lock \
        --build-constraint requirements.lock -e ".$1"
}

apt_install() {
    # Debian packages, installed when missing (needs root, as in CI).
    local missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} = 0 ] && return
    if [ "$(id -u)" != 0 ]; then
        echo "Please install these Debian packages first: ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${APT_LEAN:+--no-install-recommends} \
        "${missing[@]}" >/dev/null
}

browser_assets() {
    # Pyodide, the code editor and the syntax highlighter come from the npm registry,
    # pinned in package.json/package-lock.json, and are served by our own server:
    # browsers never fetch anything from a CDN. The dev dependencies (TypeScript, for
    # tests/test_web_types.py) are installed too, for serve as well: npm ci installs both.
    apt_install npm:npm
    local stale
    stale=$(node -e '
        const { dependencies, devDependencies } = require("./package.json");
        const deps = { ...dependencies, ...devDependencies };
        for (const [name, pinned] of Object.entries(deps)) {
            let have = null;
            try { have = require(`./node_modules/${name}/package.json`).version; } catch {}
            if (have !== pinned) console.log(name);
        }')
    [ -z "$stale" ] || npm ci --no-audit --no-fund --loglevel=error
}

case "${1:-}" in
    serve)
        shift
        install ""
        browser_assets
        exec .venv/bin/mpyc-webrtc-server --session average:3 "$@"
        ;;
    test)
        shift
        # Network namespaces (iproute2) for every WebRTC test; Chromium for the browser tests;
        # NAT routers (iptables) and a TURN relay (coturn) for the simulated internet; Redis
        # for server processes that share their sessions (tests/test_shared_sessions.py).
        apt_install ip:iproute2 chromium:chromium iptables:iptables turnserver:coturn \
            redis-server:redis-server
        # Firefox ESR, the e2e tests' second browser engine (e2e/test_firefox.py, and
        # e2e/test_csp.py). Playwright drives both Debian browsers as they are installed
        # (testbed/chromium.py, testbed/firefox.py): it downloads none of its own.
        APT_LEAN=1 apt_install firefox-esr:firefox-esr
        # A WireGuard mesh, the VPN baseline of the evaluation (bench/evaluate.py); without
        # its Recommends, which would pull in a kernel image.
        APT_LEAN=1 apt_install wireguard-go:wireguard-go wg:wireguard-tools
        install "[test]"
        browser_assets
        .venv/bin/ruff check .
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        echo "usage: ./run.sh serve [server options] | ./run.sh test [pytest options]" >&2
        exit 2
        ;;
esac
