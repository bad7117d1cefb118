from rig.mbedtls.wirecheck import compare, input_dumps


def _dump(prefix: str, data: bytes, title: str = "input record from network") -> list[str]:
    lines = [f"{prefix}dumping '{title}' ({len(data)} bytes)"]
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


def test_a_record_past_the_dump_limit_is_compared_through_its_remaining_content():
    wire = bytes(i % 251 for i in range(5000))
    read = bytearray(wire)
    read[4150] ^= 0xFF  # past the record dump's 4096 bytes, inside the first `remaining content` dump
    lines = _dump("ssl_msg.c:3646: ", bytes(read))[: 1 + 256]  # Mbed TLS prints 4096 bytes at most
    lines += _dump("ssl_msg.c:4270: ", bytes(read[100:]), "remaining content in record")[: 1 + 256]
    lines += _dump("ssl_msg.c:4270: ", bytes(read[4700:]), "remaining content in record")
    result = compare(input_dumps(lines), wire)
    assert [(d.offset, d.wire, d.stack) for d in result.differences] == [(4150, wire[4150], read[4150])]
    assert result.compared == 4196 + 300
    assert result.not_compared == [
        "record 1 (log line 1): stream bytes 4196–4699 (504 bytes) in no dump — Mbed TLS dumps at most "
        "4096 bytes of a buffer (debug.c)"
    ]


def test_after_the_servers_change_cipher_spec_remaining_content_is_plaintext_and_not_compared():
    ccs, finished = bytes([0x14, 3, 3, 0, 1, 1]), bytes([0x16, 3, 3, 0, 8]) + bytes(range(8))
    lines = (
        _dump("|4| ", ccs)
        + _dump("|4| ", finished)
        + _dump("|4| ", b"\x14\x00\x00\x0c", "remaining content in record")
    )
    result = compare(input_dumps(lines), ccs + finished)
    assert result.compared == len(ccs + finished) and not result.differences and not result.not_compared
