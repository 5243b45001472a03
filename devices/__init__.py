"""Device drivers (OctoPrint, GRBL, relays, smart plugs, PC lock, badge readers).

A plain library: typed values parsed at the boundary, a small error hierarchy, no
MQTT, web or SQL code. Imports nothing else of fabrique.
"""
