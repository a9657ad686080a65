"""Thin adapters from the domain packages to the pipeline runtime, one stage per module."""
