#!/usr/bin/env python3
"""Write .env with freshly generated secrets where they are missing; never change a value.

    python scripts/write_env.py            # DJANGO_SECRET_KEY, TALLY_LEDGER_MAC_KEY,
                                           # TALLY_CHECKPOINT_SIGNING_KEY (make demo)
    python scripts/write_env.py --docker   # also POSTGRES_PASSWORD, TALLY_APP_DB_PASSWORD (docker compose)

The file is created with mode 600 (and set to 600 if it already exists): it holds secrets.
Nothing here has a default value: every secret is `secrets.token_urlsafe`.
"""

import argparse
import base64
import os
import secrets
import stat
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_keys(path: Path) -> set[str]:
    keys = set()
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                keys.add(line.split("=", 1)[0].removeprefix("export ").strip())
    return keys


def ensure_env(path: Path, *, docker: bool = False) -> list[str]:
    """Append the missing secrets to `path`; returns the names it added."""
    wanted = {
        "DJANGO_SECRET_KEY": lambda: secrets.token_urlsafe(64),
        "TALLY_LEDGER_MAC_KEY": lambda: secrets.token_urlsafe(48),
        # Ed25519 private key (32 random bytes, base64) that signs the ledger's checkpoints.
        # Operators who want it apart from the MAC key keep it in a file instead
        # (TALLY_CHECKPOINT_SIGNING_KEY_FILE; docs/security-operations.md).
        "TALLY_CHECKPOINT_SIGNING_KEY": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    if docker:
        wanted["POSTGRES_PASSWORD"] = lambda: secrets.token_urlsafe(32)
        wanted["TALLY_APP_DB_PASSWORD"] = lambda: secrets.token_urlsafe(32)
    present = read_keys(path)
    missing = [name for name in wanted if name not in present]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        if missing:
            text = "" if not path.stat().st_size or path.read_text().endswith("\n") else "\n"
            text += "".join(f"{name}={wanted[name]()}\n" for name in missing)
            os.write(fd, text.encode())
    finally:
        os.close(fd)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker", action="store_true", help="also POSTGRES_PASSWORD for docker compose")
    parser.add_argument("--path", type=Path, default=ROOT / ".env", help="default: .env in the repository root")
    args = parser.parse_args(argv)
    added = ensure_env(args.path, docker=args.docker)
    if added:
        print(f"{args.path}: generated {', '.join(added)} (mode 600)")
    else:
        print(f"{args.path}: secrets already present, left unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
