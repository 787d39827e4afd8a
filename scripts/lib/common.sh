# shellcheck shell=bash
# shellcheck disable=SC2034  # variables below are meant for the scripts that source this file
# Common helpers for the todo-api scripts. Source this file; do not run it.
# Safe under `set -euo pipefail`.

if [[ -n "${_TODO_API_COMMON_SH:-}" ]]; then
    return 0
fi
_TODO_API_COMMON_SH=1

# log MESSAGE... : one line on stderr, prefixed with [todo-api].
log() {
    printf '[todo-api] %s\n' "$*" >&2
}

# die MESSAGE... : log an error and exit 1.
die() {
    log "ERROR: $*"
    exit 1
}

# Repository root (the parent of scripts/).
TODO_API_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Per-user state (Python venv, PostgreSQL cluster, logs, dev JWT key).
# Lives outside the repository on purpose. Override with TODO_API_STATE_DIR.
if [[ -z "${HOME:-}" ]]; then
    HOME="$(getent passwd "$(id -u)" | cut -d: -f6 || true)"
    [[ -n "$HOME" ]] || HOME=/tmp
    export HOME
fi
STATE_DIR="${TODO_API_STATE_DIR:-$HOME/.cache/todo-api}"
mkdir -p "$STATE_DIR" || die "cannot create state directory $STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"

is_root() {
    [[ "$(id -u)" -eq 0 ]]
}

# need_root_or_sudo CMD [ARGS...] : run CMD as root (directly when we are root,
# through sudo otherwise); fail clearly when neither is possible.
need_root_or_sudo() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [[ -t 0 ]]; then
            sudo "$@"
        else
            # No terminal (CI): never wait for a password prompt.
            sudo -n "$@" || die "'sudo $*' failed (no terminal for a password?); run it by hand or as root"
        fi
    else
        die "need root to run '$*', and sudo is not installed; run it as root"
    fi
}

_TODO_API_APT_UPDATED=""

# apt_install PKG... : install Debian packages (apt-get update once per process).
apt_install() {
    [[ $# -gt 0 ]] || return 0
    command -v apt-get >/dev/null 2>&1 \
        || die "apt-get not found; please install these packages yourself: $*"
    if [[ -z "$_TODO_API_APT_UPDATED" ]]; then
        log "apt-get update"
        need_root_or_sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q \
            || die "apt-get update failed"
        _TODO_API_APT_UPDATED=1
    fi
    log "apt-get install $*"
    need_root_or_sudo env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@" \
        || die "apt-get install $* failed"
}

# mask_url URL : print URL with any password replaced by ***.
mask_url() {
    printf '%s\n' "$1" | sed -E \
        -e 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?]*):[^/]*@#\1:***@#' \
        -e 's#([?&[:space:]]|^)(password=)[^&[:space:]]*#\1\2***#g'
}
