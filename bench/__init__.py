"""The benchmark suite: `python -m bench` runs every scenario of issue 9 beside its baselines
(see bench/__main__.py); the older scripts in this folder still run one area each."""
