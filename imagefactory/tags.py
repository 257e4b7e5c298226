"""How what the factory makes in the cloud is recognised: the names of the tags it puts on it, and the prefix of
the names Packer gives its temporary key pairs and security groups; each spelled here once."""

from __future__ import annotations

MANAGED_TAG = ("managed-by", "imagefactory")     # on everything the factory makes (what the janitor may judge)
BUILD_ID_TAG = "imagefactory:build-id"           # the build an AMI, its snapshots or an instance comes from
BUILD_ROLE_TAG = ("imagefactory:role", "build")  # on Packer's build instance and its volume, never on launched ones
LOGIN_USER_TAG = "imagefactory:login-user"       # read by `launch --ami` (owner account only)
JUPYTER_PORT_TAG = "imagefactory:jupyter-port"
PACKER_PREFIX = "packer_"                        # Packer's temporary key pair and security group: packer_<uuid>
