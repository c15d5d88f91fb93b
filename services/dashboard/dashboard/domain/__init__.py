"""Pure rules of the dashboard service: no IO, no framework."""
