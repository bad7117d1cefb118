"""The stand-in against the hub's TLS library: a small client linked to the system's Mbed TLS 2.28.

The Python client in test_cloud.py shows the server's behaviour byte by byte; this one shows what
the device's library makes of it. The client below (compiled once per session) is an Mbed TLS
TLS 1.2 client with SNI, the device certificate, a read timeout and the option to flip bytes of the
inbound stream. It prints one line: `result=… ret=-0x…  state=… alert=… first_record=… in=… out=…`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rig.sim.pki import Pki

ENDPOINT = "sim-ats.iot.us-east-1.amazonaws.com"  # tests/sim/conftest.py starts the stand-in with it
StartCloud = Callable[..., Any]
SERVER_CHANGE_CIPHER_SPEC = 12  # mbedtls_ssl_states: the client's state after sending Finished

CLIENT_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

struct io { mbedtls_net_context net; long in, out; long corrupt[8]; int ncorrupt; unsigned char hdr[5]; };

static int io_recv(void *ctx, unsigned char *buf, size_t len, uint32_t timeout) {
    struct io *io = ctx;
    int n = mbedtls_net_recv_timeout(&io->net, buf, len, timeout);
    for (int i = 0; i < n; i++) {
        long at = io->in + i;
        if (at < 5) io->hdr[at] = buf[i];
        for (int c = 0; c < io->ncorrupt; c++) if (io->corrupt[c] == at) buf[i] ^= 0xFF;
    }
    if (n > 0) io->in += n;
    return n;
}

static int io_send(void *ctx, const unsigned char *buf, size_t len) {
    struct io *io = ctx;
    int n = mbedtls_net_send(&io->net, buf, len);
    if (n > 0) io->out += n;
    return n;
}

int main(int argc, char **argv) {
    if (argc < 9) { fprintf(stderr, "usage: port sni|- ca cert key timeout_ms corrupt_csv|- id\n"); return 2; }
    struct io io = {0};
    if (strcmp(argv[7], "-") != 0)
        for (char *t = strtok(argv[7], ","); t && io.ncorrupt < 8; t = strtok(NULL, ","))
            io.corrupt[io.ncorrupt++] = atol(t);
    mbedtls_ssl_context ssl; mbedtls_ssl_config conf; mbedtls_x509_crt ca, crt; mbedtls_pk_context key;
    mbedtls_entropy_context entropy; mbedtls_ctr_drbg_context drbg;
    mbedtls_net_init(&io.net); mbedtls_ssl_init(&ssl); mbedtls_ssl_config_init(&conf);
    mbedtls_x509_crt_init(&ca); mbedtls_x509_crt_init(&crt); mbedtls_pk_init(&key);
    mbedtls_entropy_init(&entropy); mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)argv[8], strlen(argv[8])) ||
        mbedtls_x509_crt_parse_file(&ca, argv[3]) || mbedtls_x509_crt_parse_file(&crt, argv[4]) ||
        mbedtls_pk_parse_keyfile(&key, argv[5], NULL)) { fprintf(stderr, "setup failed\n"); return 2; }
    mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    mbedtls_ssl_conf_min_version(&conf, 3, 3); mbedtls_ssl_conf_max_version(&conf, 3, 3);
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
    mbedtls_ssl_conf_own_cert(&conf, &crt, &key);
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_read_timeout(&conf, (uint32_t)atol(argv[6]));
    mbedtls_ssl_setup(&ssl, &conf);
    if (strcmp(argv[2], "-") != 0) mbedtls_ssl_set_hostname(&ssl, argv[2]);
    if (mbedtls_net_connect(&io.net, "127.0.0.1", argv[1], MBEDTLS_NET_PROTO_TCP)) { fprintf(stderr, "connect failed\n"); return 2; }
    mbedtls_ssl_set_bio(&ssl, &io, io_send, NULL, io_recv);
    int ret;
    do ret = mbedtls_ssl_handshake(&ssl); while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
    const char *result = ret == 0 ? "ok" : ret == MBEDTLS_ERR_SSL_TIMEOUT ? "timeout"
        : ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ? "alert" : "error";
    int alert = ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ? ssl.in_msg[1] : -1;
    long first = io.in >= 5 ? (long)(io.hdr[3] << 8 | io.hdr[4]) : -1;
    printf("result=%s ret=-0x%04x state=%d alert=%d first_record=%ld in=%ld out=%ld\n",
           result, (unsigned)-ret, ssl.state, alert, first, io.in, io.out);
    mbedtls_net_free(&io.net);
    return 0;
}
"""


@pytest.fixture(scope="session")
def mbedtls_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None or not Path("/usr/include/mbedtls/ssl.h").exists():
        pytest.skip("needs gcc and libmbedtls-dev (Debian packages gcc, libmbedtls-dev)")
    folder = tmp_path_factory.mktemp("mbedtls-client")
    source, binary = folder / "client.c", folder / "client"
    source.write_text(CLIENT_C, encoding="utf-8")
    subprocess.run(
        ["gcc", "-O1", "-Wall", "-o", str(binary), str(source), "-lmbedtls", "-lmbedx509", "-lmbedcrypto"],
        check=True,
        timeout=60,
    )
    return binary


def run_client(
    binary: Path, port: int, pki: Pki, *, sni: str = ENDPOINT, corrupt: str = "-", timeout_ms: int = 1500
) -> dict[str, str]:
    cert, key = pki.device_credentials("hub-sim-0001")
    argv = [
        str(binary),
        str(port),
        sni,
        str(pki.root_pem),
        str(cert),
        str(key),
        str(timeout_ms),
        corrupt,
        "t",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return dict(re.findall(r"(\w+)=(\S+)", done.stdout))


def test_mbedtls_client_completes_and_reads_the_first_flight_as_one_record(
    start_cloud: StartCloud, sim_pki: Pki, mbedtls_client: Path
) -> None:
    cloud = start_cloud()
    out = run_client(mbedtls_client, cloud.port, sim_pki)
    assert out["result"] == "ok"
    record = cloud.wait_records(1)[0]
    assert int(out["first_record"]) + 5 == record["first_flight_bytes"]
    print(f"Mbed TLS client: first record {out['first_record']} bytes, in={out['in']} out={out['out']}")


def test_silent_mode_leaves_mbedtls_waiting_in_client_state_12(
    start_cloud: StartCloud, sim_pki: Pki, mbedtls_client: Path
) -> None:
    cloud = start_cloud(mode="silent")
    out = run_client(mbedtls_client, cloud.port, sim_pki, corrupt="50,51")
    # The incident's signature: Finished sent, nothing comes back, the read times out in state 12.
    assert (out["result"], out["ret"], int(out["state"])) == ("timeout", "-0x6800", SERVER_CHANGE_CIPHER_SPEC)
    assert cloud.wait_records(1)[0]["alert"]["sent"] is False


def test_alert_mode_gives_mbedtls_a_fatal_decrypt_error_alert(
    start_cloud: StartCloud, sim_pki: Pki, mbedtls_client: Path
) -> None:
    cloud = start_cloud(mode="alert")
    out = run_client(mbedtls_client, cloud.port, sim_pki, corrupt="50,51")
    assert (out["result"], out["ret"], out["alert"]) == ("alert", "-0x7780", "51")
    assert int(out["state"]) == SERVER_CHANGE_CIPHER_SPEC


def test_close_mode_gives_mbedtls_an_end_of_connection(
    start_cloud: StartCloud, sim_pki: Pki, mbedtls_client: Path
) -> None:
    cloud = start_cloud(mode="close")
    out = run_client(mbedtls_client, cloud.port, sim_pki, corrupt="50,51")
    assert (out["result"], out["ret"]) == ("error", "-0x7280")  # MBEDTLS_ERR_SSL_CONN_EOF


def test_mbedtls_client_without_sni_receives_unrecognized_name(
    start_cloud: StartCloud, sim_pki: Pki, mbedtls_client: Path
) -> None:
    cloud = start_cloud()
    out = run_client(mbedtls_client, cloud.port, sim_pki, sni="-")
    assert (out["result"], out["alert"]) == ("alert", "112")


@pytest.mark.parametrize(
    ("where", "offsets"),
    [
        ("session id", "50,51"),
        ("cross-signed root signature", "5000,5001"),
        ("certificate types", "5379,5380"),
    ],
)
def test_corruption_the_client_never_verifies_reaches_state_12_and_fails_at_the_server(
    start_cloud: StartCloud, sim_pki: Pki, mbedtls_client: Path, where: str, offsets: str
) -> None:
    cloud = start_cloud(mode="alert")
    out = run_client(mbedtls_client, cloud.port, sim_pki, corrupt=offsets)
    assert (out["result"], out["alert"], int(out["state"])) == ("alert", "51", SERVER_CHANGE_CIPHER_SPEC), (
        where
    )
    assert cloud.wait_records(1)[0]["error"] == "BAD_SIGNATURE"


def test_corruption_inside_the_leaf_certificate_fails_the_client_before_its_finished(
    start_cloud: StartCloud, sim_pki: Pki, mbedtls_client: Path
) -> None:
    cloud = start_cloud(mode="silent")
    out = run_client(mbedtls_client, cloud.port, sim_pki, corrupt="300,301")
    # The leaf's signature no longer verifies: MBEDTLS_ERR_X509_CERT_VERIFY_FAILED in state 3
    # (server certificate), and the client tells the server so.
    assert (out["result"], out["ret"], out["state"]) == ("error", "-0x2700", "3")
    record = cloud.wait_records(1)[0]
    assert (record["handshake"], record["error"], record["alert"]) == (
        "failed",
        "TLSV1_ALERT_UNKNOWN_CA",
        None,
    )
