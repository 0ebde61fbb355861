#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A command-line QMP client for the VM tests, on the qemu.qmp package.

Usage:
  qmp.py SOCKET COMMAND [JSON-ARGUMENTS]   run a QMP command, print its return
                                           value as JSON (exit 1 on an error)
  qmp.py SOCKET hmp 'HMP COMMAND LINE'     run a human monitor command, print
                                           its output

qemu.qmp is installed in the project's venv by scripts/setup.sh; the test VM
sees that venv at the host's path, so run this with the venv's python3.
"""

import asyncio
import json
import sys

from qemu.qmp import QMPClient, QMPError

# A command that has not answered in this many seconds has failed.
TIMEOUT = 60


async def run(path, cmd, args):
    qmp = QMPClient("rmdev-test")
    await qmp.connect(path)
    try:
        return await asyncio.wait_for(qmp.execute(cmd, args), TIMEOUT)
    finally:
        try:
            await qmp.disconnect()
        except (QMPError, OSError, EOFError):
            # QEMU closes the socket itself after `quit`.
            pass


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, cmd = sys.argv[1], sys.argv[2]
    if cmd == "hmp":
        cmd, args = "human-monitor-command", {"command-line": sys.argv[3]}
    else:
        args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    try:
        ret = asyncio.run(run(path, cmd, args))
    except (QMPError, OSError, EOFError, asyncio.TimeoutError) as e:
        print(f"qmp.py: {cmd}: {e}", file=sys.stderr)
        return 1
    if isinstance(ret, str):
        print(ret, end="")
    else:
        print(json.dumps(ret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
