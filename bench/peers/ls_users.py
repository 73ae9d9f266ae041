"""Create Label Studio annotator accounts with API tokens, the way its own CLI does.

Runs under Label Studio's Python (its own virtual environment, never Tally's) with
LABEL_STUDIO_BASE_DATA_DIR set, after `label-studio init` created the database. It calls
`label_studio.server._create_user`, the function behind `label-studio init --username
--password --user-token`, once per account in one process, instead of paying Label
Studio's start-up (about a minute on a 2-core machine) once per account.

Reads [{"email": ..., "password": ..., "token": ...}, ...] as JSON on stdin, so generated
secrets never appear on a command line; prints the emails it created.
"""

import argparse
import json
import sys


def main() -> None:
    accounts = json.load(sys.stdin)
    from label_studio import server

    server._setup_env()
    created = []
    for account in accounts:
        args = argparse.Namespace(
            username=account["email"],
            password=account["password"],
            user_token=account["token"],
            quiet_mode=True,
            enable_legacy_api_token=True,
        )
        user = server._create_user(args, {})
        created.append(user.email)
    print(json.dumps({"created": created}))


if __name__ == "__main__":
    main()
