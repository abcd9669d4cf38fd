"""A sandbox with network reaches the outside world, and nothing of the host's or its neighbours'.

Set up once, by the guest while it is still root (CAP_NET_ADMIN, given to
networked sandboxes only and dropped with the rest), in the sandbox's own
network namespace, so no process of the sandbox can undo it:

- the default route keeps its gateway as next hop (``onlink``), but the
  gateway's own address is *prohibited*: the host behind it is not reachable;
- the sandbox's own subnet (the bridge its neighbours share) is prohibited;
- every configured blocked range (private, link-local, CGNAT, the host's own
  addresses) is prohibited; allowed ranges, and the sandbox's name servers
  (so names resolve), are routed via the gateway, more specific than any block.

A prohibited destination fails at once with "Permission denied" (EACCES).
Routes are set with rtnetlink over a stdlib socket.  IPv4 only: sandboxes
get no IPv6 from the engine.  Must not: leave the sandbox without a
default route, or run after user code has started.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Dict, List, Optional, Tuple

_RTM_NEWROUTE = 24
_RTM_DELROUTE = 25
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_REPLACE = 0x100
_NLM_F_CREATE = 0x400
_NLMSG_ERROR = 2
_RT_TABLE_MAIN = 254
_RTPROT_BOOT = 3
_RT_SCOPE_UNIVERSE = 0
_RT_SCOPE_LINK = 253
_RT_SCOPE_NOWHERE = 255
_RTN_UNICAST = 1
_RTN_PROHIBIT = 8
_RTNH_F_ONLINK = 4
_RTA_DST = 1
_RTA_OIF = 4
_RTA_GATEWAY = 5


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


class _Netlink:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.bind((0, 0))
        self.seq = 0

    def route(
        self,
        message: int,
        flags: int,
        net: ipaddress.IPv4Network,
        kind: int,
        scope: int,
        gateway: Optional[str] = None,
        oif: Optional[int] = None,
        onlink: bool = False,
    ) -> int:
        """Send one route change; 0, or the errno the kernel answered with.

        A deletion names only the destination (protocol, scope and type left
        open), so it matches the kernel's own route for a subnet.
        """
        self.seq += 1
        deleting = message == _RTM_DELROUTE
        body = struct.pack(
            "=BBBBBBBBI",
            socket.AF_INET,
            net.prefixlen,
            0,
            0,
            _RT_TABLE_MAIN,
            0 if deleting else _RTPROT_BOOT,
            _RT_SCOPE_NOWHERE if deleting else scope,
            0 if deleting else kind,
            _RTNH_F_ONLINK if onlink else 0,
        )
        if net.prefixlen:
            body += _attr(_RTA_DST, net.network_address.packed)
        if gateway is not None:
            body += _attr(_RTA_GATEWAY, socket.inet_aton(gateway))
        if oif is not None:
            body += _attr(_RTA_OIF, struct.pack("=I", oif))
        header = struct.pack(
            "=IHHII", 16 + len(body), message, _NLM_F_REQUEST | _NLM_F_ACK | flags, self.seq, 0
        )
        self.sock.send(header + body)
        while True:
            reply = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(reply):
                length, kind_, _, seq, _ = struct.unpack_from("=IHHII", reply, offset)
                if kind_ == _NLMSG_ERROR and seq == self.seq:
                    (error,) = struct.unpack_from("=i", reply, offset + 16)
                    return -error
                offset += max(16, (length + 3) & ~3)

    def close(self) -> None:
        self.sock.close()


def _address(hex_text: str) -> str:
    """An address as /proc/net/route writes it (host byte order, hex) -> dotted quad."""
    return socket.inet_ntoa(struct.pack("<I", int(hex_text, 16)))


def _ipv4_routes() -> List[Tuple[str, ipaddress.IPv4Network, Optional[str]]]:
    """``(interface, destination, gateway)`` of the main table, from /proc/net/route."""
    routes = []
    with open("/proc/net/route") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) < 8:
                continue
            iface, dest, gateway, flags, mask = (
                fields[0],
                fields[1],
                fields[2],
                fields[3],
                fields[7],
            )

            def address(hex_text: str) -> str:
                return socket.inet_ntoa(struct.pack("<I", int(hex_text, 16)))

            net = ipaddress.IPv4Network("%s/%s" % (_address(dest), _address(mask)), strict=False)
            has_gateway = int(flags, 16) & 0x2
            routes.append((iface, net, _address(gateway) if has_gateway else None))
    return routes


def _nameservers() -> List[str]:
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                found.append(str(ipaddress.IPv4Address(parts[1])))
            except ValueError:
                continue
    return found


def restrict_egress(blocked: List[str], allowed: List[str]) -> Dict[str, object]:
    """Prohibit the gateway, the sandbox's subnet and ``blocked``; route ``allowed`` and the
    name servers.  Returns what it did (for ``info``); a no-op without a default route."""
    routes = _ipv4_routes()
    default = next((r for r in routes if r[1].prefixlen == 0 and r[2]), None)
    if default is None:
        return {"restricted": False, "reason": "no default route"}
    iface, _, gateway = default
    assert gateway is not None
    oif = socket.if_nametoindex(iface)
    subnets = [net for (name, net, gw) in routes if name == iface and gw is None and net.prefixlen]
    netlink = _Netlink()
    prohibited: List[str] = []
    try:

        def prohibit(net: ipaddress.IPv4Network) -> None:
            error = netlink.route(
                _RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_REPLACE, net, _RTN_PROHIBIT, 0
            )
            if error:
                raise OSError(error, "cannot prohibit %s: %s" % (net, os.strerror(error)))
            prohibited.append(str(net))

        # The gateway stays the next hop without a route to it: onlink.
        error = netlink.route(
            _RTM_NEWROUTE,
            _NLM_F_CREATE | _NLM_F_REPLACE,
            ipaddress.IPv4Network("0.0.0.0/0"),
            _RTN_UNICAST,
            _RT_SCOPE_UNIVERSE,
            gateway=gateway,
            oif=oif,
            onlink=True,
        )
        if error:
            raise OSError(error, "cannot set the default route: %s" % os.strerror(error))
        for net in subnets:
            netlink.route(_RTM_DELROUTE, 0, net, _RTN_UNICAST, _RT_SCOPE_LINK, oif=oif)
            prohibit(net)
        prohibit(ipaddress.IPv4Network(gateway + "/32"))
        for text in blocked:
            prohibit(ipaddress.IPv4Network(text, strict=False))
        opened = [str(ipaddress.IPv4Network(text, strict=False)) for text in allowed]
        opened += ["%s/32" % server for server in _nameservers() if server != gateway]
        for text in opened:
            error = netlink.route(
                _RTM_NEWROUTE,
                _NLM_F_CREATE | _NLM_F_REPLACE,
                ipaddress.IPv4Network(text),
                _RTN_UNICAST,
                _RT_SCOPE_UNIVERSE,
                gateway=gateway,
                oif=oif,
                onlink=True,
            )
            if error:
                raise OSError(error, "cannot allow %s: %s" % (text, os.strerror(error)))
    finally:
        netlink.close()
    return {"restricted": True, "gateway": gateway, "prohibited": prohibited, "allowed": opened}
