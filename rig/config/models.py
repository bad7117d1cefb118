"""What bench and variant files mean: their typed, strict, immutable models.

A *bench file* (`benches/*.yaml`) says what hardware the harness drives and how: the DUT and its UART,
the programmer, the SSH hosts and the network paths they switch, packet capture, the cloud, timeouts.
A *variant file* (`firmware_configs/*.yaml`) describes one firmware build and what it is expected to do
on each path. Unknown keys are errors. Reading the files (line numbers, `${VAR}`s) is `rig.config.files`;
loading and cross-checking them is `rig.config.loading`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rig.mbedtls.categories import CATEGORIES

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
# Each path becomes a pytest marker (`pytest -m satellite`): a path must not take the name of one of
# pytest's own marks or of the rig's markers, or `-m`, `xfail` and parametrization would mean something else.
RESERVED_PATH_NAMES = frozenset(
    {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings", "tryfirst", "trylast"}
    | {"release", "nightly"}
)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths in a file are relative to that file's folder; `~` is the user's home."""
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        value = Path(os.path.normpath(Path(base) / value))
    return value


FilePath = Annotated[Path, AfterValidator(_resolve_path)]


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]


class Model(BaseModel):
    """Strict, immutable: an unknown key is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- bench


class UartConfig(Model):
    """Where the DUT's debug UART is read: any pyserial URL (device path, rfc2217://, socket://)."""

    url: str = Field(description="pyserial URL: /dev/serial/by-id/…, rfc2217://host:port, socket://host:port")
    baud: int = Field(115200, gt=0, description="line rate of the DUT's UART")


class ResetConfig(Model):
    """How the harness resets the DUT: through the programmer, with a local command, or not at all."""

    method: Literal["programmer", "command", "none"] = "programmer"
    command: list[str] | None = Field(None, description="argv of a local command that resets the DUT")
    settle_s: float = Field(0.5, ge=0, description="wait after a reset before the port is expected back")

    @model_validator(mode="after")
    def _command_given(self) -> ResetConfig:
        if self.method == "command" and not self.command:
            raise ValueError("method `command` needs `command:` (the argv of the reset command)")
        return self


class DutConfig(Model):
    """The device under test."""

    part: str = Field(description="device part number as the programmer names it, e.g. 32MZ2048EFM100")
    client_id: str = Field(description="the MQTT client id the firmware connects with")
    uart: UartConfig
    reset: ResetConfig = ResetConfig()
    reenumerates_on_reset: bool = Field(False, description="the UART port disappears and returns on reset")
    banner_sha256: Regex = Field(
        r"image sha256[:=]\s*([0-9a-fA-F]{64})",
        description="regex whose group 1 is the running image's sha256 in the boot banner",
    )
    mqtt_connected: Regex = Field(
        r"MQTT CONNACK.*(accepted|rc=0)",
        description="regex of the firmware's UART line that says the MQTT session is up",
    )
    reset_cause: Regex = Field(
        r"reset cause[:=]?\s*([A-Za-z0-9_]+)",
        description="regex whose group 1 is the reset cause the boot ROM or firmware prints before its banner",
    )


class ProgrammerConfig(Model):
    """The tool that writes images into the DUT's flash."""

    kind: Literal["ipecmd", "mdb", "pic32prog"]
    tool: str | None = Field(None, description="tool type: ICD4, PK4, SNAP… (ipecmd -TP, mdb hwtool)")
    serial: str | None = Field(None, description="tool serial number, so the right board is programmed")
    executable: str = Field(description="path or name of the programming executable")
    timeout_s: float = Field(180.0, gt=0)
    extra_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _tool_for_microchip(self) -> ProgrammerConfig:
        if self.kind in ("ipecmd", "mdb") and not self.tool:
            raise ValueError(f"kind `{self.kind}` needs `tool:` (e.g. ICD4, PK4, SNAP)")
        return self


def _check_host_key(line: str) -> str:
    fields = line.split()
    if len(fields) == 3:
        fields = fields[1:]
    if len(fields) != 2 or not fields[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise ValueError(
            "expected a known_hosts line `[host]:port key-type base64` or `key-type base64` "
            "(take it from `ssh-keyscan -p PORT HOST` on a trusted network)"
        )
    try:
        base64.b64decode(fields[1], validate=True)
    except binascii.Error:
        raise ValueError("the key's base64 text is damaged") from None
    return line


HostKeyLine = Annotated[str, AfterValidator(_check_host_key)]


class SshHostConfig(Model):
    """One machine the harness logs into: key authentication only, host key pinned."""

    host: str
    port: int = Field(22, gt=0, lt=65536)
    user: str
    key_file: FilePath | None = Field(None, description="private key file (no passphrase, or via the agent)")
    agent: bool = Field(False, description="authenticate with a key held by ssh-agent")
    host_keys: list[HostKeyLine] = Field(min_length=1, description="pinned host key lines (known_hosts form)")
    connect_timeout_s: float = Field(10.0, gt=0)
    keepalive_s: float = Field(15.0, ge=0)

    @model_validator(mode="after")
    def _some_key(self) -> SshHostConfig:
        if self.key_file is None and not self.agent:
            raise ValueError("needs `key_file:` or `agent: true` (password login is not supported)")
        return self


class VerifyConfig(Model):
    """A command whose output proves the path is active."""

    command: str
    expect: Regex = Field(description="regex the command's output must match")
    timeout_s: float = Field(30.0, gt=0)
    interval_s: float = Field(1.0, gt=0)


class ProbeConfig(Model):
    """A command whose output proves the path's uplink reaches the cloud endpoint (not just the router)."""

    command: str = Field(
        description="run on the path's host, e.g. `mwan3 use wan2 nc -z -w 5 <endpoint> 8883`"
    )
    expect: Regex = Field(description="regex the command's output must match when the uplink works")
    timeout_s: float = Field(30.0, gt=0)


class LinkProfile(Model):
    """What the uplink is like: documents a real path, drives a simulated one."""

    rtt_ms: float = Field(gt=0, description="round-trip time of the uplink")
    jitter_ms: float = Field(0.0, ge=0)
    down_kbit_s: float | None = Field(None, gt=0)
    up_kbit_s: float | None = Field(None, gt=0)
    mss: int = Field(1460, ge=64, le=65495, description="segment size toward the DUT")
    split_tcp: bool = Field(False, description="a PEP terminates the DUT's TCP locally (satellite terminals)")
    segmentation: Literal["respect_window", "full_segments"] = Field(
        "respect_window",
        description="respect_window: never send more than the advertised window; "
        "full_segments: do not shrink a segment below the MSS to fit a smaller window",
    )


class PathConfig(Model):
    """One uplink the bench router can select."""

    host: str = Field(description="name of the SSH host (in ssh_hosts) that runs this path's commands")
    description: str = ""
    activate: list[str] = Field(min_length=1, description="shell commands that make this path active")
    verify: VerifyConfig
    rtt_ms: float = Field(gt=0, description="expected round-trip time; scales the stall detector")
    link: LinkProfile | None = None
    probe: ProbeConfig | None = Field(
        None, description="checked before the first cell on this path and by `rig bench check`"
    )


class CaptureConfig(Model):
    """Packet capture on the LAN side during each attempt, streamed as pcap over SSH."""

    host: str
    # --immediate-mode: without it packets reach tcpdump in blocks up to 1 s late, and the last block
    # before the capture is stopped at the end of an attempt is never written.
    command: str = "tcpdump --immediate-mode -U -s0 -w - -i {interface} {filter}"
    interface: str
    filter: str = ""


class EventsConfig(Model):
    """The MQTT broker that carries AWS IoT lifecycle events."""

    broker: str = Field(pattern=r"^mqtts?://[^/:]+(:\d+)?/?$", description="mqtts://host:port")
    ca: FilePath
    cert: FilePath
    key: FilePath
    username: str | None = None
    password_env: str | None = Field(None, description="name of an environment variable with the password")


class CloudConfig(Model):
    """The cloud endpoint the DUT talks to, and how the harness watches it."""

    endpoint: str
    port: int = Field(8883, gt=0, lt=65536)
    client_id: str = Field(description="the harness's own MQTT client id for watching events")
    events: EventsConfig | None = None
    server_log: FilePath | None = Field(
        None,
        description="the endpoint's own log on this host, JSON lines with `wall` times (the simulated "
        "cloud's cloud.log): an attempt keeps its lines as cloud.jsonl, the server's side of the story",
    )


class StallConfig(Model):
    """`stall_after = floor_s + rtt_multiple × rtt` of the active path (see rig.pytest_plugin)."""

    floor_s: float = Field(6.0, gt=0)
    rtt_multiple: float = Field(6.0, ge=0)


class TimeoutsConfig(Model):
    cell_s: float = Field(180.0, gt=0, description="whole attempt, reset to verdict")
    flash_s: float = Field(240.0, gt=0, description="programming, including one retry")
    path_switch_s: float = Field(60.0, gt=0)
    boot_s: float = Field(30.0, gt=0, description="reset to boot banner")
    stall: StallConfig = StallConfig()


class ProviderConfig(Model):
    """Commands that bring a bench up and down; `up` writes `env_file` with the values the file uses."""

    up: list[str] = Field(min_length=1)
    down: list[str] = Field(min_length=1)
    status: list[str] = Field(min_length=1, description="exits 0 when the bench is up")
    env_file: FilePath


class ImagesConfig(Model):
    """Where a bench's firmware images are when they are not the variants' own builds."""

    dir: FilePath = Field(
        description="folder holding `<variant name>.hex` for each variant; on this bench it replaces the "
        "variant's image.hex (and its image.sha256 pin, which belongs to that build)"
    )


class LabgridLeaseConfig(Model):
    """The bench's place on a lab's labgrid coordinator: the run's lease is that place, acquired."""

    coordinator: str = Field(description="the coordinator's HOST:PORT (labgrid-client -x)")
    place: str = Field(description="the place this bench is in the lab (labgrid-client -p)")
    client: str = Field(
        "labgrid-client",
        description="labgrid's client executable (a path relative to this file, or a name on PATH)",
    )


class LeaseConfig(Model):
    """Who owns the bench for a run: the rig's own lease file in state_dir (default), or a labgrid place."""

    labgrid: LabgridLeaseConfig | None = None


class BenchConfig(Model):
    """A bench file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Literal["real", "simulated"] = Field(
        description="real: hardware whose verdicts can release firmware; simulated: the simulated bench, "
        "whose verdicts never can"
    )
    description: str = ""
    dut: DutConfig
    programmer: ProgrammerConfig
    ssh_hosts: dict[str, SshHostConfig] = Field(min_length=1)
    paths: dict[Annotated[str, Field(pattern=NAME_PATTERN)], PathConfig] = Field(min_length=1)
    baseline: str = Field(description="the path restored after every run")
    capture: CaptureConfig | None = None
    cloud: CloudConfig
    timeouts: TimeoutsConfig = TimeoutsConfig()
    state_dir: FilePath | None = Field(None, description="where lease and flash records live")
    provider: ProviderConfig | None = None
    images: ImagesConfig | None = None
    lease: LeaseConfig = LeaseConfig()

    @property
    def simulated(self) -> bool:
        return self.kind == "simulated"

    def image_for(self, variant: VariantConfig) -> Path:
        """The HEX this bench programs for `variant`: its own `images.dir`'s, else the variant's build."""
        if self.images is not None:
            return self.images.dir / f"{variant.name}.hex"
        return variant.image.hex

    def image_pin(self, variant: VariantConfig) -> str | None:
        """The sha256 the image must have: the variant's `image.sha256`, unless this bench has its own images."""
        return None if self.images is not None else variant.image.sha256

    def forensic_image_for(self, variant: VariantConfig) -> Path | None:
        """The forensic HEX (the same build at debug level 4) for `variant`, or None when it has none.

        A bench with its own `images.dir` has `<variant name>.forensic.hex` there for every variant (the
        simulated bench builds it); elsewhere it is the variant file's `forensic.hex`, when it names one.
        """
        if self.images is not None:
            return self.images.dir / f"{variant.name}{FORENSIC_SUFFIX}"
        return variant.forensic.hex if variant.forensic is not None else None

    def forensic_pin(self, variant: VariantConfig) -> str | None:
        """The sha256 the forensic image must have: the variant's `forensic.sha256`, unless this bench has its own."""
        if self.images is not None or variant.forensic is None:
            return None
        return variant.forensic.sha256


# ------------------------------------------------------------------------------------------- variant

FORENSIC_SUFFIX = ".forensic.hex"  # in a bench's images.dir: `<variant name>.forensic.hex`


class ImageConfig(Model):
    hex: FilePath = Field(description="Intel HEX image of this build")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")


class BuildParams(Model):
    """The parameters that make this build differ from the others."""

    tcp_rx_buffer: int = Field(ge=64, le=65535, description="TCP socket RX FIFO, bytes (Harmony default 512)")
    tcp_tx_buffer: int = Field(ge=64, le=65535, description="TCP socket TX FIFO, bytes")
    mbedtls_in_content_len: int = Field(ge=512, le=16384, description="MBEDTLS_SSL_IN_CONTENT_LEN")
    mbedtls_out_content_len: int = Field(ge=512, le=16384, description="MBEDTLS_SSL_OUT_CONTENT_LEN")
    debug_threshold: int = Field(ge=0, le=4, description="mbedtls_debug_set_threshold")
    read_timeout_ms: int = Field(ge=0, description="mbedtls_ssl_conf_read_timeout; 0 = none")
    recv_glue: Literal["partial", "all_or_nothing"] = Field(
        description="partial: f_recv returns what the FIFO holds; all_or_nothing: WANT_READ until len bytes"
    )


# What a verdict can name beside the Mbed TLS log's own categories: judgements no log makes by itself.
JUDGE_CATEGORIES: tuple[str, ...] = (
    "unexpected_reboot",  # the DUT booted again after the attempt's own reset
    "over_time_budget",  # connected, but later than the path's time budget
    "weak_ciphersuite",  # connected with a suite AWS IoT Core's policy does not offer (not ECDHE AES-GCM)
)
VERDICT_CATEGORIES: tuple[str, ...] = (*CATEGORIES, *JUDGE_CATEGORIES)
_STATE_NAME = re.compile(r"^(MBEDTLS_SSL_)?[A-Z][A-Z0-9_]*$")


class Expectation(Model):
    """`pass`, or `fail <category> [at <STATE>]`: what a variant is expected to do on a path.

    With a state (`fail stall_want_read at SERVER_CHANGE_CIPHER_SPEC`), only a failure of that category
    in that handshake state is the expected one; the same category elsewhere is unexpected.
    """

    outcome: Literal["pass", "fail"]
    category: str | None = None
    state: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        words = value.split()
        if words == ["pass"]:
            return {"outcome": "pass"}
        if len(words) == 2 and words[0] == "fail":
            return {"outcome": "fail", "category": words[1]}
        if len(words) == 4 and words[0] == "fail" and words[2] == "at":
            return {"outcome": "fail", "category": words[1], "state": words[3]}
        raise ValueError(f"expected `pass` or `fail <category> [at <STATE>]`, found {value!r}")

    @model_validator(mode="after")
    def _category_known(self) -> Expectation:
        if self.outcome == "fail" and self.category not in VERDICT_CATEGORIES:
            raise ValueError(
                f"unknown failure category {self.category!r}; one of: "
                + ", ".join(c for c in VERDICT_CATEGORIES if c != "completed")
            )
        return self

    @field_validator("state")
    @classmethod
    def _state_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _STATE_NAME.match(value):
            raise ValueError(
                f"`at {value}`: a handshake state is an Mbed TLS state name such as "
                "SERVER_CHANGE_CIPHER_SPEC (as the table and cells.jsonl's last_state show it)"
            )
        return value.removeprefix("MBEDTLS_SSL_")

    def matches(self, category: str | None, last_state: str | None) -> bool:
        """Whether a failure of `category` in `last_state` is the one this expectation names."""
        if self.outcome != "fail" or category != self.category:
            return False
        return self.state is None or last_state == self.state

    def __str__(self) -> str:
        if self.outcome == "pass":
            return "pass"
        return f"fail {self.category}" + (f" at {self.state}" if self.state else "")


class VariantConfig(Model):
    """A variant file: one firmware build."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    description: str = ""
    image: ImageConfig
    build: BuildParams
    forensic: ImageConfig | None = Field(
        None,
        description="the same build at Mbed TLS debug level 4: rerun once with it after a failing attempt, "
        "so the bytes Mbed TLS read can be compared with the wire",
    )
    release: bool = False
    expect: dict[str, Expectation] = Field(
        default_factory=dict,
        description="per path name (or `*` for every other path): pass | fail <category>",
    )

    @field_validator("forensic")
    @classmethod
    def _forensic_is_another_build(
        cls, value: ImageConfig | None, info: ValidationInfo
    ) -> ImageConfig | None:
        if value is None:
            return None
        image, build = info.data.get("image"), info.data.get("build")
        if isinstance(image, ImageConfig) and Path(value.hex) == Path(image.hex):
            raise ValueError(
                f"the forensic image is image.hex ({image.hex}); it is the same build at debug level 4, a "
                "file of its own"
            )
        if isinstance(build, BuildParams) and build.debug_threshold >= 4:
            raise ValueError(
                "this build already runs at build.debug_threshold 4: its forensic image would be the build itself"
            )
        return value

    def expectation(self, path: str) -> Expectation:
        """What this variant should do on `path`; a path not listed is expected to pass."""
        return self.expect.get(path) or self.expect.get("*") or Expectation(outcome="pass")


class PoolConfig(Model):
    """A pool file: the benches one run spreads its cells over (`--bench pool.yaml -n auto`)."""

    description: str = ""
    pool: list[str] = Field(
        min_length=1, description="bench files, relative to this file; each is leased by one worker"
    )
