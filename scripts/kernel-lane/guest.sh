#!/bin/sh
# Runs in the guest, chrooted into the host's read-only root, as kernel_t:
# hand over to the driver (the venv's python sees this worktree at its host path).
repo=$1
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
cd /run/lane-out || exit 1
"$repo/.venv/bin/python" -I "$repo/scripts/kernel-lane/guest.py" plan.json guest.json
