"""The one-command demo: broker, seeded hub and simulated edges on this machine.

Kept free of imports: ``python -m fabrique.demo.broker`` runs in its own process.
"""
