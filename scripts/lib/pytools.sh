# shellcheck shell=bash
# ensure_pytools: a Python venv at $STATE_DIR/venv with the Python tools the
# checks need (cfn-lint for template.yaml, moto's server as a local Secrets
# Manager, openapi-spec-validator and schemathesis for openapi.yaml and the
# contract test). Its bin/ is put first on PATH. Source this file; do not run it.

# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# cfn-lint MUST stay on 1.53.x: later versions silently pass broken SAM templates.
# schemathesis and openapi-spec-validator are pinned exactly: a new release can
# add checks or change the CLI, which must be a deliberate bump here.
TODO_API_PY_REQUIREMENTS=("cfn-lint==1.53.*" "moto[server]>=5,<6"
    "openapi-spec-validator==0.9.0" "schemathesis==4.32.5")

# _py_can_venv PY : true when PY can create a venv with pip in it.
_py_can_venv() {
    "$1" -c 'import venv, ensurepip' >/dev/null 2>&1
}

# _py_base_python VENV : print a python3 (not the one inside VENV) able to make venvs.
_py_base_python() {
    local venv="$1" cand
    cand="$(command -v python3 || true)"
    if [[ -n "$cand" && "$cand" != "$venv/bin/"* ]] && _py_can_venv "$cand"; then
        printf '%s\n' "$cand"
        return 0
    fi
    if [[ -x /usr/bin/python3 ]] && _py_can_venv /usr/bin/python3; then
        printf '%s\n' /usr/bin/python3
        return 0
    fi
    log "python3 with venv/ensurepip not found; installing python3 python3-venv python3-pip"
    apt_install python3 python3-venv python3-pip
    _py_can_venv /usr/bin/python3 || die "/usr/bin/python3 still cannot create a venv"
    printf '%s\n' /usr/bin/python3
}

ensure_pytools() {
    local venv="$STATE_DIR/venv"
    local stamp="$venv/.todo-api-requirements"
    local want="${TODO_API_PY_REQUIREMENTS[*]}"

    local lockfd
    exec {lockfd}>"$STATE_DIR/venv.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w 600 "$lockfd" || die "timed out waiting for $STATE_DIR/venv.lock"
    fi

    local have=""
    [[ -f "$stamp" ]] && have="$(<"$stamp")"
    if [[ "$have" != "$want" ]] \
        || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1 \
        || [[ ! -x "$venv/bin/cfn-lint" || ! -x "$venv/bin/moto_server" ]] \
        || [[ ! -x "$venv/bin/openapi-spec-validator" || ! -x "$venv/bin/schemathesis" ]]; then
        local py
        py="$(_py_base_python "$venv")"
        log "creating Python venv $venv ($("$py" --version 2>&1)) with: $want"
        rm -rf "$venv"
        "$py" -m venv "$venv" || die "python3 -m venv $venv failed"
        log "pip install $want (may take a minute)"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "${TODO_API_PY_REQUIREMENTS[@]}" \
            || die "pip install ${TODO_API_PY_REQUIREMENTS[*]} failed"
        printf '%s' "$want" >"$stamp"
    fi

    exec {lockfd}>&-

    case ":$PATH:" in
        *":$venv/bin:"*) ;;
        *) PATH="$venv/bin:$PATH" ;;
    esac
    export PATH

    local ver
    ver="$(cfn-lint --version 2>&1)" || die "cfn-lint does not run: $ver"
    [[ "$ver" == *" 1.53."* ]] || die "expected cfn-lint 1.53.x, got: $ver"
    command -v moto_server >/dev/null 2>&1 || die "moto_server not found in $venv/bin"
    command -v openapi-spec-validator >/dev/null 2>&1 \
        || die "openapi-spec-validator not found in $venv/bin"
    command -v schemathesis >/dev/null 2>&1 || die "schemathesis not found in $venv/bin"
    log "Python tools from $venv: $ver"
}
