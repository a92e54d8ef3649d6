# Sourced by .ci/run and .ci/serve: installs the system packages in
# APT_PACKAGES (when root or sudo allows), picks a Python that may be
# installed into (a private venv when the system Python refuses pip), and
# installs mixgraph with the extras in MIXGRAPH_EXTRAS. Leaves that Python
# in $PY.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '\n==> %s\n' "$*"; }

can_install=1
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
    can_install=0
fi
command -v apt-get >/dev/null 2>&1 || can_install=0

# only what is missing: dpkg knows what is installed, and `apt-get update` is
# needed only when something is to be installed (APT_UPDATED=1 once it ran)
APT_UPDATED=0
missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" \
            || printf '%s\n' "$p"
    done
}

if [ "${MIXGRAPH_SKIP_APT:-0}" = 1 ]; then
    log "MIXGRAPH_SKIP_APT=1: not installing system packages"
elif ! command -v dpkg-query >/dev/null 2>&1; then
    log "no dpkg-query (not Debian?): install ${APT_PACKAGES[*]} yourself; using what is installed"
else
    mapfile -t MISSING < <(missing_packages "${APT_PACKAGES[@]}")
    if [ "${#MISSING[@]}" -eq 0 ]; then
        log "system packages: all installed (${APT_PACKAGES[*]})"
    elif [ "$can_install" -eq 1 ]; then
        log "system packages: installing ${MISSING[*]}"
        # jackd2 asks whether to enable realtime scheduling: answer no, ahead of time
        if printf '%s\n' "${MISSING[@]}" | grep -qx jackd2; then
            echo "jackd2 jackd/tweak_rt_limits boolean false" | "${SUDO[@]}" debconf-set-selections
        fi
        "${SUDO[@]}" apt-get update -q
        APT_UPDATED=1
        "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${MISSING[@]}" </dev/null
    else
        log "cannot install system packages (not root, no sudo, or no apt-get): missing ${MISSING[*]}"
    fi
fi

# A Python we may install into: the active one, unless it is a distribution
# Python that refuses pip (PEP 668), in which case a private venv.
PY="${PYTHON:-python3}"
if "$PY" - <<'EOF'
import sys, sysconfig, os
in_venv = sys.prefix != sys.base_prefix
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and not in_venv else 1)
EOF
then
    VENV="${MIXGRAPH_CI_VENV:-${HOME:-/root}/.cache/mixgraph/ci-venv}"
    log "$("$PY" -c 'import sys; print(sys.executable)') is externally managed: using the venv $VENV"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    PY="$VENV/bin/python"
fi

# pip only when something changed: the stamp is a hash of what the install depends
# on (the build files, the C sources it compiles, the extras), kept in the Python's
# prefix; the editable install picks up Python changes by itself
STAMP="$("$PY" -c '
import hashlib, os, sys
if sys.prefix != sys.base_prefix:  # a venv: the stamp lives in it
    print(os.path.join(sys.prefix, ".mixgraph-setup-stamp"))
else:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    key = hashlib.sha256(sys.executable.encode()).hexdigest()[:12]
    print(os.path.join(cache, "mixgraph", "setup-stamp-" + key))
')"
mkdir -p "$(dirname "$STAMP")" 2>/dev/null || true
want_stamp="$( { printf '%s\n' "${MIXGRAPH_EXTRAS:-}" "$("$PY" --version 2>&1)";
                cat pyproject.toml setup.py csrc/* nodes/*.c; } | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ] \
        && "$PY" -c 'import mixgraph.server._core' 2>/dev/null; then
    log "mixgraph${MIXGRAPH_EXTRAS:-} is installed and current in $PY: skipping pip"
else
    log "install mixgraph${MIXGRAPH_EXTRAS:-} with $("$PY" --version 2>&1) ($PY)"
    "$PY" -m pip install -q -e ".${MIXGRAPH_EXTRAS:-}" </dev/null
    echo "$want_stamp" > "$STAMP" 2>/dev/null || true
fi

# Where the `mixgraph` command is: say so when it is not on PATH (a private venv),
# and offer a link in ~/.local/bin (made when asked on a terminal, or with
# MIXGRAPH_LINK=1; MIXGRAPH_LINK=0 never asks)
MIXGRAPH_BIN="$(dirname "$PY")/mixgraph"
if [ -x "$MIXGRAPH_BIN" ] && [ "$(command -v mixgraph 2>/dev/null)" != "$MIXGRAPH_BIN" ]; then
    LINK="${HOME:-/root}/.local/bin/mixgraph"
    if [ "$(readlink -f "$LINK" 2>/dev/null)" = "$(readlink -f "$MIXGRAPH_BIN")" ]; then
        log "the mixgraph command is $MIXGRAPH_BIN, linked from $LINK (put $(dirname "$LINK") on PATH)"
    else
        log "the mixgraph command is $MIXGRAPH_BIN, which is not on your PATH"
        answer="${MIXGRAPH_LINK:-}"
        if [ -z "$answer" ] && [ -t 0 ] && [ -t 1 ]; then
            read -r -p "link it as $LINK? [y/N] " reply || reply=n
            case "$reply" in [yY]*) answer=1 ;; *) answer=0 ;; esac
        fi
        if [ "$answer" = 1 ]; then
            mkdir -p "$(dirname "$LINK")" && ln -sfn "$MIXGRAPH_BIN" "$LINK"
            echo "linked $LINK -> $MIXGRAPH_BIN"
            case ":$PATH:" in *":$(dirname "$LINK"):"*) ;;
                *) echo "add $(dirname "$LINK") to PATH (e.g. in ~/.profile) to run \`mixgraph\`" ;;
            esac
        else
            echo "to run it as \`mixgraph\`: ln -s $MIXGRAPH_BIN $LINK (or MIXGRAPH_LINK=1 bash .ci/serve)"
        fi
    fi
fi

