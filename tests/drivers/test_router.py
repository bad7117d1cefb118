"""The router driver against a real OpenSSH sshd running a tiny router command set (netctl)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.config import BenchConfig
from rig.drivers.router import Router, render_command
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog
from tests.peers.drivers import SshServer, bench_dict, keygen, netctl, netctl_paths


def openssh_fingerprint(pub: Path) -> str:
    """The SHA256 fingerprint as OpenSSH prints it, to compare ours with."""
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True, timeout=10
    )
    return out.stdout.split()[1]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return netctl(tmp_path / "routerfs")


def make_bench(sshd: SshServer, script: Path, **overrides: object) -> BenchConfig:
    hosts = {"router": sshd.host_config(**overrides.pop("host", {}))}  # type: ignore[arg-type]
    paths = overrides.pop("paths", None) or netctl_paths(script)
    return BenchConfig.model_validate(bench_dict(hosts, paths, "landline", **overrides))  # type: ignore[arg-type]


@pytest.fixture
def router(sshd: SshServer, script: Path, tmp_path: Path) -> Iterator[Router]:
    with Router(make_bench(sshd, script), events=EventLog(), state_dir=tmp_path / "state") as r:
        yield r


def route(script: Path) -> str:
    return (script.parent / "route").read_text().strip()


def kinds(events: EventLog, prefix: str = "") -> list[str]:
    return [e.kind for e in events.history if e.kind.startswith(prefix)]


# ---------------------------------------------------------------------------------------------- host keys


def test_a_pinned_host_key_is_accepted_and_commands_report_rc_stdout_stderr(router: Router) -> None:
    result = router.run("router", "echo hello; echo oops >&2; exit 3", timeout=10)
    assert (result.rc, result.stdout, result.stderr) == (3, "hello\n", "oops\n")
    connected = next(e for e in router.events.history if e.kind == "ssh_connected")
    assert connected.fields["host"] == "127.0.0.1"


def test_a_changed_host_key_is_refused_with_the_offered_and_pinned_fingerprints(
    sshd: SshServer, script: Path, tmp_path: Path
) -> None:
    impostor = keygen(tmp_path / "other_ed25519", "other")
    bench = make_bench(sshd, script, host={"host_keys": [sshd.host_key_line(impostor)]})
    with pytest.raises(InfrastructureError) as caught:
        Router(bench, state_dir=tmp_path / "state").open()
    offered = openssh_fingerprint(sshd.host_key.with_suffix(".pub"))
    pinned = openssh_fingerprint(impostor.with_suffix(".pub"))
    assert str(caught.value) == (
        f"router (root@127.0.0.1:{sshd.port}): host key changed (offered ssh-ed25519 {offered}, pinned "
        f"ssh-ed25519 {pinned}) — refused; if the machine was replaced or re-flashed, check its new key on "
        "a trusted network and update ssh_hosts.router.host_keys"
    )


def test_an_unknown_host_key_is_refused_with_fingerprints_and_never_added(
    sshd: SshServer, script: Path, tmp_path: Path
) -> None:
    other = keygen(tmp_path / "other_ecdsa", "other", kind="ecdsa")
    bench = make_bench(sshd, script, host={"host_keys": [sshd.host_key_line(other)]})
    known_hosts = Path.home() / ".ssh" / "known_hosts"
    before = known_hosts.read_bytes() if known_hosts.exists() else None
    with pytest.raises(InfrastructureError) as caught:
        Router(bench, state_dir=tmp_path / "state").open()
    offered = openssh_fingerprint(sshd.host_key.with_suffix(".pub"))
    pinned = openssh_fingerprint(other.with_suffix(".pub"))
    assert str(caught.value).startswith(
        f"router (root@127.0.0.1:{sshd.port}): unknown host key (offered ssh-ed25519 {offered}, "
        f"pinned ecdsa-sha2-nistp256 {pinned}) — refused; "
    )
    assert (known_hosts.read_bytes() if known_hosts.exists() else None) == before


@pytest.fixture
def ssh_agent(sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent holding the bench's client key, as SSH_AUTH_SOCK."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists():
            assert time.monotonic() < deadline, "ssh-agent did not create its socket"
            time.sleep(0.01)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], check=True, timeout=10, capture_output=True)
        yield sock
    finally:
        agent.terminate()
        agent.wait(timeout=5)


def test_a_key_held_by_the_agent_logs_in_without_a_key_file(
    sshd: SshServer, script: Path, ssh_agent: Path, tmp_path: Path
) -> None:
    bench = make_bench(sshd, script, host={"key_file": None, "agent": True})
    with Router(bench, state_dir=tmp_path / "state") as router:
        assert router.run("router", "echo via agent", 10).stdout == "via agent\n"


def test_a_key_the_router_does_not_accept_names_the_key_file(
    sshd: SshServer, script: Path, tmp_path: Path
) -> None:
    stranger = keygen(tmp_path / "stranger_ed25519", "stranger")
    bench = make_bench(sshd, script, host={"key_file": str(stranger)})
    with pytest.raises(InfrastructureError, match=f"key authentication failed with the key {stranger} "):
        Router(bench, state_dir=tmp_path / "state").open()


def test_an_unreachable_router_says_what_to_check(sshd: SshServer, script: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    bench = make_bench(sshd, script, host={"port": closed_port})
    with pytest.raises(InfrastructureError) as caught:
        Router(bench, state_dir=tmp_path / "state").open()
    assert str(caught.value).startswith(f"router (root@127.0.0.1:{closed_port}): cannot connect (")
    assert str(caught.value).endswith(f"runs sshd on port {closed_port}")


def test_the_connection_is_reopened_after_sshd_restarts(router: Router, sshd: SshServer) -> None:
    assert router.run("router", "echo before", 10).stdout == "before\n"
    sshd.restart()  # every session dropped, as when the router reboots
    assert router.run("router", "echo after", 10).stdout == "after\n"
    assert kinds(router.events, "ssh_")[-2:] == ["ssh_reconnected", "ssh_command"]


def test_a_command_that_outlives_its_timeout_is_an_infrastructure_error(router: Router) -> None:
    with pytest.raises(InfrastructureError, match=r"`sleep 30` did not finish within 0.3 s"):
        router.run("router", "sleep 30", timeout=0.3)


# ---------------------------------------------------------------------------------------------- paths


def test_select_activates_then_verifies_and_current_reports_the_path(router: Router, script: Path) -> None:
    seconds = router.select("satellite")
    assert route(script) == "satellite"
    assert router.current() == "satellite"
    selected = next(e for e in router.events.history if e.kind == "path_selected")
    assert selected.fields == {"path": "satellite", "seconds": seconds, "verify_attempts": 1}
    assert json.loads(router.state_file.read_text())["path"] == "satellite"


def test_select_polls_verify_until_a_slow_switch_shows(sshd: SshServer, script: Path, tmp_path: Path) -> None:
    paths = netctl_paths(script)
    paths["satellite"]["activate"] = [f"{script} select-later satellite 0.5"]  # type: ignore[index]
    with Router(make_bench(sshd, script, paths=paths), state_dir=tmp_path / "state") as router:
        router.select("satellite")
        selected = next(e for e in router.events.history if e.kind == "path_selected")
    assert route(script) == "satellite"
    assert selected.fields["verify_attempts"] > 1


def test_a_path_that_never_verifies_names_the_command_the_pattern_and_the_output(
    sshd: SshServer, script: Path, tmp_path: Path
) -> None:
    paths = netctl_paths(script)
    paths["satellite"]["verify"]["timeout_s"] = 0.5  # type: ignore[index]
    paths["satellite"]["verify"]["expect"] = "dev wanb "  # type: ignore[index]
    router = Router(make_bench(sshd, script, paths=paths), state_dir=tmp_path / "state")
    with router, pytest.raises(InfrastructureError) as caught:
        router.select("satellite")
    message = str(caught.value)
    assert message.startswith(
        f"router router: path `satellite` not verified within 0.5 s: the output of `{script} route` "
        "never matched 'dev wanb ' ("
    )
    assert "last output 'default via 10.0.0.1 dev satellite proto static', rc 0); " in message


def test_a_failing_activate_command_is_reported_with_its_stderr(
    sshd: SshServer, script: Path, tmp_path: Path
) -> None:
    paths = netctl_paths(script)
    paths["satellite"]["activate"] = [f"{script} fail"]  # type: ignore[index]
    router = Router(make_bench(sshd, script, paths=paths), state_dir=tmp_path / "state")
    with router, pytest.raises(InfrastructureError) as caught:
        router.select("satellite")
    assert str(caught.value) == (
        f"router router: activating path `satellite`: `{script} fail` exited 1: 'uci: Entry not found'; "
        "check the command in paths.satellite.activate"
    )


def test_an_unknown_path_is_a_config_error_listing_the_paths(router: Router) -> None:
    with pytest.raises(ConfigError, match=r"unknown path `wifi`; the bench has: landline, satellite"):
        router.select("wifi")


# ---------------------------------------------------------------------------------------------- restore


def test_the_session_restores_the_baseline_after_a_test_that_raises(router: Router, script: Path) -> None:
    with pytest.raises(ZeroDivisionError), router.session():
        router.select("satellite")
        1 / 0  # noqa: B018 - the failing test
    assert route(script) == "landline"
    assert router.left_dirty() is None
    assert kinds(router.events, "path_")[-1] == "path_restored"


CHILD = """
import sys, time
from pathlib import Path
from rig.config import BenchConfig
from rig.events import EventLog
from rig.drivers.router import Router
bench = BenchConfig.model_validate_json(Path(sys.argv[1]).read_text())
router = Router(bench, events=EventLog(Path(sys.argv[2])), state_dir=Path(sys.argv[3]))
with router.session():
    router.select("satellite")
    print("on satellite", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def child_run(sshd: SshServer, script: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A separate harness process that selects satellite inside a session and then waits."""
    bench_file = tmp_path / "bench.json"
    bench_file.write_text(make_bench(sshd, script).model_dump_json())
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(bench_file),
            str(tmp_path / "child-events.jsonl"),
            str(tmp_path / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([child.stdout], [], [], 20)
    assert ready and child.stdout is not None and child.stdout.readline() == "on satellite\n"
    yield child
    if child.poll() is None:
        child.kill()
    child.wait(timeout=10)
    child.communicate(timeout=10)


def test_ctrl_c_during_a_run_restores_the_baseline(
    child_run: subprocess.Popen[str], script: Path, tmp_path: Path
) -> None:
    assert route(script) == "satellite"
    child_run.send_signal(signal.SIGINT)
    child_run.wait(timeout=20)
    assert route(script) == "landline"
    events = [json.loads(line)["kind"] for line in (tmp_path / "child-events.jsonl").read_text().splitlines()]
    assert events[-1] == "path_restored"


def test_sigterm_during_a_run_restores_the_baseline(child_run: subprocess.Popen[str], script: Path) -> None:
    child_run.send_signal(signal.SIGTERM)
    assert child_run.wait(timeout=20) == 128 + signal.SIGTERM
    assert route(script) == "landline"


def test_a_bench_left_on_satellite_by_a_killed_run_is_restored_at_the_next_start(
    child_run: subprocess.Popen[str], sshd: SshServer, script: Path, tmp_path: Path
) -> None:
    os.kill(child_run.pid, signal.SIGKILL)
    child_run.wait(timeout=10)
    assert route(script) == "satellite"
    events = EventLog()
    router = Router(make_bench(sshd, script), events=events, state_dir=tmp_path / "state")
    with router.session():
        assert route(script) == "landline"
    dirty = next(e for e in events.history if e.kind == "bench_left_dirty")
    assert dirty.fields["previous"]["path"] == "satellite"
    assert dirty.fields["previous"]["pid"] == child_run.pid
    assert kinds(events, "path_")[:3] == ["path_select", "path_selected", "path_restored"]
    router.close()


# ---------------------------------------------------------------------------------------------- capture


def test_template_values_are_shell_quoted() -> None:
    assert (
        render_command("tcpdump -i {interface} {filter}", interface="br-lan", filter="")
        == "tcpdump -i br-lan"
    )
    assert (
        render_command(
            "tcpdump -i {interface} {filter}", interface="lan; reboot", filter="host $(id) and `id`"
        )
        == "tcpdump -i 'lan; reboot' 'host $(id) and `id`'"
    )


def test_a_template_naming_an_unknown_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"command template 'tcpdump -i \{iface\}': no value for iface"):
        render_command("tcpdump -i {iface}", interface="lan")


def test_hostile_capture_values_reach_the_router_as_plain_arguments(
    sshd: SshServer, script: Path, tmp_path: Path
) -> None:
    pwned = script.parent / "pwned"
    capture = {
        "host": "router",
        "command": f"{script} args {{interface}} {{filter}}",
        "interface": f"lan; touch {pwned}",
        "filter": f"$(touch {pwned}) `touch {pwned}` ' \"",
    }
    out = tmp_path / "attempt" / "capture.pcap"
    router = Router(make_bench(sshd, script, capture=capture), state_dir=tmp_path / "state")
    with router, router.capture(out):
        pass
    assert out.read_text() == f"<lan; touch {pwned}>\n<$(touch {pwned}) `touch {pwned}` ' \">\n"
    assert not pwned.exists()


def test_capture_streams_a_pcap_of_the_lan_traffic_into_the_attempt_folder(
    sshd: SshServer, script: Path, tmp_path: Path
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        capture = {
            "host": "router",  # the default command: tcpdump on the LAN interface
            "interface": "lo",
            "filter": f"tcp port {port}",
        }
        out = tmp_path / "attempt" / "lan.pcap"
        events = EventLog()
        with (
            Router(
                make_bench(sshd, script, capture=capture), events=events, state_dir=tmp_path / "s"
            ) as router,
            router.capture(out),
        ):
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", port), timeout=5):
                    listener.accept()[0].close()
            router.run("router", "sleep 0.3", 5)
    data = out.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")  # pcap magic
    packets, offset = 0, 24  # pcap: a 24-byte file header, then records of a 16-byte header + data
    while offset + 16 <= len(data):
        captured = int.from_bytes(data[offset + 8 : offset + 12], "little")
        offset += 16 + captured
        packets += 1
    assert offset == len(data)
    assert packets >= 3 * 3  # at least SYN, SYN-ACK, ACK of each of the three connections
    stopped = next(e for e in events.history if e.kind == "capture_stopped")
    assert stopped.fields["bytes"] == len(data)


def test_no_part_of_the_rig_accepts_host_keys_on_first_use() -> None:
    import rig

    package = Path(rig.__file__).parent
    offenders = [
        f"{path.relative_to(package.parent)}: {policy}"
        for path in package.rglob("*.py")
        for policy in ("AutoAddPolicy", "WarningPolicy")
        if policy in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
