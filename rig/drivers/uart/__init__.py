"""The DUT's debug UART: the port and its reader thread (`port`), the byte stream once read (`stream`),
and the chunked RFC 2217 client for ser2net (`rfc2217`)."""

from rig.drivers.uart.port import Uart, UartError, UartTimeout, UartUnexpected
from rig.drivers.uart.stream import UartLine, UartSubscription

__all__ = ["Uart", "UartError", "UartLine", "UartSubscription", "UartTimeout", "UartUnexpected"]
