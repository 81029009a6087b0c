#!/usr/bin/env bash
# Two "machines" on this one (docs/distributed.md, "Two machines, step by step"): network
# namespaces hosta (10.9.0.1) and hostb (10.9.0.2) joined by a veth pair, each with its own host
# name, an ssh server in hostb, and mpirun in hosta starting one rank on each over ssh, the ranks
# talking TCP (`--mca btl tcp,self`). The run must give the one-process losses (printed side by side).
# As root, after `cargo build --release --features mpi`; needs openssh-server and iproute2.
# Usage: scripts/two-hosts.sh [target/release/simclr]
set -euo pipefail
simclr=$(realpath "${1:-target/release/simclr}")
out=$(mktemp -d)
cleanup() {
  ip netns pids hostb 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del hosta 2>/dev/null || true
  ip netns del hostb 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add hosta
ip netns add hostb
ip link add veth-a type veth peer name veth-b
ip link set veth-a netns hosta
ip link set veth-b netns hostb
ip netns exec hosta ip addr add 10.9.0.1/24 dev veth-a
ip netns exec hostb ip addr add 10.9.0.2/24 dev veth-b
for ns in hosta hostb; do
  ip netns exec $ns ip link set lo up
done
ip netns exec hosta ip link set veth-a up
ip netns exec hostb ip link set veth-b up

# Password-less ssh from hosta to hostb for root.
mkdir -p ~/.ssh /run/sshd
chmod 700 ~/.ssh
[ -f ~/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N "" -f ~/.ssh/id_ed25519
grep -qF "$(cat ~/.ssh/id_ed25519.pub)" ~/.ssh/authorized_keys 2>/dev/null || cat ~/.ssh/id_ed25519.pub >> ~/.ssh/authorized_keys
chmod 600 ~/.ssh/authorized_keys
ip netns exec hostb unshare --uts sh -c 'hostname hostb; exec /usr/sbin/sshd -D -o ListenAddress=10.9.0.2 -o PermitRootLogin=prohibit-password' &
sleep 1

args=(pretrain --limit 64 --batch-size 16 --width 0.125 --image-size 16 --proj-dim 32 --quiet --max-steps 5)
RAYON_NUM_THREADS=1 "$simclr" "${args[@]}" --out "$out/one" > /dev/null
ip netns exec hosta unshare --uts bash -c "hostname hosta; mpirun --allow-run-as-root --host 10.9.0.1:1,10.9.0.2:1 -np 2 \
  --mca btl tcp,self --mca btl_tcp_if_include 10.9.0.0/24 --mca oob_tcp_if_include 10.9.0.0/24 \
  --mca plm_rsh_args '-o StrictHostKeyChecking=no -o BatchMode=yes' -x RAYON_NUM_THREADS=1 \
  $simclr ${args[*]} --out $out/two" > /dev/null
python3 - "$out" <<'EOF'
import json, sys
def losses(run):
    return [r["loss"] for r in map(json.loads, open(f"{sys.argv[1]}/{run}/metrics.jsonl")) if "loss" in r]
one, two = losses("one"), losses("two")
for step, (a, b) in enumerate(zip(one, two), 1):
    print(f"step {step}: one process {a:.7f}, two hosts {b:.7f}")
gap = max(abs(a - b) for a, b in zip(one, two))
print(f"largest difference {gap:.1e}")
sys.exit(0 if len(two) == 5 and gap < 1e-5 else 1)
EOF
rm -rf "$out"
