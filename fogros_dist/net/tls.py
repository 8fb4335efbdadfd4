"""A deployment's own certificate authority and the certificates of its bridges (the link's mTLS).

Every deployment whose link uses TLS or QUIC gets a CA made on the robot when its bridges start.
The CA signs one certificate for the robot bridge and one for each machine bridge; Zenoh then
runs mutually authenticated TLS with that CA as its only private root, so a peer without a
certificate of this deployment cannot open a link to any of its bridges. The CA's private key is
never written anywhere: once every bridge has its certificate, nobody can issue another one, and
the next ``up`` makes a new CA (so a previous deployment's certificates are worthless).

A bridge's credentials are three files in one directory (0700): ``ca.pem`` (the CA's
certificate), ``bridge.pem`` (its certificate) and ``bridge.key`` (its private key, 0600, written
with that mode from the start). A machine's certificate names the addresses the robot connects to
and the machine listens on (IP addresses as IP SANs), so the robot verifies the name of every
machine it connects to (Zenoh's ``verify_name_on_connect``) as well as its CA.

Keys are ECDSA P-256 (a certificate takes about a millisecond to make; rustls accepts them in
PKCS#8). ``cryptography`` is imported only when a CA is made: a bridge that only reads its files
does not load it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fogros_dist.errors import ConfigError

__all__ = [
    "CA_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "BridgeCredentials",
    "DeploymentAuthority",
    "check_credentials",
    "private_dir",
]

CA_FILE = "ca.pem"
CERT_FILE = "bridge.pem"
KEY_FILE = "bridge.key"

# Certificates are made for one deployment and die with its CA (a new one each `up`); a long
# validity keeps a robot that runs for months from losing its link at an arbitrary date.
VALID_DAYS = 3650
# A machine whose clock is behind the robot's must not see its certificate as not yet valid.
CLOCK_SKEW = datetime.timedelta(days=1)
# X.509 caps a common name at 64 characters.
_CN_MAX = 64


@dataclass(frozen=True, kw_only=True)
class BridgeCredentials:
    """Where one bridge's CA certificate, certificate and private key lie (one directory)."""

    directory: Path

    @property
    def ca_certificate(self) -> Path:
        """The deployment CA's certificate: the only private root the bridge trusts."""
        return self.directory / CA_FILE

    @property
    def certificate(self) -> Path:
        """The bridge's own certificate, signed by the deployment CA."""
        return self.directory / CERT_FILE

    @property
    def private_key(self) -> Path:
        """The bridge's private key (0600)."""
        return self.directory / KEY_FILE

    def files(self) -> tuple[Path, Path, Path]:
        """The three files, CA certificate first, private key last."""
        return self.ca_certificate, self.certificate, self.private_key


def private_dir(path: Path) -> Path:
    """Make ``path`` (and its parents) an empty directory only its owner can enter (0700).

    Anything already there goes: credentials of an earlier ``up`` of the same deployment must
    not linger next to the new ones.
    """
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
    path.chmod(0o700)  # mkdir's mode passes through the umask; say it exactly
    return path


class DeploymentAuthority:
    """A certificate authority made for one deployment; its private key lives only in this object.

    Args:
        deployment: the deployment's name (in the CA's subject, for whoever reads a certificate).
    """

    def __init__(self, *, deployment: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._deployment = deployment
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fogros_dist"),
                x509.NameAttribute(NameOID.COMMON_NAME, _cn(f"{deployment} CA")),
            ]
        )
        now = datetime.datetime.now(datetime.timezone.utc)
        public = self._key.public_key()
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            # It signs bridge certificates, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(x509, sign_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def certificate_pem(self) -> bytes:
        """The CA's certificate, PEM-encoded."""
        from cryptography.hazmat.primitives import serialization

        return self._certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, directory: Path, *, name: str, addresses: Sequence[str] = ()) -> BridgeCredentials:
        """Make a key pair and a certificate for one bridge and write its credentials.

        Args:
            directory: made anew, 0700 (see :func:`private_dir`); the three files go there.
            name: the bridge's common name (its machine's name, or the robot).
            addresses: what a peer connecting to this bridge may call it: IP addresses become IP
                SANs, anything else DNS SANs. Zenoh checks the address it connects to against
                them.

        Returns:
            The credentials' paths; the private key is 0600.

        Raises:
            ConfigError: an address can be neither an IP SAN nor a DNS SAN.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, _cn(self._deployment)),
                        x509.NameAttribute(NameOID.COMMON_NAME, _cn(name)),
                    ]
                )
            )
            .issuer_name(self._name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(x509, sign_certificates=False), critical=True)
            # Every bridge listens or connects as its side needs (peers may link either way).
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        sans = _subject_alt_names(x509, addresses)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        credentials = BridgeCredentials(directory=private_dir(directory))
        _write(credentials.ca_certificate, self.certificate_pem, mode=0o644)
        _write(credentials.certificate, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write(credentials.private_key, key_pem, mode=0o600)
        return credentials


def check_credentials(directory: str) -> BridgeCredentials:
    """Check a bridge's credentials before Zenoh reads them, and keep its private key private.

    A key uploaded over SFTP lands with the host's umask (usually 0644) inside the 0700 directory
    the host agent made for it: its mode is set to 0600 here, and the directory's to 0700, before
    the bridge uses them. Files owned by another user are refused, not changed.

    Args:
        directory: ``BridgeSpec.tls_dir`` (absolute, on this machine).

    Returns:
        The credentials' paths.

    Raises:
        ConfigError: the directory or a file is missing, unreadable, not PEM, or the key belongs to
            someone else (one line naming the file and the fix).
    """
    credentials = BridgeCredentials(directory=Path(directory))
    fix = "start the deployment again so it issues new certificates"
    for path in credentials.files():
        try:
            head = path.read_bytes()[:4096]
        except FileNotFoundError:
            msg = f"bridge TLS file {path} does not exist: {fix}"
            raise ConfigError(msg) from None
        except OSError as err:
            msg = f"bridge TLS file {path} is unreadable ({err.strerror}): {fix}"
            raise ConfigError(msg) from None
        if b"-----BEGIN " not in head:
            msg = f"bridge TLS file {path} is not PEM: {fix}"
            raise ConfigError(msg)
    for path, mode in ((credentials.private_key, 0o600), (credentials.directory, 0o700)):
        info = path.stat()
        if info.st_uid != os.geteuid():
            msg = (
                f"bridge TLS {'key' if path.is_file() else 'directory'} {path} belongs to uid "
                f"{info.st_uid}, not to this bridge's user ({os.geteuid()}): {fix}"
            )
            raise ConfigError(msg)
        if stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(mode)
    return credentials


def _write(path: Path, data: bytes, *, mode: int) -> None:
    # O_EXCL in a fresh directory, with the final mode at creation: never readable by others,
    # not even for the moment between open and chmod.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(mode)


def _cn(text: str) -> str:
    return text[:_CN_MAX] or "-"


def _key_usage(x509: Any, *, sign_certificates: bool) -> Any:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=sign_certificates,
        crl_sign=sign_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _subject_alt_names(x509: Any, addresses: Sequence[str]) -> list[Any]:
    names: list[Any] = []
    for address in dict.fromkeys(a.strip("[]") for a in addresses if a):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
            continue
        except ValueError:
            pass
        if not address.isascii() or any(c in address for c in " /:@"):
            msg = (
                f"address {address!r} cannot be named in a certificate: use an IP address or a "
                f"DNS name (letters, digits, '-', '.')"
            )
            raise ConfigError(msg)
        names.append(x509.DNSName(address))
    return names
