#!/usr/bin/env bash
# Installs what tests/pipeline/slurm_cluster.py starts: the SLURM daemons and munge, from Debian's packages.
# Idempotent: does nothing when they are already there. Exit 0 when installed; exit 3, with the reason
# on stderr, where they cannot be installed (not root, no apt-get, the packages not available).
set -uo pipefail

have_all() {
    for tool in munged slurmctld slurmd sbatch squeue srun scontrol; do
        command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || return 1
    done
}

have_all && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "slurm-wlm and munge are not installed and this user is not root (apt-get install needs root)" >&2
    exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm-wlm and munge are not installed and there is no apt-get on this machine" >&2
    exit 3
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
install() { apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$log" 2>&1; }
if ! install && ! { apt-get update -q >>"$log" 2>&1 && install; }; then
    echo "apt-get install slurm-wlm munge failed:" >&2
    tail -n 5 "$log" >&2
    rm -f "$log"
    exit 3
fi
rm -f "$log"
have_all || { echo "slurm-wlm and munge installed, but their programs are not on PATH or in /usr/sbin" >&2; exit 3; }
