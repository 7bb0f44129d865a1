#!/usr/bin/env python3
"""qga.py: the command channel into the VMs of machine/vms.sh, through the QEMU guest agent.

Each VM runs qemu-guest-agent on a virtio-serial port whose other end is a unix socket on the
host (qemu -chardev socket,path=SOCKET,server=on). No network is involved: the host never
reaches a VM's shell over IP.

  qga.py SOCKET wait [TIMEOUT_S]         wait until the agent answers (exit 1 on time-out)
  qga.py SOCKET exec [--timeout S] [--env K=V]... -- PROGRAM [ARG]...
                                         run PROGRAM in the VM as root; its stdout and stderr
                                         are printed, its exit status is this one's (124 on
                                         time-out, 128+N when killed by signal N)

Only the standard library; the agent's protocol is JSON lines (guest-sync-delimited,
guest-exec, guest-exec-status).
"""

import base64
import json
import os
import random
import socket
import sys
import time


class Agent:
    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, obj, sync_byte=False):
        data = json.dumps(obj).encode() + b"\n"
        if sync_byte:
            # 0xFF makes the agent drop whatever half-read request it holds.
            data = b"\xff" + data
        self.sock.sendall(data)

    def read_object(self, deadline):
        """The next JSON object from the agent, or None at the deadline."""
        while True:
            # The agent puts 0xFF before the answer to guest-sync-delimited; objects end in \n.
            self.buf = self.buf.replace(b"\xff", b"")
            line, sep, rest = self.buf.partition(b"\n")
            if sep:
                self.buf = rest
                line = line.strip()
                if not line:
                    continue
                try:
                    return json.loads(line)
                except ValueError:
                    continue  # leftovers of an earlier client: skip
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise ConnectionError("the agent's socket closed")
            self.buf += chunk

    def sync(self, timeout):
        """Resynchronise (drop stale answers); True when the agent answered in time."""
        deadline = time.monotonic() + timeout
        sent = set()
        while time.monotonic() < deadline:
            ident = random.randrange(1, 2**31)
            sent.add(ident)
            self.send({"execute": "guest-sync-delimited", "arguments": {"id": ident}}, True)
            step = min(deadline, time.monotonic() + 2.0)
            while True:
                obj = self.read_object(step)
                if obj is None:
                    break
                if obj.get("return") in sent:
                    return True
        return False

    def call(self, command, arguments=None, timeout=30.0):
        request = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        self.send(request)
        deadline = time.monotonic() + timeout
        while True:
            obj = self.read_object(deadline)
            if obj is None:
                raise TimeoutError(f"{command}: no answer in {timeout} s")
            if "error" in obj:
                raise RuntimeError(f"{command}: {obj['error']}")
            if "return" in obj:
                return obj["return"]


def wait(path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            agent = Agent(path, 5.0)
        except OSError:
            time.sleep(1.0)
            continue
        try:
            if agent.sync(min(10.0, max(1.0, deadline - time.monotonic()))):
                return 0
        except (OSError, ConnectionError):
            time.sleep(1.0)
        finally:
            agent.close()
    return 1


def run(path, argv, env, timeout):
    agent = Agent(path, 10.0)
    try:
        if not agent.sync(min(30.0, timeout)):
            print("qga: the agent does not answer", file=sys.stderr)
            return 125
        args = {"path": argv[0], "arg": argv[1:], "capture-output": True}
        if env:
            args["env"] = env
        pid = agent.call("guest-exec", args)["pid"]
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            status = agent.call("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                print(f"qga: {argv[0]} still runs after {timeout} s", file=sys.stderr)
                return 124
            time.sleep(pause)
            pause = min(0.25, pause * 2)
        for key, stream in (("out-data", sys.stdout.buffer), ("err-data", sys.stderr.buffer)):
            if key in status:
                stream.write(base64.b64decode(status[key]))
                stream.flush()
        if status.get("out-truncated") or status.get("err-truncated"):
            print("qga: output truncated by the agent", file=sys.stderr)
        if "signal" in status:
            return 128 + int(status["signal"])
        return int(status.get("exitcode", 125))
    finally:
        agent.close()


def main(argv):
    if len(argv) < 3 or argv[2] not in ("wait", "exec"):
        print(__doc__, file=sys.stderr)
        return 2
    path, verb, rest = argv[1], argv[2], argv[3:]
    if verb == "wait":
        return wait(path, float(rest[0]) if rest else 300.0)
    env, timeout = [], 300.0
    while rest and rest[0] != "--":
        if rest[0] == "--timeout" and len(rest) > 1:
            timeout = float(rest[1])
            rest = rest[2:]
        elif rest[0] == "--env" and len(rest) > 1:
            env.append(rest[1])
            rest = rest[2:]
        else:
            print(__doc__, file=sys.stderr)
            return 2
    if not rest[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    if env:
        env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + env
    return run(path, rest[1:], env, timeout)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv))
