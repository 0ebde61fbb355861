#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A minimal QMP client for the VM tests.

Usage:
  qmp.py SOCKET COMMAND [JSON-ARGUMENTS]   run a QMP command, print its return
                                           value as JSON (exit 1 on an error)
  qmp.py SOCKET hmp 'HMP COMMAND LINE'     run a human monitor command, print
                                           its output

Only the standard library is used: the test VM runs the host's Python.
"""

import json
import socket
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, cmd = sys.argv[1], sys.argv[2]
    if cmd == "hmp":
        cmd, args = "human-monitor-command", {"command-line": sys.argv[3]}
    else:
        args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    f = s.makefile("rw")

    def reply():
        # Skip asynchronous events until the command's answer.
        while True:
            line = f.readline()
            if not line:
                raise EOFError("QMP closed the connection")
            msg = json.loads(line)
            if "return" in msg or "error" in msg:
                return msg

    json.loads(f.readline())  # The greeting.
    for c, a in (("qmp_capabilities", {}), (cmd, args)):
        f.write(json.dumps({"execute": c, "arguments": a}) + "\n")
        f.flush()
        msg = reply()
    if "error" in msg:
        print(msg["error"].get("desc", msg["error"]), file=sys.stderr)
        return 1
    ret = msg["return"]
    print(ret if isinstance(ret, str) else json.dumps(ret), end="" if isinstance(ret, str) else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
