#!/usr/bin/python3
"""A real local syslog receiver for audit_syslog.test.mjs: binds a unix
datagram socket at PATH, as a syslog daemon binds /dev/log, and prints each
datagram it receives as one JSON line {"message": TEXT} on stdout. Prints
{"ready": PATH} once it is bound; stops on SIGTERM.
"""
import json
import os
import socket
import sys


def main():
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    print(json.dumps({"ready": path}), flush=True)
    while True:
        datagram = receiver.recv(65536)
        print(json.dumps({"message": datagram.decode("utf-8", "replace")}), flush=True)


if __name__ == "__main__":
    main()
