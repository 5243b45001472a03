"""Composition root of the ``fabrique`` command: wires hub, edge and demo together."""
