"""Local tooling: Lambda sandbox emulator, embedded HEC receiver, demo. Never shipped in the layer."""
