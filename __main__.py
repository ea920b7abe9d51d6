"""cutover: build the app image, release it on the host with zero downtime, record the release.

Order of one `pulumi up` (each step waits for the one before):
image -> host pulls the digest -> migration -> new web containers, healthy ->
proxy switch -> verification through the proxy -> old containers deleted.
"""

import os

import pulumi

from components.accessories import Accessories, AccessoriesArgs
from components.config import ConfigError, load_config
from components.github_pipeline import GitHubPipeline, GitHubPipelineArgs
from components.host import DockerHost, DockerHostArgs
from components.image import AppImage, AppImageArgs
from components.proxy import EdgeProxy, EdgeProxyArgs
from components.release_plan import ReleasePlan
from components.switch import TrafficSwitch, TrafficSwitchArgs
from components.web import WebRelease, WebReleaseArgs

try:
    cfg = load_config()
except ConfigError as error:
    # One message with every problem, before any resource is registered.
    raise SystemExit(str(error)) from None

plan = ReleasePlan(cfg, os.environ)
image = AppImage("app", AppImageArgs(cfg.image, deploy_ref=plan.deploy_ref))
host = DockerHost("host", DockerHostArgs(cfg.host, ready=plan.ready))
proxy = EdgeProxy("proxy", EdgeProxyArgs(cfg, host))
accessories = Accessories("accessories", AccessoriesArgs(cfg, host))
web = WebRelease(
    "web",
    WebReleaseArgs(
        cfg, host, image_ref=image.ref, version=plan.version, git_sha=plan.git_sha,
        edge_network=proxy.network, private_network=accessories.network, accessories=accessories.containers,
    ),
)  # fmt: skip
switch = TrafficSwitch(
    "switch",
    TrafficSwitchArgs(
        cfg, host, proxy_name=proxy.name, upstreams=web.names, version=plan.version, after=[*web.containers, proxy.container]
    ),
)
if cfg.github.enabled:
    GitHubPipeline("github", GitHubPipelineArgs(cfg, ready=plan.ready))

release, releases = plan.records(image.ref)
# Recorded only once the switch and its verification succeeded.
pulumi.export("release", pulumi.Output.all(release, switch.done.id).apply(lambda a: a[0]))
pulumi.export("releases", pulumi.Output.all(releases, switch.done.id).apply(lambda a: a[0]))
pulumi.export("url", cfg.public_url)
pulumi.export("containers", web.names)
