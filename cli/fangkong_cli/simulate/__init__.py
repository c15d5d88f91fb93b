"""``fangkong simulate``: outbreaks played through the public HTTP APIs."""
