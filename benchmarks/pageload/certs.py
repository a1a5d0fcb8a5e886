"""One certificate for a whole page-load run, trusted by every client.

The servers' own generated certificate is new for every server start, so a browser launched
once per run could not trust it by its key hash. Here one CA and one leaf certificate (naming
the delay line's server address and the loopback names) are made per run: the servers load it
(`--certfile/--keyfile`), the Python client trusts the CA, and Chromium trusts the leaf's public
key by its SHA-256 hash (`--ignore-certificate-errors-spki-list`, base64 of the hash of the
DER SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from benchmarks.net.spec import SERVER_ADDRESS

NAMES = (SERVER_ADDRESS, "127.0.0.1", "localhost")


@dataclass(frozen=True)
class RunCertificate:
    certfile: Path  # the leaf's chain, PEM
    keyfile: Path
    ca_path: Path
    spki_sha256: str  # base64, as Chromium's flag wants it


def make_certificate(folder: Path, names: tuple[str, ...] = NAMES) -> RunCertificate:
    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert(*names)
    certfile, keyfile, ca_path = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    keyfile.write_bytes(leaf.private_key_pem.bytes())
    keyfile.chmod(0o600)
    ca_path.write_bytes(ca.cert_pem.bytes())
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
    return RunCertificate(certfile, keyfile, ca_path, digest)
