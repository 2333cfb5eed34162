"""``python -m ray_cluster.cli``: the same as the ``medray`` console script."""

from ray_cluster.cli.main import main

main()
