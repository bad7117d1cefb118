"""Cloud events: what the server saw, from AWS IoT lifecycle events on the bench's broker.

AWS IoT Core publishes `$aws/events/presence/connected/<clientId>` when a device's MQTT session
starts and `.../disconnected/<clientId>` when it ends (JSON with clientId, timestamp, eventType,
sessionIdentifier, principalIdentifier, ipAddress, disconnectReason…; bench.md §6). The harness
subscribes with its own certificate (`cloud.events` in the bench file; on the simulated bench the
stand-in's broker publishes the same topics), so a test can assert the server saw the device connect,
and for a failure inside the TLS handshake, that it did not: a handshake that never finishes never
reaches MQTT CONNECT, so no event is the expected signal there. Events may arrive duplicated or out
of order; each is kept with the host's time of arrival.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from rig.config import CloudConfig, EventsConfig
from rig.drivers.part import Part
from rig.errors import ConfigError, InfrastructureError
from rig.events import EventLog

log = logging.getLogger(__name__)

PRESENCE = "$aws/events/presence"
TOPICS = (f"{PRESENCE}/connected/+", f"{PRESENCE}/disconnected/+")


@dataclass(frozen=True)
class Broker:
    """Where the lifecycle events are read: host, port, TLS or not."""

    host: str
    port: int
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Broker:
        parsed = urlparse(url)
        tls = parsed.scheme == "mqtts"
        return cls(parsed.hostname or "", parsed.port or (8883 if tls else 1883), tls)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class CloudEvents(Part):
    """A subscriber to the bench's lifecycle events; `open()` connects and subscribes, `close()` disconnects."""

    name = "cloud"

    def __init__(
        self, cloud: CloudConfig, *, events: EventLog | None = None, open_timeout: float = 10.0
    ) -> None:
        if cloud.events is None:
            raise ConfigError(
                "cloud.events is not configured in the bench file: no lifecycle events to watch"
            )
        self.cloud = cloud
        self.config: EventsConfig = cloud.events
        self.broker = Broker.from_url(self.config.broker)
        self.events = events if events is not None else EventLog()
        self._seen: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._settled = threading.Event()  # subscribed, or refused: open() need not wait any longer
        self._connect_error: str | None = None
        self._client: mqtt.Client | None = None
        self.open_timeout = open_timeout

    # -- lifecycle

    def open(self, timeout: float | None = None) -> None:
        """Connect and subscribe; `InfrastructureError` naming the broker and what to check on failure."""
        if self._client is not None:
            return
        timeout = self.open_timeout if timeout is None else timeout
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.cloud.client_id, clean_session=True)
        if self.broker.tls:
            for key in ("ca", "cert", "key"):
                path = getattr(self.config, key)
                if not path.is_file():
                    raise InfrastructureError(
                        f"cloud events: cloud.events.{key} {path} does not exist — check the bench file"
                    )
            try:
                client.tls_set(
                    ca_certs=str(self.config.ca),
                    certfile=str(self.config.cert),
                    keyfile=str(self.config.key),
                    cert_reqs=ssl.CERT_REQUIRED,
                    tls_version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except (ssl.SSLError, OSError) as exc:
                raise InfrastructureError(
                    f"cloud events: cannot load the certificate files of cloud.events ({exc}) — check ca, "
                    "cert and key in the bench file"
                ) from None
        if self.config.username:
            password = os.environ.get(self.config.password_env) if self.config.password_env else None
            client.username_pw_set(self.config.username, password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._subscribed.clear()
        self._settled.clear()
        self._connect_error = None
        try:
            client.connect(self.broker.host, self.broker.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise InfrastructureError(
                f"cloud events: cannot connect to {self.broker} ({exc}) — check cloud.events.broker, that "
                "the broker is up, and the certificate files"
            ) from None
        client.loop_start()
        self._client = client
        self._settled.wait(timeout)
        if not self._subscribed.is_set():
            reason = self._connect_error or f"no subscription acknowledged within {timeout:g} s"
            self.close()
            raise InfrastructureError(
                f"cloud events: {self.broker} did not let {self.cloud.client_id!r} watch ({reason}) — check "
                f"that the broker trusts cloud.events.cert and that the client's policy allows subscribing "
                f"to {PRESENCE}/#"
            )
        self.events.emit("cloud_watching", "cloud", broker=str(self.broker), topics=list(TOPICS))

    def close(self) -> None:
        """Disconnect (idempotent)."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected()

    # -- what tests ask

    def seen(self, client_id: str) -> list[dict[str, Any]]:
        """Every lifecycle event received for `client_id`, in order of arrival."""
        with self._cond:
            return [e for e in self._seen if e["clientId"] == client_id]

    def wait_connected(self, client_id: str, timeout: float, since: float) -> dict[str, Any] | None:
        """The first `connected` event for `client_id` received at or after `since`, waiting up to `timeout`.

        `since` is a `time.time()` value taken before the DUT was reset; the comparison uses the host's
        time of arrival (`received`), not AWS's `timestamp` (which may be ±2 minutes off). Returns None
        when no such event came: expected for a failure inside the TLS handshake.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._seen:
                    if (
                        event["clientId"] == client_id
                        and event["eventType"] == "connected"
                        and event["received"] >= since
                    ):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    # -- paho callbacks (its network thread)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._connect_error = f"broker refused the connection: {reason}"
            log.warning("cloud events: %s refused the connection: %s", self.broker, reason)
            self._settled.set()
            return
        client.subscribe([(topic, 1) for topic in TOPICS])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], properties: Any
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            self._connect_error = f"subscription refused ({', '.join(refused)})"
        else:
            self._subscribed.set()
        self._settled.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if not self._subscribed.is_set():
            self._connect_error = f"the broker closed the connection: {reason}"
            self._settled.set()
        elif self._client is not None:  # not our own close()
            log.warning("cloud events: lost %s (%s); reconnecting", self.broker, reason)
            self.events.emit("cloud_lost", "cloud", broker=str(self.broker), reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        kind = parts[3] if len(parts) > 4 else "?"
        try:
            payload = json.loads(message.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = {"raw": message.payload.decode("utf-8", errors="replace")}
        if not isinstance(payload, dict):
            payload = {"raw": payload}
        event = {
            **payload,
            "clientId": payload.get("clientId", parts[-1]),
            "eventType": payload.get("eventType", kind),
            "topic": message.topic,
            "received": time.time(),
            "received_mono": time.monotonic(),
        }
        with self._cond:
            self._seen.append(event)
            self._cond.notify_all()
        self.events.emit(
            f"cloud_{event['eventType']}",
            "cloud",
            client_id=event["clientId"],
            reason=payload.get("disconnectReason"),
        )
