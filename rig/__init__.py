"""rig: a hardware-in-the-loop test-rig controller for the hub's TLS handshake with AWS IoT Core."""

__all__ = ["__version__"]

__version__ = "0.1.0"
