"""The Python API: ``agent`` (an ``Agent`` made, fitted, saved, loaded and asked for actions)
and ``functions`` (what the commands do, as functions for code and notebooks). ``scaledql``'s
top level re-exports both (``docs/api.md``)."""
