# SPDX-License-Identifier: MIT OR Apache-2.0
"""TLS in front of a plaintext Kafka broker, for tests/security.rs (tansu 0.6.0 takes
--cert/--key but never uses them).

    tls_proxy.py LISTEN_PORT BACKEND_PORT CERT_PEM KEY_PEM

Accepts TLS on 127.0.0.1:LISTEN_PORT, forwards the plaintext to 127.0.0.1:BACKEND_PORT and
prints "ready" once it listens.
"""
import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer, backend_port):
    try:
        backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, backend_writer), pipe(backend_reader, client_writer))


async def main():
    listen_port, backend_port, cert, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, backend_port), "127.0.0.1", listen_port, ssl=context
    )
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
