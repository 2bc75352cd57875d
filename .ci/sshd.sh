#!/usr/bin/env bash
# A throw-away OpenSSH server for the SSH tests (root, Debian-like machine).
#
#   bash .ci/sshd.sh start   # prints "export SSHD_DIR=... SSHD_PORT=... SSHD_ADDR=... SSHD_PID=..."
#   bash .ci/sshd.sh stop    # kills that sshd by its PID
#   bash .ci/sshd.sh netns-up N    # after start: N emulated hosts, prints "export SSHD_NETNS_HOSTS=..."
#   bash .ci/sshd.sh netns-down N
#
# It listens on 127.0.0.1 only, accepts only the key it generates (no
# passwords, no keyboard-interactive), and its host key is pinned in a
# known_hosts file of its own: nothing in ~/.ssh is read or changed.
# The package's own system sshd on port 22 is never started.
set -euo pipefail

SSHD_DIR=${SSHD_DIR:-$HOME/.sparsecoded-ci-sshd}
SSHD_PORT=${SSHD_PORT:-2322}
SSHD_ADDR=127.0.0.1
action=${1:-start}

# kill the process of a pidfile only if it still is an sshd (a stale pidfile
# after a reboot may name an unrelated process)
kill_sshd() {
  local pid
  if [ -s "$1" ]; then
    pid=$(cat "$1")
    if [ "$(cat "/proc/$pid/comm" 2> /dev/null)" = sshd ]; then kill "$pid" 2> /dev/null || true; fi
    rm -f "$1"
  fi
}
stop() { kill_sshd "$SSHD_DIR/sshd.pid"; }

# Emulated hosts: network namespaces sc-h1..N on a bridge sc-br0 with the
# private subnet 10.214.0.0/24 (this machine .1, host i .(i+1)), one sshd in
# each on port 22 of its own address, same keys as the loopback sshd.
NET=10.214.0
netns_down() {
  for i in $(seq 1 "$1"); do
    kill_sshd "$SSHD_DIR/sshd-h$i.pid"
    ip netns del "sc-h$i" 2> /dev/null || true
  done
  ip link del sc-br0 2> /dev/null || true
}
netns_up() {
  local n=$1 hosts="" i addr
  netns_down "$n"
  ip link add sc-br0 type bridge
  ip addr add "$NET.1/24" dev sc-br0
  ip link set sc-br0 up
  for i in $(seq 1 "$n"); do
    addr=$NET.$((i + 1))
    ip netns add "sc-h$i"
    ip link add "sc-v$i" type veth peer name eth0 netns "sc-h$i"
    ip link set "sc-v$i" master sc-br0 up
    ip -n "sc-h$i" addr add "$addr/24" dev eth0
    ip -n "sc-h$i" link set eth0 up
    ip -n "sc-h$i" link set lo up
    sed -e "s/^ListenAddress .*/ListenAddress $addr/" -e "s/^Port .*/Port 22/" \
      -e "s#^PidFile .*#PidFile $SSHD_DIR/sshd-h$i.pid#" \
      "$SSHD_DIR/sshd_config" > "$SSHD_DIR/sshd_config.h$i"
    ip netns exec "sc-h$i" /usr/sbin/sshd -f "$SSHD_DIR/sshd_config.h$i" -E "$SSHD_DIR/sshd-h$i.log"
    grep -q "^$addr " "$SSHD_DIR/known_hosts" \
      || echo "$addr $(cut -d' ' -f1,2 "$SSHD_DIR/host_ed25519.pub")" >> "$SSHD_DIR/known_hosts"
    hosts="$hosts $addr"
  done
  for addr in $hosts; do
    for _ in $(seq 50); do
      ssh -q -i "$SSHD_DIR/client_ed25519" -o IdentitiesOnly=yes \
        -o UserKnownHostsFile="$SSHD_DIR/known_hosts" -o StrictHostKeyChecking=yes \
        -o BatchMode=yes -o ConnectTimeout=5 "root@$addr" true && break
      sleep 0.1
    done
  done
  echo "export SSHD_NETNS_HOSTS='${hosts# }'"
}

case "$action" in
  stop) stop; exit 0 ;;
  netns-up) netns_up "${2:-3}"; exit 0 ;;
  netns-down) netns_down "${2:-3}"; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|netns-up N|netns-down N" >&2; exit 2 ;;
esac

# what the SSH tests use besides sshd: ps (procps) and, for the emulated
# hosts, ip (iproute2)
pkgs=()
[ -x /usr/sbin/sshd ] || pkgs+=(openssh-server openssh-client)
command -v ps > /dev/null || pkgs+=(procps)
command -v ip > /dev/null || pkgs+=(iproute2)
if [ "${#pkgs[@]}" -gt 0 ]; then
  # policy-rc.d answering 101 tells the package scripts not to start services,
  # so installing openssh-server does not bring up sshd on 0.0.0.0:22
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  installed=0
  apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${pkgs[@]}" > /dev/null && installed=1
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$installed" = 0 ]; then
    echo "sshd.sh: apt-get could not install ${pkgs[*]}" >&2
    exit 1
  fi
  if command -v systemctl > /dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now ssh.service ssh.socket 2> /dev/null || true
  fi
fi

# sshd refuses public-key logins to a locked account ("!" in the shadow
# password field) when PAM is off; "*" means no password and not locked
if [ "$(id -u)" = 0 ] && getent shadow root | cut -d: -f2 | grep -q '^!'; then
  usermod -p '*' root
fi

stop  # a leftover from an earlier run of this script
mkdir -p /run/sshd "$SSHD_DIR"  # /run/sshd: sshd's privilege-separation directory
chmod 700 "$SSHD_DIR"           # StrictModes: key files in a private directory
[ -f "$SSHD_DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C sparsecoded-ci-host -f "$SSHD_DIR/host_ed25519"
[ -f "$SSHD_DIR/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C sparsecoded-ci-client -f "$SSHD_DIR/client_ed25519"
install -m 600 "$SSHD_DIR/client_ed25519.pub" "$SSHD_DIR/authorized_keys"
host_key=$(cut -d' ' -f1,2 "$SSHD_DIR/host_ed25519.pub")
# clients may say 127.0.0.1 or localhost; a non-standard port is written [host]:port
echo "[127.0.0.1]:$SSHD_PORT,[localhost]:$SSHD_PORT $host_key" > "$SSHD_DIR/known_hosts"

cat > "$SSHD_DIR/sshd_config" << EOF
ListenAddress $SSHD_ADDR
Port $SSHD_PORT
HostKey $SSHD_DIR/host_ed25519
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
# Dask opens one connection per worker, at once
MaxStartups 64:30:128
MaxSessions 64
LogLevel ERROR
EOF
/usr/sbin/sshd -t -f "$SSHD_DIR/sshd_config"
/usr/sbin/sshd -f "$SSHD_DIR/sshd_config" -E "$SSHD_DIR/sshd.log"  # forks into the background
for _ in $(seq 50); do
  [ -s "$SSHD_DIR/sshd.pid" ] && break
  sleep 0.1
done
# one real login with the pinned host key proves the setup end to end
ssh -q -p "$SSHD_PORT" -i "$SSHD_DIR/client_ed25519" -o IdentitiesOnly=yes \
  -o UserKnownHostsFile="$SSHD_DIR/known_hosts" -o StrictHostKeyChecking=yes \
  -o BatchMode=yes -o ConnectTimeout=10 "root@$SSHD_ADDR" true
echo "export SSHD_DIR=$SSHD_DIR SSHD_PORT=$SSHD_PORT SSHD_ADDR=$SSHD_ADDR SSHD_PID=$(cat "$SSHD_DIR/sshd.pid")"
