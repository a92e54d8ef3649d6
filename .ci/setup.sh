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

if [ "${MIXGRAPH_SKIP_APT:-0}" = 1 ]; then
    log "MIXGRAPH_SKIP_APT=1: not installing system packages"
elif [ "$can_install" -eq 1 ]; then
    log "system packages: ${APT_PACKAGES[*]}"
    # jackd2 asks whether to enable realtime scheduling: answer no, ahead of time
    if printf '%s\n' "${APT_PACKAGES[@]}" | grep -qx jackd2; then
        echo "jackd2 jackd/tweak_rt_limits boolean false" | "${SUDO[@]}" debconf-set-selections
    fi
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}" </dev/null
else
    log "cannot install system packages (not root, no sudo, or no apt-get): using what is installed"
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

log "install mixgraph${MIXGRAPH_EXTRAS:-} with $("$PY" --version 2>&1) ($PY)"
"$PY" -m pip install -q -e ".${MIXGRAPH_EXTRAS:-}" </dev/null

