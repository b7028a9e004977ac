#!/usr/bin/python3
"""A real local SMTP server for incident_send.test.mjs: Debian's
python3-aiosmtpd (scripts/setup.sh), with STARTTLS and AUTH when asked.

Every message it accepts is written, whole, to OUT/NNNNNN.json (written to a
temporary name, then renamed): the time it arrived, the envelope sender and
recipients, the exact bytes of the message (base64), whether the session was
under TLS and logged in. Recipients given with --refuse are refused with 550,
those given with --defer with 451; messages to those given with --reject-data
are refused after their data with 554. Prints "listening PORT" once it
accepts connections; stops on SIGTERM.
"""
import argparse
import asyncio
import base64
import json
import os
import signal
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Recorder:
    def __init__(self, out, refuse, defer, reject_data):
        self.out = out
        self.refuse = set(refuse)
        self.defer = set(defer)
        self.reject_data = set(reject_data)
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return '550 5.1.1 mailbox unavailable'
        if address in self.defer:
            return '451 4.3.0 try again later'
        envelope.rcpt_tos.append(address)
        return '250 OK'

    async def handle_DATA(self, server, session, envelope):
        arrived = time.time()
        if self.reject_data.intersection(envelope.rcpt_tos):
            return '554 5.6.0 message refused'
        with self.lock:
            self.count += 1
            number = self.count
        record = {
            'arrived_ms': arrived * 1000,
            'mail_from': envelope.mail_from,
            'rcpt_tos': envelope.rcpt_tos,
            'content_b64': base64.b64encode(envelope.original_content).decode('ascii'),
            'tls': session.ssl is not None,
            'authenticated': bool(session.authenticated),
        }
        path = os.path.join(self.out, f'{number:06d}.json')
        with open(path + '.tmp', 'w') as file:
            json.dump(record, file)
        os.rename(path + '.tmp', path)
        return '250 2.0.0 accepted'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--tls-cert')
    parser.add_argument('--tls-key')
    parser.add_argument('--auth', help='USER:PASSWORD required to send')
    parser.add_argument('--refuse', action='append', default=[])
    parser.add_argument('--defer', action='append', default=[])
    parser.add_argument('--reject-data', action='append', default=[],
                        help='accept the recipient, refuse the message after its data (554)')
    args = parser.parse_args()

    parameters = {}
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        parameters.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, password = args.auth.split(':', 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login.decode('utf-8') == user and
                  auth_data.password.decode('utf-8') == password)
            return AuthResult(success=ok, handled=False)

        parameters.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=bool(args.tls_cert))
    recorder = Recorder(args.out, args.refuse, args.defer, args.reject_data)
    controller = Controller(recorder, hostname='127.0.0.1', port=args.port, **parameters)
    controller.start()
    print(f'listening {args.port}', flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == '__main__':
    main()
