"""A TCP proxy in front of the test database, so tests simulate outages without ever stopping the
shared PostgreSQL server: ``down()`` drops every connection and refuses new ones (database gone),
``hang()`` holds every byte (database not answering), ``up()`` restores service."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class DatabaseProxy:
    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@" if parts.username else ""
        self.url = urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))  # the database, via the proxy
        self.state = "up"
        self.flowing = threading.Event()
        self.flowing.set()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.flowing.wait()
        if self.state == "down":
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        with self.lock:
            self.sockets |= {client, upstream}
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                if self.state == "down":
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def down(self) -> None:
        self.state = "down"
        self.flowing.set()  # held pumps wake up and find their sockets closed
        with self.lock:
            sockets, self.sockets = self.sockets, set()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def hang(self) -> None:
        self.state = "hang"
        self.flowing.clear()

    def up(self) -> None:
        self.state = "up"
        self.flowing.set()

    def close(self) -> None:
        self.down()
        self.listener.close()
