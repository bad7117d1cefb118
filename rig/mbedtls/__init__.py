"""Mbed TLS debug-log intelligence: lines → events → HandshakeTrace → Diagnosis (pure, no I/O)."""
