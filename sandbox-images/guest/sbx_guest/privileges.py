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
    from typing import Any, List, Optional

GUEST_UID = 2000000
"""The guest's own uid and gid: in no image's passwd, so no user can be it."""

CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
KEPT_CAPS = (CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP)
"""Signal the user's processes; become the user in a child; empty the child's bounding set."""

_PR_SET_DUMPABLE = 4
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_DROP = 24
_CAP_VERSION_3 = 0x20080522


class Identity:
    """Who the guest is, and who the sandbox user is."""

    def __init__(self) -> None:
        self.privileged = False
        """The guest dropped from root: children must become the user themselves."""
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.groups: List[int] = []
        self.name: Optional[str] = None
        self._libc: Any = None

    def drop(self) -> None:
        """Root -> ``GUEST_UID`` with ``KEPT_CAPS``, non-dumpable (a no-op when not root)."""
        if os.geteuid() != 0:
            return
        import ctypes  # only here: a guest not started as root never pays for it

        libc = ctypes.CDLL(None, use_errno=True)
        self._libc = libc
        # Whatever else the container granted for the guest's set-up (CAP_NET_ADMIN for a
        # networked sandbox's routes) leaves the bounding set, so nothing can regain it.
        for cap in range(_last_cap() + 1):
            if cap not in KEPT_CAPS:
                _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
        _check(libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
        os.setgroups([])
        os.setresgid(GUEST_UID, GUEST_UID, GUEST_UID)
        os.setresuid(GUEST_UID, GUEST_UID, GUEST_UID)
        mask = 0
        for cap in KEPT_CAPS:
            mask |= 1 << cap
        header = (ctypes.c_uint32 * 2)(_CAP_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)(mask, mask, 0, 0, 0, 0)  # effective, permitted, inheritable
        _check(libc.capset(header, data), "capset")
        _check(libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
        _check(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
        self.privileged = True

    def become(self, spec: str) -> None:
        """Take ``uid[:gid]`` (or a user name) as the sandbox user: files as them from now on."""
        uid, gid, groups, name = _resolve(spec)
        self.uid, self.gid, self.groups, self.name = uid, gid, groups, name
        if not self.privileged:
            return
        os.setgroups(groups)
        # setfs[ug]id report nothing on failure; the second call returns what is in force.
        self._libc.setfsgid(gid)
        self._libc.setfsuid(uid)
        if self._libc.setfsgid(gid) != gid or self._libc.setfsuid(uid) != uid:
            raise OSError("cannot take the sandbox user's filesystem identity %d:%d" % (uid, gid))
        home = _home(uid)
        if home:
            os.environ["HOME"] = home
        if name:
            os.environ["USER"] = os.environ["LOGNAME"] = name

    def child(self) -> None:
        """In a forked child before exec: become the sandbox user entirely, with an empty
        bounding set (the capabilities still held go at exec)."""
        os.setgroups(self.groups)
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)
        for cap in KEPT_CAPS:  # CAP_SETPCAP, which allows the drops, goes last
            _check(self._libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")

    def describe(self) -> dict:
        return {
            "guest_uid": os.getuid(),
            "user_uid": self.uid,
            "user_gid": self.gid,
            "isolated": self.privileged,
        }


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise OSError(errno, "%s failed: %s" % (what, os.strerror(errno)))


def _resolve(spec: str) -> tuple:
    """``"1000:1000"``, ``"1000"`` or a name -> (uid, gid, supplementary groups, name)."""
    import pwd

    user, _, group = str(spec).partition(":")
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
