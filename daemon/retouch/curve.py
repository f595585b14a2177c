"""ZeroMQ CURVE keys for remote use (`retouch keys`, `retouch serve --listen ADDR --curve`).

Loopback needs none of this: the HMAC key in the 0600 connection file is enough there. A daemon that listens on
any other address encrypts and authenticates the transport with CURVE and only lets in clients whose public key
lies in `<keys dir>/authorized/`. Layout of the keys dir (`RETOUCH_KEYS_DIR`, default
`<user config dir>/retouch/keys`):

    server.key  server.key_secret          the daemon's key pair
    authorized/<name>.key                  public keys of the clients allowed in
    clients/<name>.key_secret              a client key pair (copy it to the remote machine)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from .errors import RetouchError


class CurveKeyError(RetouchError):
    code = "bad_keys"


def keys_dir() -> Path:
    override = os.environ.get("RETOUCH_KEYS_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("retouch", appauthor=False)) / "keys"


def create_keys(folder: Path, client: str = "client") -> dict[str, Path]:
    """Make the server key pair (once) and a client key pair named `client`, authorized at once."""
    if not zmq.has("curve"):
        raise CurveKeyError("this libzmq was built without CURVE support")
    for sub in (folder, folder / "authorized", folder / "clients"):
        sub.mkdir(parents=True, exist_ok=True)
        os.chmod(sub, 0o700)
    server_public, server_secret = folder / "server.key", folder / "server.key_secret"
    if not server_secret.exists():
        zmq.auth.create_certificates(str(folder), "server")
    client_public, client_secret = zmq.auth.create_certificates(str(folder / "clients"), client)
    authorized = folder / "authorized" / f"{client}.key"
    Path(client_public).replace(authorized)
    for path in (server_secret, Path(client_secret)):
        os.chmod(path, 0o600)
    return {"server_public": server_public, "server_secret": server_secret, "client_public": authorized,
            "client_secret": Path(client_secret)}


def load_pair(secret_file: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(str(secret_file))
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"cannot read the CURVE key {secret_file}: {exc}") from None
    if secret is None:
        raise CurveKeyError(f"{secret_file} holds no secret key (use the .key_secret file)")
    return public, secret


@dataclass
class CurveKeys:
    server_public: bytes
    server_secret: bytes
    authorized: Path

    @classmethod
    def load(cls, folder: Path | None = None) -> CurveKeys:
        folder = folder or keys_dir()
        secret_file = folder / "server.key_secret"
        if not secret_file.exists():
            raise CurveKeyError(f"no server key in {folder}: create one with `retouch keys`")
        public, secret = load_pair(secret_file)
        return cls(public, secret, folder / "authorized")

    def start(self, ctx: zmq.Context, router: zmq.Socket) -> ThreadAuthenticator:
        """Make `router` a CURVE server that admits only the authorized clients' keys."""
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=str(self.authorized))
        router.curve_secretkey = self.server_secret
        router.curve_publickey = self.server_public
        router.curve_server = True
        return auth
