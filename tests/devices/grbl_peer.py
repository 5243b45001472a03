"""The scripted GRBL 1.1 peer, now a product module: :mod:`devices.grbl.simulated`.

Kept so the driver tests import it from where they always did.
"""

from devices.grbl.simulated import BANNER, GrblPeer, PeerState, Received

__all__ = ["BANNER", "GrblPeer", "PeerState", "Received"]
