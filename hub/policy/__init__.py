"""The access policy: a pure decision function and the offline snapshot compiler."""
