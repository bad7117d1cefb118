"""Fixtures every folder of the rig's own tests may use: the real peers of `tests/peers/`.

`tests.peers.drivers`: a pty "device", ser2net, an OpenSSH sshd. `tests.peers.bench`: a bench file around
those parts with a scripted hub, the ipecmd stand-in and a variant. Importing the fixtures here makes
them available by name to the driver, orchestration and command-line tests alike.
"""

from tests.peers.bench import bench_file, hub, routerfs, stand_in, variant
from tests.peers.drivers import pty_device, ser2net, sshd

__all__ = ["bench_file", "hub", "pty_device", "routerfs", "ser2net", "sshd", "stand_in", "variant"]
