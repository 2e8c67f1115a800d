"""A test CA and a server certificate for 127.0.0.1 / localhost, made with openssl."""

from __future__ import annotations

import ssl
from pathlib import Path

from ._proc import run_quiet, subdir

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# The extensions (basicConstraints, keyUsage, SKI/AKI) are the ones Python 3.13's VERIFY_X509_STRICT asks for.
# EC P-256 keys: generating two RSA-2048 keys takes most of a second, these take milliseconds.
NEWKEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]

SERVER_EXT = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""


class Certs:
    """Files in WORKDIR/certs: ca.pem, ca.key, server.pem, server.key and bundle.pem (system CAs + test CA,
    for SSL_CERT_FILE and REQUESTS_CA_BUNDLE). create() makes them once; it is idempotent."""

    def __init__(self, workdir: Path) -> None:
        self.dir = Path(workdir) / "certs"
        self.ca = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self.cert = self.dir / "server.pem"
        self.key = self.dir / "server.key"
        self.bundle = self.dir / "bundle.pem"

    def create(self) -> Certs:
        if self.bundle.exists():
            return self
        d = subdir(self.dir.parent, self.dir.name)
        log = d / "openssl.log"
        run_quiet(["openssl", "req", "-x509", *NEWKEY, "-nodes", "-days", "3650",
                   "-subj", "/CN=TMS test bed CA", "-keyout", self.ca_key, "-out", self.ca,
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign"], log, "openssl CA")
        csr, ext = d / "server.csr", d / "server.ext"
        run_quiet(["openssl", "req", *NEWKEY, "-nodes", "-subj", "/CN=localhost",
                   "-keyout", self.key, "-out", csr], log, "openssl server key")
        ext.write_text(SERVER_EXT)
        run_quiet(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                   "-CAcreateserial", "-days", "3650", "-extfile", ext, "-out", self.cert], log,
                  "openssl server certificate")
        for leftover in (csr, ext, d / "ca.srl"):
            leftover.unlink(missing_ok=True)
        # read by node and by the daemons after they drop root; a test key only
        for f in (self.ca, self.cert, self.key):
            f.chmod(0o644)
        system = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b""
        self.bundle.write_bytes(system + self.ca.read_bytes())
        self.bundle.chmod(0o644)
        return self

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA (hostname 127.0.0.1 or localhost)."""
        return ssl.create_default_context(cafile=str(self.ca))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx
