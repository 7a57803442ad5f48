# Shared set-up for scripts/demo and scripts/test (sourced, not run).
# Makes .venv with sesstool and the given extra, and installs redis-server and
# memcached from Debian packages when they are missing and we may use apt-get.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SESSTOOL_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

ensure_venv() {  # $1: the pip extra to install (test, flask, ...)
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$1]"
}

apt_install() {  # installs Debian packages when root (or sudo works)
  local runner=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then runner="sudo"; else return 1; fi
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  $runner apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $runner apt-get install -y -qq "$@" >/dev/null
}

ensure_servers() {  # $1: "required" to fail when a server cannot be installed
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v memcached >/dev/null 2>&1 || missing+=(memcached)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} with apt-get" >&2
    if ! apt_install "${missing[@]}" redis-tools; then
      if [ "${1:-}" = required ]; then
        echo "error: cannot install ${missing[*]} (need root or sudo and apt-get)" >&2
        exit 1
      fi
      echo "warning: ${missing[*]} not installed; tests that need them will be skipped" >&2
    fi
  fi
}
