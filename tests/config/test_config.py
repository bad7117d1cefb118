"""Bench and variant files: every shipped file loads, every kind of mistake gets a precise message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rig.cli import main
from rig.config import (
    Expectation,
    expand_benches,
    is_pool_file,
    load_bench,
    load_pool,
    load_variant,
    load_variants,
)
from rig.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*ROOT.glob("benches/*.yaml"), *ROOT.glob("firmware_configs/*.yaml")])


def check(*files: Path | str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["config", "check", *map(str, files)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def bench_data() -> dict:
    return yaml.safe_load((ROOT / "benches/lab-example.yaml").read_text())


@pytest.fixture
def variant_data() -> dict:
    return yaml.safe_load((ROOT / "firmware_configs/tcp-rx-1024.yaml").read_text())


def write(folder: Path, name: str, data: dict | str) -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_file_passes_config_check(path: Path) -> None:
    code, out, err = check(path)
    assert code == 0, err
    assert "ok" in out


def test_shipped_variants_carry_the_incident_expectations() -> None:
    variants = {v.model.name: v.model for v in load_variants(ROOT / "firmware_configs")}
    assert set(variants) == {
        "tcp-rx-512",
        "tcp-rx-1024",
        "tcp-rx-1460",
        "mbedtls-in-4096",
        "tcp-rx-1460-release",
        "tcp-rx-1024-release",
    }
    for release in ("tcp-rx-1460-release", "tcp-rx-1024-release"):  # debug off: judged from the wire
        assert variants[release].build.debug_threshold == 0
    assert str(variants["tcp-rx-1024-release"].expectation("satellite")) == str(
        variants["tcp-rx-1024"].expectation("satellite")
    )
    # The shipped files say where each failure happens (the incident: client state 12).
    assert (
        str(variants["tcp-rx-1024"].expectation("satellite"))
        == "fail stall_want_read at SERVER_CHANGE_CIPHER_SPEC"
    )
    assert str(variants["tcp-rx-1024"].expectation("landline")) == "pass"
    assert variants["tcp-rx-1460"].release is True
    assert variants["tcp-rx-1024"].build.tcp_rx_buffer == 1024
    for path in ("landline", "satellite"):
        assert (
            str(variants["mbedtls-in-4096"].expectation(path)) == "fail record_or_buffer_size at SERVER_HELLO"
        )
    assert variants["mbedtls-in-4096"].build.mbedtls_in_content_len == 4096


def test_relative_paths_are_resolved_against_the_file() -> None:
    variant = load_variant(ROOT / "firmware_configs/tcp-rx-1460.yaml").model
    assert variant.image.hex == ROOT / "build/firmware/tcp-rx-1460.hex"
    bench = load_bench(ROOT / "benches/lab-example.yaml").model
    assert bench.ssh_hosts["router"].key_file == Path("~/.ssh/rig_bench").expanduser()


def test_typo_in_a_key_names_the_file_line_key_and_suggests_the_spelling(tmp_path, bench_data) -> None:
    bench_data["paths"]["satellite"]["verify"]["expct"] = bench_data["paths"]["satellite"]["verify"].pop(
        "expect"
    )
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    assert "paths.satellite.verify.expct: unknown key — did you mean `expect`?" in err
    assert "paths.satellite.verify.expect: required key is missing" in err
    assert "Traceback" not in err


def test_wrong_type_says_expected_and_found(tmp_path, bench_data) -> None:
    bench_data["ssh_hosts"]["router"]["port"] = "twenty-two"
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    line = next(iter(err.splitlines()))
    assert "lab.yaml:" in line
    assert "ssh_hosts.router.port: expected an integer, found 'twenty-two' (str)" in line


def test_missing_key_is_named_with_its_path(tmp_path, bench_data) -> None:
    del bench_data["dut"]["client_id"]
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    assert "dut.client_id: required key is missing" in err


def test_bad_enum_value_lists_the_allowed_ones(tmp_path, bench_data) -> None:
    bench_data["programmer"]["kind"] = "pickit"
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    assert "programmer.kind: expected one of 'ipecmd', 'mdb' or 'pic32prog', found 'pickit' (str)" in err


def test_plain_password_is_refused_with_the_alternatives(tmp_path, bench_data) -> None:
    bench_data["ssh_hosts"]["router"]["password"] = "hunter2"
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    assert "ssh_hosts.router.password: plain passwords are refused" in err
    assert "key_file:" in err and "agent: true" in err and "password_env" in err
    assert "hunter2" not in err


def test_unknown_path_in_expect_names_the_bench_paths(tmp_path, variant_data, bench_data) -> None:
    variant_data["expect"]["satelite"] = variant_data["expect"].pop("satellite")
    variant = write(tmp_path, "tcp-rx-1024.yaml", variant_data)
    bench = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(bench, variant)
    assert code == 2
    assert "tcp-rx-1024.yaml:" in err
    assert "expect.satelite: unknown path 'satelite'" in err
    assert "has paths: landline, satellite" in err


def test_unknown_failure_category_is_refused(tmp_path, variant_data) -> None:
    variant_data["expect"]["satellite"] = "fail stalled"
    file = write(tmp_path, "tcp-rx-1024.yaml", variant_data)
    code, _, err = check(file)
    assert code == 2
    assert "expect.satellite: unknown failure category 'stalled'; one of: stall_want_read" in err


def test_baseline_not_among_paths_is_refused(tmp_path, bench_data) -> None:
    bench_data["baseline"] = "fibre"
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    # Now with the line of the key (it was a top-level message before).
    assert re.search(r"lab\.yaml:\d+: baseline: `fibre` is not among the paths \(landline, satellite\)", err)


def test_path_on_an_unknown_ssh_host_is_refused(tmp_path, bench_data) -> None:
    bench_data["paths"]["satellite"]["host"] = "modem"
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    assert re.search(r"lab\.yaml:\d+: paths\.satellite\.host: `modem` is not among ssh_hosts \(router\)", err)


def test_unreadable_file_is_named(tmp_path) -> None:
    code, _, err = check(tmp_path / "nope.yaml")
    assert code == 2
    assert "nope.yaml: file not found — check the path" in err
    if os.geteuid() != 0:  # root reads anything; the mode test needs an ordinary user
        file = write(tmp_path, "locked.yaml", "name: x\n")
        file.chmod(0)
        code, _, err = check(file)
        assert code == 2 and "cannot read the file" in err


def test_invalid_yaml_gives_line_and_column(tmp_path) -> None:
    file = write(tmp_path, "lab.yaml", "name: lab\ndut:\n  part: 32MZ\n   client_id: x\n")
    code, _, err = check(file)
    assert code == 2
    assert "lab.yaml:4:" in err
    assert "invalid YAML" in err
    assert "check indentation" in err


def test_problems_carry_the_line_number_of_the_key(tmp_path, bench_data) -> None:
    bench_data["timeouts"]["cell_s"] = -5
    file = write(tmp_path, "lab.yaml", bench_data)
    text = file.read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if "cell_s" in t)
    code, _, err = check(file)
    assert code == 2
    assert f"lab.yaml:{line}: timeouts.cell_s:" in err


def test_environment_variables_are_substituted_and_missing_ones_named(
    tmp_path, bench_data, monkeypatch
) -> None:
    bench_data["programmer"]["serial"] = "${RIG_TEST_SERIAL}"
    bench_data["ssh_hosts"]["router"]["port"] = "${RIG_TEST_PORT:-2200}"
    file = write(tmp_path, "lab.yaml", bench_data)
    monkeypatch.setenv("RIG_TEST_SERIAL", "BUR0042")
    bench = load_bench(file).model
    assert bench.programmer.serial == "BUR0042"
    assert bench.ssh_hosts["router"].port == 2200
    monkeypatch.delenv("RIG_TEST_SERIAL")
    code, _, err = check(file)
    assert code == 2
    assert "programmer.serial: environment variable RIG_TEST_SERIAL is not set" in err


def test_provider_env_file_supplies_the_bench_values(tmp_path) -> None:
    sim = yaml.safe_load((ROOT / "benches/sim.yaml").read_text())
    sim["provider"]["env_file"] = "env/bench.env"
    (tmp_path / "env").mkdir()
    (tmp_path / "env/bench.env").write_text("# written by the provider\nRIG_SIM_ROUTER_PORT=40222\n")
    file = write(tmp_path, "sim.yaml", sim)
    bench = load_bench(file).model
    assert bench.ssh_hosts["router"].port == 40222
    assert bench.provider is not None and bench.provider.env_file == tmp_path / "env/bench.env"


def test_variant_name_must_match_its_file(tmp_path, variant_data) -> None:
    file = write(tmp_path, "other.yaml", variant_data)
    code, _, err = check(file)
    assert code == 2
    assert "name: expected 'other' (the file's name), found 'tcp-rx-1024'" in err


def test_schema_describes_both_file_kinds() -> None:
    result = CliRunner().invoke(main, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "dut" in schema["bench"]["properties"]
    assert "expect" in schema["variant"]["properties"]
    assert schema["bench"]["additionalProperties"] is False


def test_installed_command_exits_2_without_traceback(tmp_path) -> None:
    file = write(tmp_path, "broken.yaml", "name: [unclosed\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rig", "config", "check", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "broken.yaml:" in proc.stderr and "invalid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_version_and_help_are_readable() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).stdout.startswith("rig, version ")
    help_text = runner.invoke(main, ["--help"]).stdout
    assert "config" in help_text and "Exit codes" in help_text


def test_a_duplicated_key_is_refused_with_both_lines(tmp_path) -> None:
    text = (ROOT / "firmware_configs" / "tcp-rx-1024.yaml").read_text()
    assert "  tcp_rx_buffer: 1024\n" in text
    text = text.replace(
        "  tcp_rx_buffer: 1024\n", "  tcp_rx_buffer: 1024\n  tcp_tx_buffer: 512\n  tcp_rx_buffer: 1460\n"
    )
    (tmp_path / "firmware_configs").mkdir()
    file = tmp_path / "firmware_configs" / "tcp-rx-1024.yaml"
    file.write_text(text)
    first = text.splitlines().index("  tcp_rx_buffer: 1024") + 1
    code, _, err = check(file)
    assert code == 2
    assert (
        f"tcp-rx-1024.yaml:{first + 2}: build.tcp_rx_buffer: duplicate key (first given on line {first}"
        in err
    )
    # The file's own tcp_tx_buffer now comes second.
    assert (
        f"tcp-rx-1024.yaml:{first + 3}: build.tcp_tx_buffer: duplicate key (first given on line {first + 1}"
        in err
    )


@pytest.mark.parametrize("name", ["skip", "xfail", "parametrize", "release"])
def test_a_path_named_like_a_marker_is_refused(tmp_path, bench_data, name: str) -> None:
    bench_data["paths"][name] = bench_data["paths"].pop("satellite")
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    assert re.search(rf"lab\.yaml:\d+: paths\.{name}: `{name}` is the name of a pytest or rig marker", err)


def test_a_link_rtt_that_disagrees_with_the_paths_rtt_is_refused(tmp_path, bench_data) -> None:
    satellite = bench_data["paths"]["satellite"]
    satellite["rtt_ms"] = 600
    satellite["link"] = {"rtt_ms": 650}
    file = write(tmp_path, "lab.yaml", bench_data)
    code, _, err = check(file)
    assert code == 2
    assert re.search(
        r"lab\.yaml:\d+: paths\.satellite\.link\.rtt_ms: 650 disagrees with paths\.satellite\.rtt_ms \(600\)",
        err,
    )


@pytest.mark.parametrize(
    ("text", "category", "state"),
    [
        ("fail stall_want_read", "stall_want_read", None),
        ("fail stall_want_read at SERVER_CHANGE_CIPHER_SPEC", "stall_want_read", "SERVER_CHANGE_CIPHER_SPEC"),
        (
            "fail x509_verify_failed at MBEDTLS_SSL_SERVER_CERTIFICATE",
            "x509_verify_failed",
            "SERVER_CERTIFICATE",
        ),
        ("fail unexpected_reboot", "unexpected_reboot", None),
    ],
)
def test_an_expectation_names_a_category_and_optionally_its_state(
    text: str, category: str, state: str | None
) -> None:
    expectation = Expectation.model_validate(text)
    assert (expectation.outcome, expectation.category, expectation.state) == ("fail", category, state)
    assert expectation.matches(category, state or "ANY_STATE")
    assert expectation.matches(category, "SERVER_HELLO") is (state is None)


def test_an_expectation_with_a_malformed_place_names_the_file_and_line(tmp_path) -> None:
    text = (ROOT / "firmware_configs" / "tcp-rx-1024.yaml").read_text()
    text = text.replace(
        "fail stall_want_read at SERVER_CHANGE_CIPHER_SPEC", "fail stall_want_read at state-12"
    )
    (tmp_path / "firmware_configs").mkdir()
    file = tmp_path / "firmware_configs" / "tcp-rx-1024.yaml"
    file.write_text(text)
    code, _, err = check(file)
    assert code == 2
    assert re.search(
        r"tcp-rx-1024\.yaml:\d+: expect\.satellite\.state: `at state-12`: a handshake state is", err
    )


def test_a_pool_file_lists_bench_files_relative_to_itself_and_names_a_missing_or_repeated_one(
    tmp_path: Path, bench_data: dict
) -> None:
    benches = tmp_path / "benches"
    benches.mkdir()
    for name in ("a", "b"):
        write(benches, f"{name}.yaml", {**bench_data, "name": name})
    pool = write(benches, "pool.yaml", "pool:\n  - a.yaml\n  - b.yaml\n")
    assert is_pool_file(pool) and not is_pool_file(benches / "a.yaml")
    assert load_pool(pool) == [benches / "a.yaml", benches / "b.yaml"]
    # --bench a.yaml --bench pool.yaml: a is given twice
    with pytest.raises(ConfigError, match=r"a\.yaml: given twice as a bench of this run"):
        expand_benches([benches / "a.yaml", pool])
    assert expand_benches([pool]) == [benches / "a.yaml", benches / "b.yaml"]

    broken = write(benches, "broken.yaml", "pool:\n  - a.yaml\n  - c.yaml\n  - a.yaml\n")
    with pytest.raises(ConfigError) as caught:
        load_pool(broken)
    assert caught.value.problems == [
        f"{broken}:3: pool[1]: {benches / 'c.yaml'}: no such bench file — check the path",
        f"{broken}:4: pool[2]: a.yaml is listed twice: one worker per bench",
    ]
    code, out, err = check(pool)
    assert code == 0 and "a pool of 2 bench file(s)" in out, err
    code, out, err = check(write(benches, "empty.yaml", "pool: []\n"))
    assert code == 2 and "pool" in err


def _variant_with(tmp_path: Path, forensic: str, threshold: int = 2) -> Path:
    text = (REPO_VARIANTS / "tcp-rx-1024.yaml").read_text()
    text = text.replace("build:\n", f"forensic:\n{forensic}build:\n").replace(
        "debug_threshold: 2", f"debug_threshold: {threshold}"
    )
    target = tmp_path / "tcp-rx-1024.yaml"
    target.write_text(text)
    return target


REPO_VARIANTS = Path(__file__).resolve().parents[2] / "firmware_configs"


def _line_of(path: Path, start: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(start))


def test_a_forensic_image_is_read_and_found_by_a_bench_without_its_own_images(tmp_path, bench_data) -> None:
    variant = load_variant(_variant_with(tmp_path, "  hex: build/tcp-rx-1024-d4.hex\n")).model
    assert variant.forensic is not None and variant.forensic.hex == tmp_path / "build/tcp-rx-1024-d4.hex"
    bench = load_bench(REPO_VARIANTS.parent / "benches" / "lab-example.yaml").model
    assert bench.forensic_image_for(variant) == tmp_path / "build/tcp-rx-1024-d4.hex"
    assert bench.forensic_image_for(variant.model_copy(update={"forensic": None})) is None


def test_a_forensic_image_that_is_the_image_itself_is_refused_naming_file_line_and_key(tmp_path) -> None:
    target = _variant_with(tmp_path, "  hex: ../build/firmware/tcp-rx-1024.hex\n")
    with pytest.raises(ConfigError) as caught:
        load_variant(target)
    (line,) = caught.value.lines()
    assert line.startswith(
        f"{target}:{_line_of(target, 'forensic:')}: forensic: the forensic image is image.hex ("
    )


def test_a_forensic_image_of_a_build_already_at_level_4_is_refused(tmp_path) -> None:
    target = _variant_with(tmp_path, "  hex: d4.hex\n", threshold=4)
    with pytest.raises(ConfigError) as caught:
        load_variant(target)
    assert caught.value.lines() == [
        f"{target}:{_line_of(target, 'forensic:')}: forensic: this build already runs at build.debug_threshold 4: its forensic image would "
        "be the build itself"
    ]
