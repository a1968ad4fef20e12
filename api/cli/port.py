"""``cdms serve`` checks its port before any start-up work: a busy port fails at once."""

from __future__ import annotations

import errno
import socket

from db.errors import CdmsError, ConfigError


class PortInUseError(CdmsError):
    code = "PORT_IN_USE"


def _not_here(host: str, port: int, why: str) -> ConfigError:
    """The host is the setting at fault, not the port: a name that does not resolve, or
    an address that is not this machine's."""
    return ConfigError(
        f"cannot listen on {host}:{port}: {why}; give an address of this machine"
        " (--host or CDMS_HOST, e.g. 127.0.0.1 or 0.0.0.0)",
        host=host,
    )


def check_port(host: str, port: int) -> None:
    """Raise PortInUseError if ``host:port`` cannot be bound (as uvicorn binds it, with
    SO_REUSEADDR, so a port only in TIME_WAIT counts as free)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise _not_here(host, port, str(exc.strerror)) from None
    except UnicodeError:  # the IDNA codec: an empty label, or one over 63 characters
        raise _not_here(host, port, "not a valid host name") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"port {port} on {host} is already in use; stop what listens there or"
                    " choose another port (--port or CDMS_PORT)",
                    port=port,
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise _not_here(host, port, str(exc.strerror)) from None
            raise PortInUseError(
                f"cannot bind {host}:{port}: {exc.strerror or exc}", port=port
            ) from None
