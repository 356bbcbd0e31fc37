#!/usr/bin/env bash
# The demo: bring up the built-in lab (three real libvirt servers with running guests) and
# move VMs around it with the same engine the console uses.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
export PATH="$PWD/.venv/bin:$PATH"

# lab up prints its progress, then the inventory's path last. (Not `tee /dev/stderr`: when
# the demo's output goes to a file, that reopens the file and writes over its start.)
up=$(mktemp)
trap 'rm -f "$up"' EXIT
xencenter-lite lab up | tee "$up"
inventory=$(tail -n 1 "$up")
export XENCENTER_LITE_INVENTORY="$inventory"
echo
echo "== The lab ($inventory)"
xencenter-lite list

where() {  # the server a VM runs on now
    xencenter-lite list --json | python3 -c \
        'import json,sys; print(next(v["server"] for v in json.load(sys.stdin)["vms"] if v["name"]==sys.argv[1]))' "$1"
}

# XenMotion: web-1's disk is on the pool's shared SR, so only its memory moves.
src=$(where web-1)
dst=$([ "$src" = lab-a1 ] && echo lab-a2 || echo lab-a1)
echo; echo "== Memory-only live migration of web-1: $src -> $dst"
xencenter-lite migrate web-1 --to "$dst"

# A busy VM converges: web-1 rewrites 8 MiB of memory a second; capped at 3 MiB/s its copy
# would never end. Auto-converge (the default policy) throttles its vCPUs until it moves (a
# TCG-emulated guest, as the lab's are where there is no KVM, is not throttled: the allowed
# downtime climbs to the maximum, then the guest is paused until the copy completes); each
# step is printed.
echo; echo "== A busy VM converges: web-1 $dst -> $src capped at 3 MiB/s (policy auto-converge)"
xencenter-lite migrate web-1 --to "$src" --bandwidth 3

# Servers are known by what libvirt says they are: an inventory entry that reaches lab-a1
# again under another name (here the same socket, written another way) is refused.
echo; echo "== The same server under two names is refused (its host UUID gives it away)"
twice=$(mktemp)
trap 'rm -f "$up" "$twice"' EXIT
a1=$(python3 -c 'import sys, tomllib
inv = tomllib.load(open(sys.argv[1], "rb"))
print(next(s["uri"] for s in inv["servers"] if s["name"] == "lab-a1"))' "$inventory")
{ cat "$inventory"; printf '\n[[servers]]\nname = "lab-a1-again"\nuri = "%s"\n' \
    "${a1/run\/libvirt-sock/run\/.\/libvirt-sock}"; } > "$twice"
xencenter-lite --inventory "$twice" list | grep -E '^lab-a1-again' || true
xencenter-lite --inventory "$twice" precheck web-1 --to lab-a1-again || true

# Refused before anything moves: the small SR cannot hold db-1's disks.
echo; echo "== A migration the checks refuse (nothing moves)"
xencenter-lite precheck db-1 --to lab-b1 --sr "Small storage" || true

# Storage XenMotion: db-1's two disks are copied over the storage network.
src=$(where db-1)
if [ "$src" = lab-b1 ]; then dst=lab-a1; args=(--sr "Local storage"); else dst=lab-b1; args=(--disk vda="Fast storage" --disk vdb="Local storage"); fi
echo; echo "== Live migration with storage of db-1: $src -> $dst"
xencenter-lite migrate db-1 --to "$dst" "${args[@]}"

# Maintenance mode: one plan empties the server (placement picks each VM's destination; a
# halted VM stays), the server then takes no VM, and leaving brings its VMs back.
srv=$(where web-1)
echo; echo "== Placement: the best server for app-1"
xencenter-lite precheck app-1 --to auto | sed -n '1,4p'
echo; echo "== Maintenance mode on $srv"
xencenter-lite maintenance enter "$srv"
xencenter-lite list | grep -E '^lab-'
xencenter-lite precheck app-1 --to "$srv" || true
echo; echo "== $srv leaves maintenance mode; its VMs come back"
xencenter-lite maintenance exit "$srv"

# Power operations: the halted build-1 starts, is suspended and resumed, then forced off.
echo; echo "== Power operations on build-1"
xencenter-lite start build-1
xencenter-lite suspend build-1
xencenter-lite resume build-1
xencenter-lite shutdown build-1 --force

# Halted VMs move too, and stay halted: build-1 goes directly (started paused, its CPUs never
# run; its disk sent by libvirt over the storage network, then turned off there) and comes
# back through the console's volume streams, read back and compared before it is defined.
src=$(where build-1)
dst=$([ "$src" = lab-b1 ] && echo lab-a1 || echo lab-b1)
echo; echo "== A halted VM moves: build-1 $src -> $dst, its disk sent directly"
xencenter-lite migrate build-1 --to "$dst" --sr "Local storage"
echo; echo "== ... and back to $src through the console's volume streams, verified"
xencenter-lite migrate build-1 --to "$src" --sr "Local storage" --via stream

# Copy VM: a new halted VM with its own disks, new UUID and MACs; a running VM is refused.
echo; echo "== Copy VM: build-1-copy from build-1"
if xencenter-lite list --json | python3 -c 'import json,sys
sys.exit(0 if any(v["name"] == "build-1-copy" for v in json.load(sys.stdin)["vms"]) else 1)'; then
    echo "(build-1-copy is there from an earlier run)"
else
    xencenter-lite copy build-1 --name build-1-copy
fi
xencenter-lite copy web-1 --name web-1-copy || true

# Start on Server: with its disk moved (halted: a verified copy) to the pool's shared SR,
# build-1 starts on the other pool member; then it is turned off and its disk goes back.
src=$(where build-1)
other=$([ "$src" = lab-a1 ] && echo lab-a2 || echo lab-a1)
echo; echo "== Start on Server: build-1's disk to the shared SR, then it starts on $other"
xencenter-lite move-disk build-1 vda --sr "Shared storage"
xencenter-lite start build-1 --on "$other"
xencenter-lite shutdown build-1 --force
xencenter-lite migrate build-1 --to "$src"
xencenter-lite move-disk build-1 vda --sr "Local storage"

# The same servers as an admin workstation reaches them: over qemu+ssh, on their management
# addresses (the lab runs an sshd in each; its key and known_hosts are the lab's own). The
# source's libvirtd opens the migration to the destination over ssh too (peer to peer).
ssh_inventory="$(dirname "$inventory")/inventory-ssh.toml"
src=$(where web-1)
dst=$([ "$src" = lab-a1 ] && echo lab-a2 || echo lab-a1)
echo; echo "== Over qemu+ssh ($ssh_inventory): the servers, and web-1 $src -> $dst"
xencenter-lite --inventory "$ssh_inventory" list | grep -E '^lab-'
grep -m 3 'uri = ' "$ssh_inventory"
xencenter-lite --inventory "$ssh_inventory" migrate web-1 --to "$dst"

# And over TLS, with certificates of the lab's own CA: the console reaches each libvirtd by
# qemu+tls, and --tls encrypts the migration stream itself (memory and disks).
tls_inventory="$(dirname "$inventory")/inventory-tls.toml"
echo; echo "== Over qemu+tls, encrypted (--tls): web-1 $dst -> $src"
grep -m 1 'uri = ' "$tls_inventory"
xencenter-lite --inventory "$tls_inventory" migrate web-1 --to "$src" --tls

echo; echo "== The lab afterwards"
xencenter-lite list
# The console on the same lab. With a screen, it opens there; without one, it runs on a
# virtual screen (Xvfb) long enough to show the lab, and a screenshot is saved.
echo; echo "== The console"
if [ -n "${DISPLAY:-}" ]; then
    echo "Opening XenCenter Lite on $DISPLAY (close its window to end the demo)."
    xencenter-lite
else
    shot=/tmp/xencenter-lite-demo.png
    display=:$(( 90 + RANDOM % 9 ))
    Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
    xvfb=$!
    trap 'kill $gui $xvfb 2>/dev/null || true' EXIT
    sleep 1
    DISPLAY=$display xencenter-lite &
    gui=$!
    sleep 6
    DISPLAY=$display import -window root "$shot"
    kill "$gui"; wait "$gui" 2>/dev/null || true
    echo "No screen here: the console ran on a virtual screen; its picture is $shot"
    echo "(run the demo from a desktop session, or with DISPLAY set, to use it)."
fi
echo
echo "The lab keeps running. Use it with: export XENCENTER_LITE_INVENTORY=$inventory"
echo "Remove it with: xencenter-lite lab down"
