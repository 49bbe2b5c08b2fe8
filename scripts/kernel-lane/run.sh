#!/usr/bin/env bash
# The kernel lane: boot Debian's kernel with SELinux under QEMU (TCG), the host's
# root read-only over 9p, load the policy, and put every verify answer to the
# kernel in enforcing mode. Usage: run.sh [POLICY_ROOT]
# Writes build/kernel-report.json; exit 0 only when every check agrees.
# Environment: KERNEL_LANE_TIMEOUT (seconds, default 1200), KERNEL_LANE_DOCKER=0
# (skip the docker stage; the report says so), KERNEL_LANE_APPEND (extra kernel
# command line, e.g. mcslabel.script=/abs/path/to/another-guest-script.sh).
set -euo pipefail
policy_root=""
if [ -n "${1:-}" ]; then
  # Absolute: the guest sees the host's root, so the same path works there.
  policy_root=$(realpath -e "$1") || { echo "POLICY_ROOT $1 does not exist" >&2; exit 2; }
  ls "$policy_root"/policy/policy.* >/dev/null 2>&1 ||
    { echo "POLICY_ROOT $policy_root has no policy/policy.NN" >&2; exit 2; }
fi
cd "$(dirname "$0")/../.."
repo=$(pwd)
out=$repo/build/kernel-lane
report=$repo/build/kernel-report.json
boot_timeout=${KERNEL_LANE_TIMEOUT:-1200}  # seconds for the whole guest run
# The context-mount stage (docs/kernel.md): image sizes to mount, sizes to relabel too.
mount_sizes=${KERNEL_LANE_MOUNT_SIZES-10k,1m}
relabel_sizes=${KERNEL_LANE_MOUNT_RELABEL-10k}
case ",$relabel_sizes," in  # relabeling 1M files under TCG takes about 10 minutes
  *,1m,*) boot_timeout=${KERNEL_LANE_TIMEOUT:-2700} ;;
esac
log() { printf '[lane] %s\n' "$*"; }
start=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then echo "run.sh must run as root (apt-get, 9p passthrough)" >&2; exit 2; fi
# setup.sh installs the lane's packages too (idempotent; seconds when all are there).
MCSLABEL_APT_EXTRA="qemu-system-x86 linux-image-amd64 busybox-static" bash scripts/setup.sh

# The newest installed Debian kernel that has its modules.
kver=""
for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V); do
  [ -d "/lib/modules/$k" ] && kver=$k
done
[ -n "$kver" ] || { echo "no /boot/vmlinuz-* with /lib/modules" >&2; exit 1; }
grep -q '^CONFIG_SECURITY_SELINUX=y' "/boot/config-$kver" || { echo "$kver lacks SELinux" >&2; exit 1; }

# Everything but the cached file system images of the context-mount stage.
mkdir -p "$out" && find "$out" -mindepth 1 -maxdepth 1 ! -name images -exec rm -rf {} +
rm -f "$report"
mkdir -p "$out/initramfs"/{bin,dev,proc,sys,modules}
ir=$out/initramfs
cp /bin/busybox "$ir/bin/busybox"
cp scripts/kernel-lane/init "$ir/init"
: > "$ir/modules.order"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache \
         9pnet 9pnet_virtio 9p; do
  ko=$(find "/lib/modules/$kver/kernel" -name "$m.ko" | head -n 1)
  [ -n "$ko" ] || { echo "module $m.ko not found for $kver" >&2; exit 1; }
  cp "$ko" "$ir/modules/" && echo "$m" >> "$ir/modules.order"
done
(cd "$ir" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$out/initramfs.cpio.gz"
log "kernel $kver, initramfs $(du -k "$out/initramfs.cpio.gz" | cut -f1) KiB"

# The docker stage's image: a root file system of busybox-static and its applet
# links (as scripts/dockerd.sh builds mcslabel-busybox:test), imported by the
# guest's dockerd; no host daemon needed. KERNEL_LANE_DOCKER=0 skips the stage (reported).
docker_args=()
if [ "${KERNEL_LANE_DOCKER:-1}" = 0 ]; then
  docker_args=(--docker-skip "KERNEL_LANE_DOCKER=0")
else
  img=$out/image-root
  mkdir -p "$img/bin" "$img/tmp" "$img/etc"
  cp /bin/busybox "$img/bin/busybox"
  for applet in $("$img/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$img/bin/$applet"
  done
  echo 'root:x:0:0:root:/:/bin/sh' > "$img/etc/passwd"
  tar -C "$img" -cf "$out/image-rootfs.tar" . && rm -rf "$img"
  docker_args=(--docker-image-tar "$out/image-rootfs.tar")
fi
.venv/bin/python scripts/kernel-lane/lane.py plan "$out/plan.json" --policy-root "$policy_root" "${docker_args[@]}"
# The context-mount stage's ext4 images (built once, cached in $out/images) as virtio disks.
mount_drives=$(.venv/bin/python scripts/kernel-lane/mount_stage.py prepare "$out" \
  --sizes "$mount_sizes" --relabel-sizes "$relabel_sizes" \
  --walk-limit "${KERNEL_LANE_MOUNT_WALK_LIMIT-0}" --policy-root "$policy_root")

log "booting (TCG, timeout ${boot_timeout}s); console in $out/console.log"
boot_start=$(date +%s)
set +e
timeout --kill-after=10 "$boot_timeout" qemu-system-x86_64 \
  -accel tcg -m 2048 -smp 2 -nographic -no-reboot -nodefaults -serial stdio \
  -kernel "/boot/vmlinuz-$kver" -initrd "$out/initramfs.cpio.gz" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
  -virtfs "local,path=$out,mount_tag=laneout,security_model=passthrough" $mount_drives \
  -virtfs local,path=/,mount_tag=enginefs,security_model=passthrough,readonly=on,multidevs=remap \
  -append "${KERNEL_LANE_APPEND:-} console=ttyS0 security=selinux selinux=1 enforcing=0 panic=-1 quiet loglevel=4 log_buf_len=16M audit_backlog_limit=65536 mcslabel.repo=$repo mcslabel.timeout=$((boot_timeout - 60))" \
  < /dev/null > "$out/console.log" 2>&1
qemu_status=$?
set -e
boot_end=$(date +%s)
grep -E '^\[guest|lane-init' "$out/console.log" | sed 's/^/  /' || true
log "guest finished in $((boot_end - boot_start))s (qemu exit $qemu_status)"

set +e
.venv/bin/python scripts/kernel-lane/lane.py report "$out/plan.json" "$out/guest.json" "$report"
status=$?
set -e
# A copy named after the policy, so CI keeps one report per policy.
[ -f "$report" ] && cp "$report" "build/kernel-report-$(basename "${policy_root:-installed}").json"
log "report $report; lane took $(( $(date +%s) - start ))s"
exit $status
