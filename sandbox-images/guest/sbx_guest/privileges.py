"""Out of reach of what it runs: the guest's own identity, apart from the sandbox user's.

The container starts the guest as root with four capabilities (KILL,
SETUID, SETGID, SETPCAP) and nothing else.  ``drop`` makes it ``GUEST_UID``
-- a uid no image uses -- keeping just those four, and non-dumpable.
Commands run as the sandbox user: ``spawn`` becomes it in the child and
empties the child's bounding set before exec, which clears the rest, so no
process in the sandbox shares the guest's uid or holds any capability at
all: none can signal, stop or trace the guest, or open its descriptors
through /proc (the kernel checks the target's real and saved uid for
signals, all of its uids and its dumpable flag for ptrace and /proc/PID/fd).

The guest still touches files *as the sandbox user*: its filesystem uid and
gid (``setfsuid``, which signals and ptrace never look at) are the user's,
so permissions are exactly the user's and new files are the user's.

When the guest does not start as root (a test running it as a plain
process), none of this applies and it runs everything as itself.  Must
not: keep a capability it does not use, or hand one to a child.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~9 ms of a sandbox's start; annotations need none of it
    from typing import Any, Dict, List, Optional, Tuple

GUEST_UID = 2000000
"""The guest's own uid and gid: in no image's passwd, so no user can be it."""

CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_NET_BIND_SERVICE = 10
CAP_SETFCAP = 31
KEPT_CAPS = (CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP)
"""The guest's own: signal the user's processes, become the user in a child, and empty
that child's bounding set."""
ROOT_CAPS = (
    CAP_CHOWN,
    CAP_DAC_OVERRIDE,
    CAP_FOWNER,
    CAP_FSETID,
    CAP_NET_BIND_SERVICE,
    CAP_SETFCAP,
)
"""What a command run as root gets (enough for apt-get, dpkg and pip to install packages):
never KILL, SETUID, SETGID, SETPCAP or SYS_PTRACE, so root cannot reach the guest either.
The guest holds them only in its permitted set, to hand them on."""
APT_CONFIG = "/opt/sbx/etc/apt.conf"
"""Given to root's commands: apt runs as root instead of dropping to ``_apt`` (which would
need SETUID); the file is part of the guest bundle."""


class Person:
    """A user a process runs as: ids, supplementary groups, name and home."""

    def __init__(
        self, uid: int, gid: int, groups: List[int], name: Optional[str], home: Optional[str]
    ) -> None:
        self.uid, self.gid, self.groups, self.name, self.home = uid, gid, groups, name, home

    def environ(self, env: Dict[str, str]) -> Dict[str, str]:
        """``env`` with this user's HOME, USER and LOGNAME (and root's apt setting)."""
        if self.home:
            env["HOME"] = self.home
        if self.name:
            env["USER"] = env["LOGNAME"] = self.name
        if self.uid == 0 and os.path.exists(APT_CONFIG):
            env.setdefault("APT_CONFIG", APT_CONFIG)
        return env


_PR_SET_DUMPABLE = 4
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_CAP_VERSION_3 = 0x20080522


class Identity:
    """Who the guest is, and who the sandbox user is."""

    def __init__(self) -> None:
        self.privileged = False
        """The guest dropped from root: children must become the user themselves."""
        self.user = Person(os.getuid(), os.getgid(), [], None, None)
        """The session's user: files as them, and every process unless one asks otherwise."""
        self._people: Dict[str, Person] = {}
        self._libc: Any = None
        self.refuse_root = False
        """Under gVisor root could reopen the guest's descriptors (its /proc checks file
        modes only): the host says so, and nothing runs as uid 0 (see ``person``)."""

    @property
    def uid(self) -> int:
        return self.user.uid

    @property
    def gid(self) -> int:
        return self.user.gid

    def drop(self) -> None:
        """Root -> ``GUEST_UID`` with ``KEPT_CAPS``, non-dumpable (a no-op when not root)."""
        if os.geteuid() != 0:
            return
        import ctypes  # only here: a guest not started as root never pays for it

        libc = ctypes.CDLL(None, use_errno=True)
        self._libc = libc
        # Whatever else the container granted for the guest's set-up (CAP_NET_ADMIN for a
        # networked sandbox's routes) leaves the bounding set, so nothing can regain it.
        held = KEPT_CAPS + ROOT_CAPS
        for cap in range(_last_cap(libc) + 1):
            if cap not in held:
                _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
        _check(libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
        os.setgroups([])
        os.setresgid(GUEST_UID, GUEST_UID, GUEST_UID)
        os.setresuid(GUEST_UID, GUEST_UID, GUEST_UID)
        # Effective: the guest's own four; permitted besides: root's, to hand on.
        _capset(libc, effective=KEPT_CAPS, permitted=held)
        _check(libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
        _check(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
        self.privileged = True

    def become(self, spec: str) -> None:
        """Take ``uid[:gid]``, a name or ``root`` as the session's user (files as them)."""
        self.user = self.person(spec)
        if not self.privileged:
            return
        os.setgroups(self.user.groups)
        # setfs[ug]id report nothing on failure; the second call returns what is in force.
        uid, gid = self.user.uid, self.user.gid
        self._libc.setfsgid(gid)
        self._libc.setfsuid(uid)
        if self._libc.setfsgid(gid) != gid or self._libc.setfsuid(uid) != uid:
            if self._libc.setfsuid(uid) != -1:
                raise OSError(
                    "cannot take the sandbox user's filesystem identity %d:%d" % (uid, gid)
                )
            # A kernel without setfsuid (gVisor): the effective ids are the file
            # identity instead.  Real and saved stay GUEST_UID, which is what signals
            # and ptrace check, so the user still cannot reach the guest.
            os.setresgid(-1, gid, -1)
            os.setresuid(-1, uid, -1)
            _capset(
                self._libc,
                effective=KEPT_CAPS + (ROOT_CAPS if uid == 0 else ()),
                permitted=KEPT_CAPS + ROOT_CAPS,
            )
            _check(self._libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
        self.user.environ(os.environ)  # type: ignore[arg-type]

    def person(self, spec: Optional[str]) -> Person:
        """The user ``spec`` names (``None``: the session's), looked up in the image once."""
        if spec is None:
            return self.user
        known = self._people.get(spec)
        if known is None:
            uid, gid, groups, name = _resolve(spec)
            known = self._people[spec] = Person(uid, gid, groups, name, _home(uid))
        if self.refuse_root and known.uid == 0:
            raise PermissionError(
                1, "commands cannot run as root (%s) under gVisor; use a non-root user" % spec
            )
        return known

    def child(self, person: Person) -> None:
        """In a forked child before exec: become ``person`` entirely.

        Anyone but root leaves with an empty bounding set (what is still held goes
        at exec); root keeps exactly ``ROOT_CAPS``, bounding set included.
        """
        kept = ROOT_CAPS if person.uid == 0 else ()
        for cap in KEPT_CAPS + ROOT_CAPS:  # CAP_SETPCAP, which allows the drops, goes last
            if cap not in kept and cap != CAP_SETPCAP:
                _check(self._libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
        _check(self._libc.prctl(_PR_CAPBSET_DROP, CAP_SETPCAP, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
        os.setgroups(person.groups)
        os.setresgid(person.gid, person.gid, person.gid)
        os.setresuid(person.uid, person.uid, person.uid)
        if person.uid == 0:
            _capset(self._libc, effective=ROOT_CAPS, permitted=ROOT_CAPS)

    def describe(self) -> dict:
        return {
            "guest_uid": os.getuid(),
            "user_uid": self.uid,
            "user_gid": self.gid,
            "isolated": self.privileged,
        }


def _capset(libc: Any, *, effective: Tuple[int, ...], permitted: Tuple[int, ...]) -> None:
    import ctypes

    def mask(caps: Tuple[int, ...]) -> int:
        bits = 0
        for cap in caps:
            bits |= 1 << cap
        return bits

    header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(mask(effective), mask(permitted), 0, 0, 0, 0)
    _check(libc.capset(header, data), "capset")


def _last_cap(libc: Any) -> int:
    """The kernel's highest capability: from /proc, or -- where there is no such file
    (gVisor) -- the last one ``PR_CAPBSET_READ`` accepts (dropping one past it is EINVAL)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    last = -1
    while last < 63 and libc.prctl(_PR_CAPBSET_READ, last + 1, 0, 0, 0) >= 0:
        last += 1
    return last


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise OSError(errno, "%s failed: %s" % (what, os.strerror(errno)))


def _resolve(spec: str) -> tuple:
    """``"1000:1000"``, ``"1000"``, ``"root"`` or a name -> (uid, gid, groups, name)."""
    import pwd

    user, _, group = str(spec).partition(":")
    if user == "root":
        user = "0"
    entry = None
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            raise ValueError("no user %r in the image's /etc/passwd" % user) from None
    uid = int(user) if user.isdigit() else entry.pw_uid  # type: ignore[union-attr]
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            import grp

            gid = grp.getgrnam(group).gr_gid
    else:
        gid = entry.pw_gid if entry is not None else uid
    groups: List[int] = []
    if entry is not None:
        try:
            groups = sorted(set(os.getgrouplist(entry.pw_name, gid)) - {gid})
        except OSError:
            groups = []
    return uid, gid, groups, entry.pw_name if entry is not None else None


def _home(uid: int) -> Optional[str]:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_dir or None
    except KeyError:
        return None


identity = Identity()
"""The one identity of this guest process."""
