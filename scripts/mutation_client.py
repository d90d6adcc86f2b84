"""cosmic-ray's test command when a fork server runs (scripts/mutation_server.py): sends the
pytest arguments, exits with the tests' status. Imports only what `python -S -I` starts with."""

import json
import socket
import sys


def main(argv: list[str]) -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(argv[0])
    conn.sendall(json.dumps(argv[1:]).encode() + b"\n")
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            return 4  # the server lost the run: count it as a failed test run
        answer += chunk
    return int(answer)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
