#!/usr/bin/env bash
# A three-node Docker Swarm on this machine, for `make test-swarm`.
#
#   cluster.sh up DIR          start it; DIR (empty, made by the caller) holds everything
#   cluster.sh down DIR        stop every process, remove namespaces, links and DIR's data
#   cluster.sh kill-node DIR N stop node N (1..3) the hard way: its engine and its sandboxes
#   cluster.sh env DIR         the SBX_* settings that point sbx at the swarm
#
# Every dockerd runs in a network namespace of its own, linked by veth pairs to a
# bridge in another namespace of ours (the hub, where the tests run), so none of
# them touches the host's network namespace, the host's engine or its docker0.
# Each has its own data root, exec root, pidfile, containerd, cgroup parent and
# sockets, all under DIR; engines listen on TCP with TLS (a CA made here).
# Only node 1 (the first manager) gets sbx-base; sbx copies it to the others.
set -euo pipefail

cmd=${1:?usage: cluster.sh up|down|kill-node|env DIR [N]}
dir=$(realpath -m "${2:?usage: cluster.sh up|down|kill-node|env DIR [N]}")
tag=$(basename "$dir" | tr -cd 'a-z0-9' | tail -c 6)
hub="sbxsw-$tag-hub"
net=192.168.77
nodes=(1 2 3)

ns() { echo "sbxsw-$tag-n$1"; }
addr() { echo "$net.1$1"; }
cgroup() { echo "sbxsw-$tag-n$1"; }

log() { printf '[swarm %s] %s\n' "$(date +%T)" "$*" >&2; }

node_docker() {
    local n=$1
    shift
    docker --host "unix://$dir/n$n/docker.sock" "$@"
}

make_certs() {
    local certs=$dir/certs
    mkdir -p "$certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sbx test swarm CA" \
        -keyout "$certs/ca-key.pem" -out "$certs/ca.pem" 2>/dev/null
    local n
    for n in "${nodes[@]}"; do
        openssl req -newkey rsa:2048 -nodes -subj "/CN=n$n" \
            -keyout "$dir/n$n/key.pem" -out "$dir/n$n/req.csr" 2>/dev/null
        printf 'subjectAltName=IP:%s,DNS:n%s\nextendedKeyUsage=serverAuth\n' "$(addr "$n")" "$n" \
            >"$dir/n$n/ext.cnf"
        openssl x509 -req -in "$dir/n$n/req.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca-key.pem" \
            -CAcreateserial -days 2 -extfile "$dir/n$n/ext.cnf" -out "$dir/n$n/cert.pem" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=sbx" \
        -keyout "$certs/key.pem" -out "$certs/client.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >"$certs/client.cnf"
    openssl x509 -req -in "$certs/client.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$certs/client.cnf" -out "$certs/cert.pem" 2>/dev/null
}

start_node() {
    local n=$1 driver=$2
    local node=$dir/n$n
    mkdir -p "$node/data" "$node/exec"
    echo '{}' >"$node/daemon.json"
    # nsenter, not `ip netns exec`: that one mounts a sysfs of its own over /sys, hiding
    # the cgroup hierarchies the engine needs.
    setsid nsenter --net="/run/netns/$(ns "$n")" dockerd --config-file "$node/daemon.json" \
        --host "unix://$node/docker.sock" --host "tcp://$(addr "$n"):2376" \
        --tlsverify --tlscacert "$dir/certs/ca.pem" --tlscert "$node/cert.pem" --tlskey "$node/key.pem" \
        --data-root "$node/data" --exec-root "$node/exec" --pidfile "$node/docker.pid" \
        --containerd-namespace "sbxsw-n$n" --containerd-plugins-namespace "sbxsw-n$n-plugins" \
        --cgroup-parent "/$(cgroup "$n")" --storage-driver "$driver" \
        --no-new-privileges --default-address-pool "base=10.$((20 + n)).0.0/16,size=24" \
        --iptables=true --ip-masq=true \
        </dev/null >"$node/dockerd.log" 2>&1 &
    echo $! >"$node/launcher.pid"
}

wait_node() {
    local n=$1
    for _ in $(seq 1 60); do
        node_docker "$n" info >/dev/null 2>&1 && return 0
        kill -0 "$(cat "$dir/n$n/launcher.pid")" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

up() {
    mkdir -p "$dir"
    [ -z "$(ls -A "$dir")" ] || { echo "$dir is not empty" >&2; exit 2; }
    log "namespaces and links ($hub, $(ns 1)..$(ns 3))"
    ip netns add "$hub"
    ip -n "$hub" link add br0 type bridge
    ip -n "$hub" addr add "$net.1/24" dev br0
    ip -n "$hub" link set br0 up
    ip -n "$hub" link set lo up
    local n
    for n in "${nodes[@]}"; do
        mkdir -p "$dir/n$n"
        ip netns add "$(ns "$n")"
        ip -n "$hub" link add "v$n" type veth peer name eth0 netns "$(ns "$n")"
        ip -n "$hub" link set "v$n" master br0 up
        ip -n "$(ns "$n")" addr add "$(addr "$n")/24" dev eth0
        ip -n "$(ns "$n")" link set eth0 up
        ip -n "$(ns "$n")" link set lo up
        ip -n "$(ns "$n")" route add default via "$net.1"
    done
    log "certificates"
    make_certs
    local driver=overlay2
    for n in "${nodes[@]}"; do
        start_node "$n" "$driver"
        if ! wait_node "$n"; then
            if [ "$driver" = overlay2 ]; then
                log "overlay2 failed on n$n; using fuse-overlayfs"
                stop_node "$n"
                rm -rf "$dir/n$n/data" "$dir/n$n/exec"
                driver=fuse-overlayfs
                start_node "$n" "$driver"
                wait_node "$n" || { tail -20 "$dir/n$n/dockerd.log" >&2; exit 1; }
            else
                tail -20 "$dir/n$n/dockerd.log" >&2
                exit 1
            fi
        fi
    done
    log "engines up ($driver); forming the swarm"
    node_docker 1 swarm init --advertise-addr "$(addr 1)" --listen-addr "$(addr 1):2377" \
        --default-addr-pool 10.30.0.0/16 >/dev/null
    local token
    token=$(node_docker 1 swarm join-token --quiet manager)
    for n in 2 3; do
        node_docker "$n" swarm join --token "$token" --advertise-addr "$(addr "$n")" \
            --listen-addr "$(addr "$n"):2377" "$(addr 1):2377" >/dev/null
    done
    # Into the first node only: sbx copies it to the others itself (no registry), which
    # the tests then exercise on every session placed elsewhere.
    log "loading sbx-base into node 1"
    local image=${SBX_IMAGES__PREFIX:-sbx-}base:latest
    docker save "$image" | node_docker 1 load --quiet >/dev/null
    node_docker 1 node ls >&2
}

stop_node() {
    local n=$1 pids cg
    # The engine, its containerd and the shims live in the node's namespace...
    if ip netns list | grep -qw "$(ns "$n")"; then
        pids=$(ip netns pids "$(ns "$n")" || true)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    fi
    # ...and the sandboxes in the cgroups the engine made for them.
    for cg in /sys/fs/cgroup/pids/"$(cgroup "$n")" /sys/fs/cgroup/"$(cgroup "$n")"; do
        [ -d "$cg" ] || continue
        find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    done
}

remove_cgroups() {
    local n=$1 cg
    for cg in /sys/fs/cgroup/*/"$(cgroup "$n")" /sys/fs/cgroup/"$(cgroup "$n")"; do
        [ -d "$cg" ] || continue
        find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

down() {
    local n
    for n in "${nodes[@]}"; do
        stop_node "$n"
    done
    sleep 1
    for n in "${nodes[@]}"; do
        stop_node "$n"  # anything that was starting the first time round
        # Mounts the engines left (overlay layers, netns bind mounts, shm).
        { grep -o " $dir/n$n/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
        remove_cgroups "$n"
        ip netns del "$(ns "$n")" 2>/dev/null || true
    done
    ip netns del "$hub" 2>/dev/null || true
    rm -rf "$dir"
}

case $cmd in
    up) up ;;
    down) down ;;
    kill-node) stop_node "${3:?node number}" ;;
    env)
        printf 'SBX_ENGINE__BACKEND=swarm\n'
        printf 'SBX_SWARM__MANAGER=tcp://%s:2376\n' "$(addr 1)"
        printf 'SBX_SWARM__TLS_CA=%s\n' "$dir/certs/ca.pem"
        printf 'SBX_SWARM__TLS_CERT=%s\n' "$dir/certs/cert.pem"
        printf 'SBX_SWARM__TLS_KEY=%s\n' "$dir/certs/key.pem"
        printf 'SBXTEST_SWARM_DIR=%s\n' "$dir"
        printf 'SBXTEST_SWARM_HUB=%s\n' "$hub"
        ;;
    *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
