"""Send HL7 files to an MLLP listener with the `hl7` package's client and print each ACK as a JSON line.

Usage: python3 send_files.py HOST PORT FILE...

Files are read the way the package's `mllp_send --loose` reads them (`hl7.client.read_loose`: CR, LF or CRLF
segment ends, one or many messages per file) and sent with `hl7.client.MLLPClient.send_message` over one
connection. Each ACK is printed as {"file": ..., "ack": <ACK text, MLLP framing removed>}.
"""

import io
import json
import sys

from hl7.client import MLLPClient, read_loose


def main() -> int:
    host, port, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    with MLLPClient(host, port) as client:
        for name in files:
            with open(name, "rb") as f:
                stream = io.BytesIO(f.read())
            for message in read_loose(stream):
                ack = client.send_message(message)
                text = ack.strip(b"\x0b\x1c\r").decode("latin-1")
                print(json.dumps({"file": name, "ack": text}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
