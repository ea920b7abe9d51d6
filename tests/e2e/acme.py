"""A real ACME server on this machine: Debian's `pebble` (Let's Encrypt's test CA) and its
`pebble-challtestsrv` as the DNS it resolves names with.

    with start_pebble(http_port=8080, https_port=8443) as acme:
        acme.directory        # https://<docker0 gateway>:<port>/dir, what proxy.acmeCA names
        acme.directory_ca     # PEM of the CA of that URL's own certificate (proxy.acmeCARoot)
        acme.roots()          # PEM of the CA that signs the certificates pebble issues
        acme.issued()         # how many certificates it has issued so far

Every name resolves to 127.0.0.1 (challtestsrv's default answer, no IPv6), and pebble's
validation connects to the published ports of the proxy given here: an HTTP-01 challenge
reaches Caddy exactly as a public CA's would reach port 80. The proxy, inside a container,
reaches pebble at the host's address on Docker's default bridge, which its HTTPS certificate
(made here with openssl, signed by a CA made for the run) names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.e2e import infra

TOOLS = ("pebble", "pebble-challtestsrv", "openssl")


@dataclasses.dataclass
class Pebble:
    directory: str
    directory_ca: str
    management: str  # https://127.0.0.1:<port>
    log_path: Path

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.directory_ca)

    def roots(self) -> str:
        """The root pebble issues from (generated when it starts; its management API hands it out)."""
        with urllib.request.urlopen(f"{self.management}/roots/0", context=self._context(), timeout=10) as response:  # noqa: S310
            return response.read().decode()

    def intermediates(self) -> str:
        with urllib.request.urlopen(f"{self.management}/intermediates/0", context=self._context(), timeout=10) as response:  # noqa: S310
            return response.read().decode()

    def issued(self) -> int:
        return len(re.findall(r"Issued certificate serial", self.log_path.read_text(errors="replace")))


def bridge_gateway(ipam_gateways: list[str], interface_addresses: list[str]) -> str | None:
    """The first IPv4 gateway Docker records for its default bridge, else the bridge interface's own
    IPv4 address: on an engine's very first start the record has none (see docker_bridge_gateway)."""
    for address in [*ipam_gateways, *(a.split("/")[0] for a in interface_addresses)]:
        if "." in address:
            return address
    return None


def docker_bridge_gateway() -> str:
    """The host's address on Docker's default bridge (docker0): reachable from every container network.

    moby daemon/daemon_unix.go initBridgeDriver writes the bridge network's IPAM gateway only from an
    address the bridge interface already has (netutils.ElectInterfaceAddresses) or from --bip. On a
    fresh machine docker0 does not exist yet when the engine first starts, so IPAM picks the gateway
    and the network's IPAM config records only the subnet: `docker network inspect bridge` shows no
    Gateway until the engine's next start. docker0 itself has the address all along.
    """
    ipam = infra.docker("network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}").stdout.split()
    name = infra.docker("network", "inspect", "bridge", "--format", '{{index .Options "com.docker.network.bridge.name"}}').stdout.strip()
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", name or "docker0"], capture_output=True, text=True, timeout=10)
    interface = re.findall(r"\binet (\S+)", shown.stdout)
    found = bridge_gateway(ipam, interface)
    if found is None:
        raise infra.InfraError(
            f"Docker's default bridge has no IPv4 gateway: IPAM {ipam}, {name or 'docker0'}: {shown.stdout.strip() or shown.stderr.strip()}"
        )
    return found


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(workdir: Path, address: str) -> None:
    """ca.pem (a CA for the run) and pebble.pem/pebble.key, for `address` and 127.0.0.1."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-days", "2", "-subj", "/CN=cutover e2e ACME directory CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=workdir
    )
    _openssl("req", *ec, "-subj", "/CN=pebble", "-keyout", "pebble.key", "-out", "pebble.csr", cwd=workdir)
    (workdir / "san.cnf").write_text(f"subjectAltName=IP:{address},IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "pebble.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "san.cnf", "-out", "pebble.pem", cwd=workdir)  # fmt: skip


@contextlib.contextmanager
def start_pebble(http_port: int, https_port: int) -> Iterator[Pebble]:
    address = docker_bridge_gateway()
    with tempfile.TemporaryDirectory(prefix="cutover-pebble-") as tmp:
        workdir = Path(tmp)
        _certificates(workdir, address)
        dns, challtest_mgmt, listen, mgmt = (infra.free_port() for _ in range(4))
        config = {
            "pebble": {
                "listenAddress": f"0.0.0.0:{listen}",
                "managementListenAddress": f"127.0.0.1:{mgmt}",
                "certificate": str(workdir / "pebble.pem"),
                "privateKey": str(workdir / "pebble.key"),
                # where its validation connects: the proxy's published ports
                "httpPort": http_port,
                "tlsPort": https_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (workdir / "pebble.json").write_text(json.dumps(config))
        challtest = ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                     "-management", f"127.0.0.1:{challtest_mgmt}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]  # fmt: skip
        pebble = ["pebble", "-config", str(workdir / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"]
        # no random sleeps before validating, and no nonces refused at random (Caddy would retry them: slower, same result)
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PATH": "/usr/bin:/bin"}
        log_path = workdir / "pebble.log"
        with infra._background(challtest, workdir / "challtestsrv.log"):
            infra.wait_for_port(challtest_mgmt)
            with infra._background(pebble, log_path, env=env):
                try:
                    infra.wait_for_port(listen)
                except infra.InfraError:
                    raise infra.InfraError(f"pebble did not start: {log_path.read_text()[-2000:]}") from None
                yield Pebble(f"https://{address}:{listen}/dir", (workdir / "ca.pem").read_text(), f"https://127.0.0.1:{mgmt}", log_path)
