"""Verifies one webhook delivery with the Standard Webhooks reference library (PyPI `standardwebhooks`).

Reads a JSON object {"secret": ..., "headers": {...}, "body": "..."} on stdin; prints "verified" and exits 0 when
the signature checks out, prints the reason and exits 1 otherwise.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    request = json.load(sys.stdin)
    try:
        Webhook(request["secret"]).verify(request["body"], request["headers"])
    except WebhookVerificationError as err:
        print(f"not verified: {err}")
        return 1
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
