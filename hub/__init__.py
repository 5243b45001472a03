"""The hub: access policy, usage ledger, live machine state, REST API and web UI."""
