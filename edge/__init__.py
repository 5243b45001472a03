"""The edge agent: badge to machine, journal, offline decisions."""
