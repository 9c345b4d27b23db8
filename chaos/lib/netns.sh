# shellcheck shell=bash
# netns.sh (sourced by chaos/run after faults.sh; also by tests/chaos_net): netns mode and the
# kernel-level network faults of issue 15 §1. In netns mode every server runs in its own
# network namespace, joined by a veth pair to one bridge in this namespace, on a private /24
# that `ip route` and `ip addr` show unused; the script and the clients reach the servers over
# the bridge. A partition is a DROP rule (nftables, else iptables) INSIDE the target's
# namespace, so packets vanish in the kernel, not in a proxy of ours; netem_link puts sch_netem
# on the target's side of its veth. Everything this file creates carries the run's suffix
# (CX_NET_ID) and cx_netns_down deletes it; nothing else is touched.
# The chaos tools (chaos_proxy, chaos_load, chaos_check) accept loopback addresses only, so in
# netns mode they still talk to 127.0.0.1 and the kernel carries it over the bridge: a chaos_proxy
# runs in its upstream's namespace on 127.0.0.1 and its ports are exposed on the namespace's
# address by a DNAT rule (cx_netns_expose; route_localnet=1 in our namespaces), and the clients
# run in a namespace of their own ("client") whose 127.0.0.1:PORT is DNATed to the server that
# owns PORT (cx_netns_client; ports are unique in a run).
# Needs proc.sh (CX_NS, CX_HOST, cx_wrap), faults.sh (cx_fault_begin, cx_hold, cx_redis_pick,
# cx_catch_holder, F_*).

CX_NETNS_FAULTS="partition_lockd_redis partition_reserved_pg partition_reserved_lockd
partition_asymmetric netem_link"
CX_ALL_FAULTS+=" ${CX_NETNS_FAULTS//$'\n'/ }"

CX_NET_MODE=${CX_NET_MODE:-proxy} # proxy | netns (chaos/run decides at start)
CX_NET_ID=""                      # this run's suffix on every name (at most 8 characters)
CX_NET_PREFIX=""                  # the /24 in use, "A.B.C"
CX_NET_FW=""                      # nft | iptables: what makes the DROP rules
CX_NET_NETEM=0                    # 1 when the kernel has sch_netem (probed)
CX_NET_WHY=""                     # why netns mode is not available (cx_netns_probe)
CX_NET_BRIDGE=""
CX_NET_NAMESPACES=() # namespaces created (recorded before creation: cleanup sees half-made ones)
CX_NET_VETHS=()      # host-side veths created
declare -gA CX_NET_IF=()  # name -> its interface inside its namespace

# cx_netns_new_id: a suffix no existing namespace or interface uses: "cx" + pid + random.
cx_netns_new_id() {
    local id
    while :; do
        id=$(printf '%x%02x' $(($$ % 0x1000000)) $((SRANDOM % 256)))
        if ! ip netns list 2>/dev/null | grep -q "^cx$id-" && ! ip link show "cx${id}b" >/dev/null 2>&1; then
            CX_NET_ID=$id
            return 0
        fi
    done
}

# cx_netns_probe: 0 when this machine can make a namespace, a veth pair, a bridge and a DROP
# rule inside the namespace (everything made here is deleted again); else 1 with the reason in
# CX_NET_WHY. Sets CX_NET_FW and CX_NET_NETEM.
cx_netns_probe() {
    local id ns br hv nv ok=1
    CX_NET_WHY=""
    command -v ip >/dev/null || { CX_NET_WHY="iproute2 (ip) not installed"; return 1; }
    if command -v nft >/dev/null; then
        CX_NET_FW=nft
    elif command -v iptables >/dev/null; then
        CX_NET_FW=iptables
    else
        CX_NET_WHY="neither nftables (nft) nor iptables installed"
        return 1
    fi
    [ "$(id -u)" = 0 ] || { CX_NET_WHY="not root (network namespaces need CAP_NET_ADMIN)"; return 1; }
    id=$(printf 'p%x%02x' $(($$ % 0x1000000)) $((SRANDOM % 256)))
    ns="cx$id-probe" br="cx${id}b" hv="cx${id}h" nv="cx${id}n"
    if ! ip netns add "$ns" 2>/dev/null; then
        CX_NET_WHY="cannot create a network namespace (ip netns add)"
        return 1
    fi
    if ! ip link add "$br" type bridge 2>/dev/null; then
        CX_NET_WHY="cannot create a bridge"
        ok=0
    elif ! ip link add "$hv" type veth peer name "$nv" 2>/dev/null ||
        ! ip link set "$nv" netns "$ns" 2>/dev/null || ! ip link set "$hv" master "$br" 2>/dev/null; then
        CX_NET_WHY="cannot create a veth pair into a namespace on a bridge"
        ok=0
    elif ! cx_fw_block "$ns" out 10.255.255.254 2>/dev/null || ! cx_fw_clear "$ns" 2>/dev/null; then
        CX_NET_WHY="cannot add a $CX_NET_FW DROP rule inside a namespace"
        ok=0
    fi
    CX_NET_NETEM=0
    if [ $ok = 1 ] && command -v tc >/dev/null &&
        ip netns exec "$ns" tc qdisc add dev "$nv" root netem delay 1ms 2>/dev/null; then
        CX_NET_NETEM=1
    fi
    ip link del "$hv" 2>/dev/null || true
    ip link del "$br" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    [ $ok = 1 ]
}

# cx_ip2int A.B.C.D
cx_ip2int() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

# cx_netns_subnet: picks CX_NET_PREFIX, a 10.x.y.0/24 that overlaps no route and no address
# of this machine (`ip -4 route`, `ip -4 addr`, all tables).
cx_netns_subnet() {
    local -a used=() cand
    local dst net len base m i n
    while read -r dst _; do
        [[ $dst =~ ^[0-9.]+(/[0-9]+)?$ ]] && used+=("$dst")
    done < <(ip -4 route show table all 2>/dev/null)
    while read -r _ _ _ dst _; do used+=("$dst"); done < <(ip -4 -o addr show 2>/dev/null)
    for ((i = 0; i < 200; i++)); do
        cand="10.$((200 + SRANDOM % 50)).$((SRANDOM % 256))"
        base=$(cx_ip2int "$cand.0")
        for n in "${used[@]}"; do
            net=${n%/*} len=32
            [[ $n == */* ]] && len=${n#*/}
            [ "$len" -gt 24 ] && len=24 # the shorter prefix decides the overlap
            m=$(((0xffffffff << (32 - len)) & 0xffffffff))
            [ $(($(cx_ip2int "$net") & m)) = $((base & m)) ] && continue 2
        done
        CX_NET_PREFIX=$cand
        return 0
    done
    return 1
}

# cx_netns_bridge: the bridge (CX_NET_PREFIX.1/24 on it: this namespace's way to the servers).
cx_netns_bridge() {
    CX_NET_BRIDGE="cx${CX_NET_ID}b"
    ip link add "$CX_NET_BRIDGE" type bridge || return 1
    ip addr add "$CX_NET_PREFIX.1/24" dev "$CX_NET_BRIDGE" || return 1
    ip link set "$CX_NET_BRIDGE" up
}

# cx_netns_add NAME IDX: NAME's own namespace cx<ID>-NAME, address CX_NET_PREFIX.IDX/24 on a
# veth whose other end is on the bridge; loopback up inside. Sets CX_NS/CX_HOST/CX_NET_IF.
cx_netns_add() {
    local name=$1 idx=$2 ns="cx$CX_NET_ID-$1" hv="cx${CX_NET_ID}h$2" nv="cx${CX_NET_ID}n$2"
    CX_NET_NAMESPACES+=("$ns")
    ip netns add "$ns" || return 1
    CX_NET_VETHS+=("$hv")
    ip link add "$hv" type veth peer name "$nv" || return 1
    ip link set "$nv" netns "$ns" || return 1
    ip link set "$hv" master "$CX_NET_BRIDGE" up || return 1
    # One exec into the namespace for all of it (each costs a mount namespace).
    ip netns exec "$ns" sh -c 'ip link set lo up && echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet &&
        ip addr add "$1" dev "$2" && ip link set "$2" up' _ "$CX_NET_PREFIX.$idx/24" "$nv" || return 1
    CX_NS[$name]=$ns
    CX_HOST[$name]=$CX_NET_PREFIX.$idx
    CX_NET_IF[$name]=$nv
}

# cx_netns_up NAME:IDX...: the subnet, the bridge and one namespace per NAME.
cx_netns_up() {
    local e
    [ -n "$CX_NET_ID" ] || cx_netns_new_id
    cx_netns_subnet || { echo "chaos/run: no unused 10.x.y.0/24 found" >&2; return 1; }
    cx_netns_bridge || return 1
    for e in "$@"; do cx_netns_add "${e%:*}" "${e#*:}" || return 1; done
}

# cx_netns_down: deletes every namespace, veth and the bridge this run made (processes inside
# must be stopped first). Never fails: it runs from the exit trap.
cx_netns_down() {
    local ns v
    for v in "${CX_NET_VETHS[@]}"; do ip link del "$v" 2>/dev/null || true; done
    for ns in "${CX_NET_NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    [ -n "$CX_NET_BRIDGE" ] && ip link del "$CX_NET_BRIDGE" 2>/dev/null
    CX_NET_VETHS=() CX_NET_NAMESPACES=() CX_NET_BRIDGE=""
    return 0
}

# cx_netns_expose NAME PORT...: NAME's namespace takes PORTs on its address to 127.0.0.1
# (where a chaos_proxy or a server behind one listens).
cx_netns_expose() {
    local ns=${CX_NS[$1]} p
    shift
    if [ "$CX_NET_FW" = nft ]; then
        {
            echo "add table ip cxnat"
            echo "add chain ip cxnat pre { type nat hook prerouting priority -100; }"
            for p in "$@"; do echo "add rule ip cxnat pre tcp dport $p dnat to 127.0.0.1"; done
        } | ip netns exec "$ns" nft -f -
    else
        for p in "$@"; do
            ip netns exec "$ns" iptables -w -t nat -A PREROUTING -p tcp --dport "$p" \
                -j DNAT --to-destination 127.0.0.1 || return 1
        done
    fi
}

# cx_netns_client CLIENT NAME PORT...: in CLIENT's namespace, 127.0.0.1:PORT goes to NAME's
# address, same port (and leaves with CLIENT's address).
cx_netns_client() {
    local ns=${CX_NS[$1]} ifc=${CX_NET_IF[$1]} h p
    h=$(cx_host "$2")
    shift 2
    if [ "$CX_NET_FW" = nft ]; then
        {
            echo "add table ip cxnat"
            echo "add chain ip cxnat out { type nat hook output priority -100; }"
            echo "add chain ip cxnat post { type nat hook postrouting priority 100; }"
            echo "flush chain ip cxnat post"
            echo "add rule ip cxnat post oifname \"$ifc\" masquerade"
            for p in "$@"; do echo "add rule ip cxnat out ip daddr 127.0.0.1 tcp dport $p dnat to $h:$p"; done
        } | ip netns exec "$ns" nft -f -
    else
        ip netns exec "$ns" iptables -w -t nat -C POSTROUTING -o "$ifc" -j MASQUERADE 2>/dev/null ||
            ip netns exec "$ns" iptables -w -t nat -A POSTROUTING -o "$ifc" -j MASQUERADE || return 1
        for p in "$@"; do
            ip netns exec "$ns" iptables -w -t nat -A OUTPUT -d 127.0.0.1 -p tcp --dport "$p" \
                -j DNAT --to-destination "$h:$p" || return 1
        done
    fi
}

# ---- rules inside a namespace ----

# cx_fw_block NS DIR ADDR...: DROP inside NS: DIR out = its packets to ADDRs, in = ADDRs'
# packets to it, both = both. One table (chain pair) per namespace: faults do not overlap.
cx_fw_block() {
    local ns=$1 dir=$2 set a
    shift 2
    set=$(
        IFS=,
        echo "$*"
    )
    if [ "$CX_NET_FW" = nft ]; then
        {
            echo "table inet cxfault {"
            echo "  chain out { type filter hook output priority 0; policy accept;"
            [ "$dir" != in ] && echo "    ip daddr { $set } drop"
            echo "  }"
            echo "  chain in { type filter hook input priority 0; policy accept;"
            [ "$dir" != out ] && echo "    ip saddr { $set } drop"
            echo "  }"
            echo "}"
        } | ip netns exec "$ns" nft -f -
    else
        for a in "$@"; do
            if [ "$dir" != in ]; then ip netns exec "$ns" iptables -w -A OUTPUT -d "$a" -j DROP || return 1; fi
            if [ "$dir" != out ]; then ip netns exec "$ns" iptables -w -A INPUT -s "$a" -j DROP || return 1; fi
        done
    fi
}

# cx_fw_loss NS PERCENT: drops PERCENT % of NS's packets off loopback, both directions
# (the loss of netem_link where the kernel has no sch_netem).
cx_fw_loss() {
    local ns=$1 pct=$2
    if [ "$CX_NET_FW" = nft ]; then
        ip netns exec "$ns" nft -f - <<NFT
table inet cxfault {
  chain out { type filter hook output priority 0; policy accept; oifname != "lo" numgen random mod 100 < $pct drop; }
  chain in { type filter hook input priority 0; policy accept; iifname != "lo" numgen random mod 100 < $pct drop; }
}
NFT
    else
        local p
        p=$(printf '0.%02d' "$pct")
        ip netns exec "$ns" iptables -w -A OUTPUT ! -o lo -m statistic --mode random --probability "$p" -j DROP &&
            ip netns exec "$ns" iptables -w -A INPUT ! -i lo -m statistic --mode random --probability "$p" -j DROP
    fi
}

# cx_fw_clear NS: removes what cx_fw_block / cx_fw_loss put into NS (our namespace: its
# INPUT and OUTPUT chains hold nothing else).
cx_fw_clear() {
    if [ "$CX_NET_FW" = nft ]; then
        ip netns exec "$1" nft delete table inet cxfault
    else
        ip netns exec "$1" iptables -w -F OUTPUT && ip netns exec "$1" iptables -w -F INPUT
    fi
}

# ---- the fault kinds (netns mode only: chaos/run leaves them out of a proxy-mode schedule
# with a line in schedule.txt; called anyway, they only say so) ----

cx_netns_skip() {
    [ "$CX_NET_MODE" = netns ] && return 1
    F_NOTE="skipped: needs --net netns"
    return 0
}

# cx_cut_from NAME DIR HOLD PEER...: NAME cut from PEERs (DIR as cx_fw_block, the rule in NAME's
# namespace): the rule in place, the fault's start, the hold, the rule gone. F_TARGET is
# "NAME|PEER,PEER"; F_NOTE gets the rule's kind in front.
cx_cut_from() {
    local name=$1 dir=$2 hold=$3 ns=${CX_NS[$1]} p
    local -a addrs=()
    shift 3
    for p in "$@"; do addrs+=("$(cx_host "$p")"); done
    F_TARGET="$name|$(
        IFS=,
        echo "$*"
    )"
    F_NOTE="$CX_NET_FW DROP in $name's namespace ($dir): $F_NOTE"
    if ! cx_fw_block "$ns" "$dir" "${addrs[@]}"; then
        F_NOTE="rule failed: $F_NOTE"
        cx_fw_clear "$ns" 2>/dev/null || true
        return 0
    fi
    cx_fault_begin
    cx_hold "$hold"
    cx_fw_clear "$ns" || echo "chaos/run: could not clear the rule in $ns" >&2
}

# lockd cut from a majority (3 of 5) of the masters, both directions: its grants and renewals
# cannot reach a quorum; its sessions' locks lapse and the other lockd serves.
fault_partition_lockd_redis() {
    local -a rs
    cx_netns_skip && return 0
    read -r -a rs <<<"$(cx_redis_pick 3)"
    F_NOTE="cut from 3 of 5 masters (a majority)"
    cx_cut_from "lockd$((F_PICK % 2 + 1))" both "$1" "${rs[@]}"
}

# a reserved cut from PostgreSQL, both directions, caught inside a booking transaction when
# one shows within 3 s: its statements stall until the cut heals (TCP retransmits).
fault_partition_reserved_pg() {
    local r="reserved$((F_PICK % 3 + 1))"
    cx_netns_skip && return 0
    cx_catch_holder "$r"
    F_NOTE="cut from postgresql, $F_NOTE"
    cx_cut_from "$r" both "$1" postgresql
}

# a reserved cut from its lockds: both (its bookings get 503 until the cut heals) or only the
# one it prefers (it must fail over to the other), by the pick.
fault_partition_reserved_lockd() {
    local i=$((F_PICK % 3 + 1))
    cx_netns_skip && return 0
    if [ $(((F_PICK / 3) % 2)) = 0 ]; then
        F_NOTE="cut from both lockds"
        cx_cut_from "reserved$i" both "$1" lockd1 lockd2
    else
        local l="lockd$((i % 2 == 1 ? 1 : 2))" # odd reserved prefer lockd1 (chaos/run)
        F_NOTE="cut from the lockd it prefers ($l): it fails over to the other"
        cx_cut_from "reserved$i" both "$1" "$l"
    fi
}

# one direction only, between a lockd and a majority of masters: by the pick either the
# lockd's packets to them are dropped (theirs still arrive) or theirs to it (its own still
# arrive). Either way a TCP exchange stalls; the point is that the kernel sees a half-open
# link, not a closed one.
fault_partition_asymmetric() {
    local l="lockd$((F_PICK % 2 + 1))"
    local -a rs
    cx_netns_skip && return 0
    read -r -a rs <<<"$(cx_redis_pick 3)"
    if [ $(((F_PICK / 5) % 2)) = 0 ]; then
        F_NOTE="one direction: $l -> masters dropped (output rule), masters -> $l still arrive"
        cx_cut_from "$l" out "$1" "${rs[@]}"
    else
        F_NOTE="one direction: masters -> $l dropped (input rule), $l -> masters still arrive"
        cx_cut_from "$l" in "$1" "${rs[@]}"
    fi
}

# netem latency (50-200 ms) and loss (5-30 %) on one server's link (the egress of its side of
# the veth: everything it sends). Where the kernel has no sch_netem, the loss alone, by nft
# numgen in both directions (said in the note).
fault_netem_link() {
    local -a names=(redis1 redis2 redis3 redis4 redis5 lockd1 lockd2 reserved1 reserved2 reserved3)
    local n delay loss ns
    cx_netns_skip && return 0
    n=${names[$((F_PICK % ${#names[@]}))]}
    delay=$((50 + (F_PICK / 10) % 151)) loss=$((5 + (F_PICK / 7) % 26))
    ns=${CX_NS[$n]}
    F_TARGET=$n
    if [ "$CX_NET_NETEM" = 1 ]; then
        F_NOTE="netem delay ${delay}ms loss ${loss}% on $n's egress"
        if ip netns exec "$ns" tc qdisc add dev "${CX_NET_IF[$n]}" root netem delay "${delay}ms" loss "${loss}%"; then
            cx_fault_begin
            cx_hold "$1"
            ip netns exec "$ns" tc qdisc del dev "${CX_NET_IF[$n]}" root || true
        else
            F_NOTE="rule failed: $F_NOTE"
        fi
    else
        F_NOTE="loss ${loss}% both ways on $n's link ($CX_NET_FW random drop; no sch_netem in this kernel: no latency)"
        if cx_fw_loss "$ns" "$loss"; then
            cx_fault_begin
            cx_hold "$1"
            cx_fw_clear "$ns" || true
        else
            F_NOTE="rule failed: $F_NOTE"
            cx_fw_clear "$ns" 2>/dev/null || true
        fi
    fi
}
