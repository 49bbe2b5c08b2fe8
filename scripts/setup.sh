#!/usr/bin/env bash
# Install everything mcslabel's demo and tests need on a Debian 12 machine.
# Idempotent: a second run installs nothing and takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh must run as root (apt-get, semodule)" >&2
  exit 2
fi

# OS packages. The SELinux bindings come from Debian, never from PyPI.
APT_PACKAGES=(
  python3-venv python3-dev python3-selinux python3-setools
  selinux-policy-default selinux-policy-dev selinux-policy-src
  checkpolicy policycoreutils semodule-utils selinux-utils setools attr zstd make openssl
  libsepol2  # mcslabel.verification.sepol loads libsepol.so.2 with ctypes (verify)
  docker.io busybox-static etcd-server etcd-client
  podman catatonit netavark  # second engine (mcslabel podman); catatonit: pod infra containers
)
# Extra packages a caller needs too (the kernel lane: qemu-system-x86 linux-image-amd64).
read -r -a extra_packages <<< "${MCSLABEL_APT_EXTRA:-}"
APT_PACKAGES+=("${extra_packages[@]}")
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The virtualenv sees the OS bindings through --system-site-packages.
if [ ! -x .venv/bin/python ]; then
  log "creating .venv from /usr/bin/python3"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  log "installing mcslabel (editable) with its extras"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q -e '.[dev,docker,etcd]' 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import mcslabel, selinux, setools' 
  touch .venv/.installed
fi

# refpolicy ships container.{te,if,fc} in its source but not in the built
# default policy: build and install the module when container_t is missing.
policy_type=$(sed -n 's/^SELINUXTYPE=//p' /etc/selinux/config)
policy_file=$(ls /etc/selinux/"$policy_type"/policy/policy.* | sort -V | tail -n 1)
# seinfo exits 0 even when the type is missing ("Types: 0"): look for the name.
has_container_t() { seinfo -t container_t "$policy_file" 2>/dev/null | grep -q '^ *container_t$'; }
if ! has_container_t; then
  log "building the container policy module from selinux-policy-src"
  work=$(mktemp -d)
  tar --zstd -xf /usr/src/selinux-policy-src.tar.zst -C "$work" --strip-components=4 \
    selinux-policy-src/policy/modules/services/container.te \
    selinux-policy-src/policy/modules/services/container.if \
    selinux-policy-src/policy/modules/services/container.fc
  # m4 warns about duplicate interface definitions (the .if is also in the
  # devel headers); those warnings are harmless.
  make -s -C "$work" -f /usr/share/selinux/devel/Makefile container.pp >/dev/null 2>&1
  semodule -i "$work/container.pp" 2>&1 | grep -v 'not in password file' || true
  rm -rf "$work"
  if ! has_container_t; then
    echo "setup.sh: the container module was installed but $policy_file still lacks container_t" >&2
    exit 1
  fi
fi
# Shell completion and the man page, generated from the CLI's own argparse
# definitions (python -m mcslabel.cli.generate); rewritten only when changed.
install_generated() {  # kind, destination
  local tmp
  tmp=$(mktemp)
  .venv/bin/python -m mcslabel.cli.generate "$1" >"$tmp"
  if ! cmp -s "$tmp" "$2" 2>/dev/null; then
    mkdir -p "$(dirname "$2")"
    install -m 0644 "$tmp" "$2"
    log "installed $2"
  fi
  rm -f "$tmp"
}
install_generated bash /usr/share/bash-completion/completions/mcslabel
install_generated zsh /usr/local/share/zsh/site-functions/_mcslabel
install_generated man /usr/local/share/man/man1/mcslabel.1

log "ready: $(.venv/bin/mcslabel --version), policy $policy_file has container_t"
