from rig.mbedtls.wirecheck import compare, input_dumps


def _dump(prefix: str, data: bytes) -> list[str]:
    lines = [f"{prefix}dumping 'input record from network' ({len(data)} bytes)"]
    for at in range(0, len(data), 16):
        lines.append(f"{prefix}{at:04x}:  " + " ".join(f"{b:02x}" for b in data[at : at + 16]))
    return lines


def test_changed_bytes_are_found_at_their_stream_offset_in_esp_idf_style():
    wire = bytes(range(40))
    read = bytearray(wire)
    read[21] ^= 0xFF
    log = _dump("V (14650) mbedtls: ssl_tls.c:3916 ", wire[:5]) + _dump(
        "V (1) mbedtls: ssl_tls.c:3916 ", bytes(read[5:])
    )
    result = compare(input_dumps(log), wire)
    assert [(d.offset, d.record) for d in result.differences] == [(21, 2)]
    assert result.compared == 40


def test_equal_bytes_say_how_many_were_compared():
    wire = bytes(range(20))
    result = compare(input_dumps(_dump("ssl_tls.c:3650: |4| ", wire)), wire)
    assert result.summary() == "all 20 compared bytes equal"


def test_incomplete_dump_says_what_it_could_not_compare():
    wire = bytes(range(48))
    log = _dump("ssl_tls.c:3650: |4| ", wire)[:-1]  # the last row lost to an overrun
    result = compare(input_dumps(log), wire)
    assert result.compared == 32
    assert "16 of 48 bytes not in the log" in result.not_compared[0]


def test_a_capture_ending_early_is_said_once_and_nothing_past_it_is_compared():
    wire = bytes(range(40))
    log = _dump("|4| ", wire[:10]) + _dump("|4| ", wire[10:30]) + _dump("|4| ", wire[30:])
    result = compare(input_dumps(log), wire[:20])
    assert result.compared == 10 and not result.differences
    assert result.not_compared == [
        "records 2-3 (2 records): the capture ends at stream offset 20, before the bytes the stack read"
    ]
