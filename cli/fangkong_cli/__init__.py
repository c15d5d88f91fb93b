"""The ``fangkong`` command. It is the one place that knows all four services."""
