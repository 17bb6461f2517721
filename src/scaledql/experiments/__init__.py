"""Experiments built from many runs: studies (arms × seeds × budget) and their claims."""
