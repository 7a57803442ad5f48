# Shared set-up for scripts/demo and scripts/test (sourced, not run).
# Makes a virtualenv with sesstool for one dependency set, and installs
# redis-server, memcached and PostgreSQL from Debian packages when they are
# missing and we may use apt-get.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
LOCK="$ROOT/requirements-dev.lock"
FLOORS="$ROOT/constraints-floor.txt"
PIP_QUIET=(--quiet --disable-pip-version-check)

venv_for() {  # $1: dependency set -> the virtualenv it lives in
  case "$1" in
    lock) echo "${SESSTOOL_VENV:-$ROOT/.venv}" ;;
    *) echo "${SESSTOOL_VENV:-$ROOT/.venv-$1}" ;;
  esac
}

# ensure_venv SET: make (or bring up to date) the virtualenv of dependency set SET
#   lock    every package at its version and hash in requirements-dev.lock (the default)
#   floor   sesstool's runtime dependencies at the floors pyproject.toml declares
#           (constraints-floor.txt); the test tools still from the lock
#   newest  the newest release of every runtime dependency, resolved now; the
#           test tools still from the lock
ensure_venv() {
  local set="$1" venv
  venv="$(venv_for "$set")"
  if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
  fi
  local pip=("$venv/bin/python" -m pip)
  case "$set" in
    lock)
      "${pip[@]}" install "${PIP_QUIET[@]}" --require-hashes --no-deps -r "$LOCK"
      "${pip[@]}" install "${PIP_QUIET[@]}" --no-deps --no-build-isolation -e "$ROOT"
      ;;
    floor|newest)
      local tools
      tools="$(mktemp)"
      "$PYTHON" "$ROOT/scripts/depsets.py" tools "$LOCK" "$FLOORS" > "$tools"
      if [ "$set" = floor ]; then
        "${pip[@]}" install "${PIP_QUIET[@]}" -c "$tools" -c "$FLOORS" -e "$ROOT[test]"
      else
        "${pip[@]}" install "${PIP_QUIET[@]}" --upgrade --upgrade-strategy eager -c "$tools" -e "$ROOT[test]"
      fi
      rm -f "$tools"
      ;;
    *) echo "error: unknown dependency set '$set' (lock, floor or newest)" >&2; exit 2 ;;
  esac
  VENV="$venv"
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

have_postgres() {  # Debian keeps initdb off PATH, under /usr/lib/postgresql/N/bin
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

ensure_servers() {  # $1: "required" to fail when a server cannot be installed
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server redis-tools)
  command -v memcached >/dev/null 2>&1 || missing+=(memcached)
  have_postgres || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} with apt-get" >&2
    if ! apt_install "${missing[@]}"; then
      if [ "${1:-}" = required ]; then
        echo "error: cannot install ${missing[*]} (need root or sudo and apt-get)" >&2
        exit 1
      fi
      echo "warning: ${missing[*]} not installed; tests that need them will be skipped" >&2
    fi
  fi
}
