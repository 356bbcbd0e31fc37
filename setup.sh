#!/usr/bin/env bash
# Set up xencenter_lite on a fresh Debian 12 machine (as root), then run the demo or the tests.
#   ./setup.sh demo   install everything, bring up the built-in lab, show a migration
#   ./setup.sh test   install everything, then lint, type-check and run the whole test suite
# Both are idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

mode=${1:-}
case "$mode" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then
    echo "setup.sh installs system packages and runs the lab: run it as root." >&2
    exit 2
fi

# --- system packages ---------------------------------------------------------------------
packages=(
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients   # libvirtd and virsh
    qemu-system-x86 qemu-utils                                  # guests, qemu-img, qemu-io
    libvirt-dev pkg-config gcc                                  # to build libvirt-python
    iproute2 procps util-linux                                  # namespaces, tc, unshare
    tini                                                        # reaps the lab's QEMUs
    virtinst                                                    # VMs made as sysadmins make them (tests)
    openssh-server openssh-client                               # the lab's servers over qemu+ssh
    gnutls-bin                                                  # certtool: the lab's TLS certificates
    tcpdump                                                     # tests: what a migration puts on the wire
    xvfb xauth xdotool imagemagick                              # a real screen, screenshots
    libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3     # what Qt needs at run time
    libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
    libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
)
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    packages+=(python3-venv python3-dev)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# libvirtd 9.0 refuses to start its QEMU driver without these, even when running as root.
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt \
    -s /usr/sbin/nologin libvirt-qemu

# --- the Python environment ----------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

# --- run -----------------------------------------------------------------------------------
if [ "$mode" = test ]; then
    ruff check .
    mypy
    exec python -m pytest "${@:2}"
fi
exec bash scripts/demo.sh "${@:2}"
