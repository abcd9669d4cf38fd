"""Users: root (with the capabilities to install packages, none to reach the guest), any user
of the image, uid[:gid] -- per session and per command; writable roots, capped."""

from __future__ import annotations

import io
import zipfile

import pytest

from orchestrator import Orchestrator
from orchestrator.errors import SandboxGone

from .conftest import IMAGE

ROOT_CAPS = (0, 1, 3, 4, 10, 31)  # CHOWN DAC_OVERRIDE FOWNER FSETID NET_BIND_SERVICE SETFCAP
ROOT_MASK = f"{sum(1 << c for c in ROOT_CAPS):016x}"

MAKE_DEB = (
    "mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/sbxtest && echo packaged > "
    "/tmp/pkg/usr/share/sbxtest/hello && printf 'Package: sbxtest\\nVersion: 1.0\\n"
    "Architecture: all\\nMaintainer: t <t@example.org>\\nDescription: test\\n' > "
    "/tmp/pkg/DEBIAN/control && dpkg-deb --build /tmp/pkg /tmp/sbxtest.deb >/dev/null"
)


def _wheel() -> bytes:
    """A pure-Python wheel made here, so pip needs no index."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        wheel.writestr("sbxtestpkg/__init__.py", "VALUE = 42\n")
        info = "sbxtestpkg-1.0.dist-info"
        wheel.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: sbxtestpkg\nVersion: 1.0\n"
        )
        wheel.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{info}/RECORD", "")
    return buffer.getvalue()


async def test_root_installs_a_local_deb_and_a_local_wheel_on_a_writable_root(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, user="root", writable_root=True, memories=False) as s:
        assert (await s.exec("id -u")).stdout == b"0\n"
        built = await s.exec(MAKE_DEB)
        assert built.exit_code == 0, built
        dpkg = await s.exec("dpkg -i /tmp/sbxtest.deb && cat /usr/share/sbxtest/hello")
        assert dpkg.exit_code == 0 and dpkg.stdout.endswith(b"packaged\n"), dpkg
        apt = await s.exec("apt-get install -y /tmp/sbxtest.deb 2>&1; echo rc=$?")
        assert "rc=0" in apt.stdout_text, apt
        await s.write_file("/tmp/sbxtestpkg-1.0-py3-none-any.whl", _wheel())
        pip = await s.exec(
            "pip3 install --no-index --break-system-packages /tmp/sbxtestpkg-1.0-py3-none-any.whl"
            " && python3 -c 'import sbxtestpkg; print(sbxtestpkg.VALUE)'",
            timeout=120,
        )
        assert pip.exit_code == 0 and pip.stdout.endswith(b"42\n"), pip
        opt = await s.exec("echo here > /opt/written && cat /opt/written")
        assert opt.stdout == b"here\n"


async def test_the_default_user_cannot_install_and_a_read_only_root_stays_read_only(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        await s.exec(MAKE_DEB)
        dpkg = await s.exec("dpkg -i /tmp/sbxtest.deb")
        assert dpkg.exit_code != 0
        assert b"superuser" in dpkg.stderr or b"Permission denied" in dpkg.stderr, dpkg
        root = await s.exec("echo x > /opt/nope", user="root")
        assert b"Read-only file system" in root.stderr, root


async def test_root_commands_hold_only_roots_capabilities_and_cannot_reach_the_guest(
    orch: Orchestrator,
) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        caps = await s.exec("grep -E '^Cap(Eff|Prm|Bnd|Inh|Amb)' /proc/self/status", user="root")
        fields = dict(line.split() for line in caps.stdout_text.splitlines())
        assert fields["CapEff:"] == fields["CapPrm:"] == fields["CapBnd:"] == ROOT_MASK, fields
        assert fields["CapInh:"] == fields["CapAmb:"] == "0" * 16
        guest = "$(cut -d' ' -f4 /proc/$$/stat)"
        stop = await s.exec(f"kill -STOP {guest}; echo rc=$?", user="root")
        assert "Operation not permitted" in stop.stderr_text and "rc=1" in stop.stdout_text
        fd = await s.exec(f"cat /proc/{guest}/fd/0; echo rc=$?", user="root")
        assert "Permission denied" in fd.stderr_text, fd
        kill_all = await s.exec("kill -9 -1; echo survived", user="root")
        assert kill_all.stdout == b"survived\n"
        assert (await s.exec("echo alive")).stdout == b"alive\n"


async def test_a_user_per_command_and_per_shell(orch: Orchestrator) -> None:
    async with orch.session(image=IMAGE, memories=False) as s:
        assert (await s.exec("id -u")).stdout == b"1000\n"
        assert (await s.exec("id -u", user="root")).stdout == b"0\n"
        nobody = await s.exec("id -un; echo $HOME", user="nobody")
        assert nobody.stdout_text.split() == ["nobody", "/nonexistent"], nobody
        assert (await s.exec("id -u; id -g", user="4242:4343")).stdout == b"4242\n4343\n"
        assert (await s.shell("whoami", user="root")).stdout == b"root\n"
        assert (await s.shell("whoami")).stdout == b"sandbox\n"
        with pytest.raises(Exception, match="no user 'nosuchuser'"):
            await s.exec("true", user="nosuchuser")


async def test_a_writable_root_past_its_size_stops_the_session(orch: Orchestrator) -> None:
    orch.config.sandbox.root_size = 32 << 20
    async with orch.session(image=IMAGE, writable_root=True, user="root", memories=False) as s:
        small = await s.exec("head -c 8M /dev/zero > /opt/small && echo ok")
        assert small.stdout == b"ok\n"
        with pytest.raises(SandboxGone, match="root_size"):
            await s.exec("head -c 200M /dev/zero > /opt/big; sleep 30", timeout=60)
        assert s.state == "broken" and "sandbox.root_size" in (s.failure or "")
