"""The lab's servers over TLS, with certificates of the lab's own (`tls = true`).

`lab up` makes, with GnuTLS's certtool, in {state_dir}/pki:
- ca/: the lab's certificate authority (cacert.pem, its key);
- client/: cacert.pem, clientcert.pem, clientkey.pem: what a console (or a server's libvirtd
  migrating to another) presents: qemu+tls://ADDRESS/system?pkipath={state_dir}/pki/client;
- SERVER/: each server's certificate (its name and both its addresses), which its libvirtd
  listens with on its management address, and QEMU's copies for migrations with --tls
  (ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem).
"""

from __future__ import annotations

from pathlib import Path

from xencenter_lite.lab.config import LabConfig
from xencenter_lite.lab.system import run

DAYS = 3650


def pki_dir(config: LabConfig) -> Path:
    return config.state_dir / "pki"


def client_dir(config: LabConfig) -> Path:
    return pki_dir(config) / "client"


def server_dir(config: LabConfig, server: str) -> Path:
    return pki_dir(config) / server


def qemu_dir(config: LabConfig, server: str) -> Path:
    """QEMU's migration TLS directory of `server` (its file names are QEMU's)."""
    return server_dir(config, server) / "qemu"


def tls_uri(config: LabConfig, server: str) -> str:
    return (f"qemu+tls://{config.address(server, config.management_network)}/system"
            f"?pkipath={client_dir(config)}")


def _template(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _key(path: Path) -> None:
    if not path.exists():
        run(["certtool", "--generate-privkey", "--outfile", str(path)])
        path.chmod(0o600)


def _signed(config: LabConfig, out: Path, key: Path, template: Path) -> None:
    ca = pki_dir(config) / "ca"
    run(["certtool", "--generate-certificate", "--load-privkey", str(key),
         "--load-ca-certificate", str(ca / "cacert.pem"),
         "--load-ca-privkey", str(ca / "cakey.pem"), "--template", str(template),
         "--outfile", str(out)])


def prepare(config: LabConfig) -> None:
    """The CA, the client's certificate, and each server's (before the servers start)."""
    ca = pki_dir(config) / "ca"
    ca.mkdir(mode=0o700, parents=True, exist_ok=True)
    _key(ca / "cakey.pem")
    if not (ca / "cacert.pem").exists():
        template = _template(ca / "ca.info", [
            f'cn = "xencenter-lite lab {config.name} CA"', "ca", "cert_signing_key",
            f"expiration_days = {DAYS}"])
        run(["certtool", "--generate-self-signed", "--load-privkey", str(ca / "cakey.pem"),
             "--template", str(template), "--outfile", str(ca / "cacert.pem")])
    cacert = (ca / "cacert.pem").read_text()

    client = client_dir(config)
    client.mkdir(mode=0o700, exist_ok=True)
    (client / "cacert.pem").write_text(cacert)
    _key(client / "clientkey.pem")
    if not (client / "clientcert.pem").exists():
        _signed(config, client / "clientcert.pem", client / "clientkey.pem",
                _template(client / "client.info", [
                    f'cn = "xencenter-lite lab {config.name} console"', "tls_www_client",
                    "encryption_key", "signing_key", f"expiration_days = {DAYS}"]))
    for server in config.servers:
        here = server_dir(config, server.name)
        here.mkdir(mode=0o700, exist_ok=True)
        _key(here / "serverkey.pem")
        if not (here / "servercert.pem").exists():
            addresses = [f"ip_address = {config.address(server.name, n.name)}"
                         for n in config.networks]
            _signed(config, here / "servercert.pem", here / "serverkey.pem",
                    _template(here / "server.info", [
                        f'cn = "{server.name}"', f'dns_name = "{server.name}"', *addresses,
                        "tls_www_server", "tls_www_client", "encryption_key",
                        "signing_key", f"expiration_days = {DAYS}"]))
        # QEMU's migration TLS: this server is the server of an incoming migration and the
        # client of an outgoing one, with the same certificate.
        qemu = qemu_dir(config, server.name)
        qemu.mkdir(mode=0o700, exist_ok=True)
        for name, source in (("ca-cert.pem", ca / "cacert.pem"),
                             ("server-cert.pem", here / "servercert.pem"),
                             ("server-key.pem", here / "serverkey.pem"),
                             ("client-cert.pem", here / "servercert.pem"),
                             ("client-key.pem", here / "serverkey.pem")):
            (qemu / name).write_bytes(source.read_bytes())


def libvirtd_settings(config: LabConfig, server: str) -> list[str]:
    """libvirtd.conf lines: listen for TLS on the management address with the server's
    certificate (clients must have one signed by the lab's CA)."""
    here = server_dir(config, server)
    return [
        "listen_tls = 1",
        "listen_tcp = 0",
        f'listen_addr = "{config.address(server, config.management_network)}"',
        f'ca_file = "{pki_dir(config) / "ca" / "cacert.pem"}"',
        f'cert_file = "{here / "servercert.pem"}"',
        f'key_file = "{here / "serverkey.pem"}"',
        'auth_tls = "none"',
    ]


def qemu_settings(config: LabConfig, server: str) -> list[str]:
    return [f'migrate_tls_x509_cert_dir = "{qemu_dir(config, server)}"',
            "migrate_tls_x509_verify = 1"]
