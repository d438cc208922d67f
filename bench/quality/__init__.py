"""Quality benchmark: do clrfind's bounds train better than the peers' suggestions? `python -m bench.quality.run`."""
