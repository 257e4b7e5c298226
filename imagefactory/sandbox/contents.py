"""What a sandbox AMI holds: the build whose packed root filesystem is its content, for whichever account
launches it (the owner, or a student it is shared with, who sees none of the owner's tags).

On AWS an instance boots its AMI's snapshot, whoever owns the AMI. Here the content of an AMI is the packed
rootfs of the build it came from: its `imagefactory:build-id` tag (the owner's; `share`'s copies carry it),
else the AMI it was copied from (CopyImage's source, recorded by `policy`), followed to the first AMI that
names its build. The emulator answers that on its own path, for an account that may launch the AMI (the
same rule as DescribeImages and RunInstances):

    GET /_imagefactory/image-content?region=R&image=AMI&account=ACCOUNT
        200 {"image": AMI, "build_id": ID, "via": [AMI, ...]}   404 {"error": "..."}

`answer` runs in the server (moto's models); `build_of` is the caller's side (no moto, no boto3).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from imagefactory.errors import SandboxError
from imagefactory.tags import BUILD_ID_TAG

CONTENT_PATH = "/_imagefactory/image-content"
_MAX_HOPS = 10
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever HTTP_PROXY says


# ------------------------------------------------------------------------------------------ in the server
def _find(region: str, ami_id: str) -> Any:
    """The AMI in whichever account owns it (no backend is made for a region nobody used)."""
    from moto.ec2.models import ec2_backends

    for _account, regions in list(ec2_backends.items()):
        backend = dict.get(regions, region)
        if backend is not None and ami_id in backend.amis:
            return backend.amis[ami_id]
    return None


def resolve(region: str, ami_id: str, account: str) -> dict[str, Any] | None:
    """The build an AMI holds, for an account that may launch it; None when it may not, or none is named."""
    from imagefactory.sandbox.policy import may_launch

    ami = _find(region, ami_id)
    if ami is None or not may_launch(ami, account):
        return None
    via = [ami_id]
    while len(via) <= _MAX_HOPS:
        build = ami.ec2_backend.tags.get(ami.id, {}).get(BUILD_ID_TAG)
        if build:
            return {"image": ami_id, "build_id": build, "via": via}
        source = getattr(ami, "copied_from", None)
        ami = _find(source["region"], source["image"]) if source else None
        if ami is None:
            return None
        via.append(ami.id)
    return None


def answer(query: str) -> tuple[str, dict[str, Any]]:
    """The HTTP status and JSON body for a request to CONTENT_PATH."""
    fields = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
    region, ami, account = fields.get("region", ""), fields.get("image", ""), fields.get("account", "")
    if not (region and ami and account):
        return "400 Bad Request", {"error": "give region, image and account"}
    found = resolve(region, ami, account)
    if found is None:
        return "404 Not Found", {"error": f"{ami} in {region} holds no sandbox build that account {account} may "
                                          "launch"}
    return "200 OK", found


# --------------------------------------------------------------------------------------------- the caller
def build_of(endpoint: str, region: str, ami: str, account: str) -> str:
    """The build id whose packed rootfs is `ami`'s content, asked of the emulator at `endpoint`."""
    query = urllib.parse.urlencode({"region": region, "image": ami, "account": account})
    try:
        with _opener.open(f"{endpoint}{CONTENT_PATH}?{query}", timeout=10) as response:
            return str(json.loads(response.read())["build_id"])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise SandboxError(f"{ami} in {region} is not the image of a sandbox build (no {BUILD_ID_TAG}, "
                               "nor copied from one)", "launch an AMI a sandbox bake made, or a copy of one") from None
        raise SandboxError(f"the EC2 emulator at {endpoint} could not say what {ami} holds: HTTP {exc.code}",
                           "see its server.log") from None
    except (OSError, ValueError, KeyError) as exc:
        raise SandboxError(f"the EC2 emulator at {endpoint} could not say what {ami} holds: {exc}",
                           "check that it runs: invoke sandbox.status") from None
