"""Quarantine: policies as data, orders and stages, sites and beds, transfers, check-ins, cases."""
