"""Local tooling: Lambda emulator, embedded HEC receiver, demo. Never shipped in the layer."""
