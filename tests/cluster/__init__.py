"""Tests of `reactor.cluster`: the fleet and Slurm's commands, against a real cluster."""
