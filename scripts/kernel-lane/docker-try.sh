#!/bin/sh
# The Docker stage, as far as it got (docs/kernel.md, "Not covered: Docker").
# Not part of the lane. To try it: `make test-kernel` once (builds the
# initramfs), `docker save mcslabel-busybox:test -o build/kernel-lane/busybox.tar`,
# then boot like run.sh does, adding `mcslabel.script=$PWD/scripts/kernel-lane/docker-try.sh`
# to -append; the output is on the console and in build/kernel-lane/*.log.
repo=$1
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
D=/run/d; DK="docker -H unix://$D/docker.sock"
t0=$(date +%s); el() { echo "[dexp $(( $(date +%s) - t0 ))s] $*"; }
mount -t selinuxfs selinuxfs /sys/fs/selinux
$repo/.venv/bin/python -c "import sys; sys.path.insert(0, '$repo/scripts/kernel-lane'); import guest; guest.load_policy('/etc/selinux/default/policy/policy.33')"
el "policy loaded"
mount -t cgroup2 none /sys/fs/cgroup
modprobe overlay && el "overlay loaded"
mkdir -p $D && mount -t tmpfs tmpfs $D
echo '{}' > $D/daemon.json
mkdir -p $D/ctd
printf 'version = 2\nroot = "%s/ctd/root"\nstate = "%s/ctd/state"\n[grpc]\naddress = "%s/ctd/containerd.sock"\n' $D $D $D > $D/ctd/config.toml
containerd --config $D/ctd/config.toml > /run/lane-out/containerd.log 2>&1 &
i=0; while [ $i -lt 300 ] && ! [ -S $D/ctd/containerd.sock ]; do sleep 1; i=$((i+1)); done
el "containerd socket after ${i}s"
dockerd --selinux-enabled --containerd $D/ctd/containerd.sock --data-root $D/data --exec-root $D/exec --pidfile $D/pid -H unix://$D/docker.sock --config-file $D/daemon.json --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 > /run/lane-out/dockerd.log 2>&1 &
i=0; while [ $i -lt 300 ] && ! $DK version >/dev/null 2>&1; do sleep 2; i=$((i+2)); done
el "dockerd up after ${i}s? $($DK version --format '{{.Server.Version}}' 2>&1 | tail -1)"
$DK load -i /run/lane-out/busybox.tar 2>&1 | tail -1
el "loaded"
$DK run --rm --network none mcslabel-busybox:test cat /proc/self/attr/current 2>&1 | tail -2
el "ran permissive"
$DK run -d --name c2 --network none mcslabel-busybox:test sleep 100 2>&1 | tail -1
$DK inspect c2 --format 'PL={{.ProcessLabel}} ML={{.MountLabel}}' 2>&1
echo 1 > /sys/fs/selinux/enforce
$DK run --rm --network none mcslabel-busybox:test cat /proc/self/attr/current 2>&1 | tail -2
el "ran enforcing"
echo 0 > /sys/fs/selinux/enforce
dmesg | grep 'avc:' | grep -v python | tail -8
