"""How what the factory makes in the cloud is recognised: the names of the tags it puts on it, and the prefix of
the names Packer gives its temporary key pairs and security groups; each spelled here once."""

from __future__ import annotations

MANAGED_TAG = ("managed-by", "imagefactory")     # on everything the factory makes (what the janitor may judge)
BUILD_ID_TAG = "imagefactory:build-id"           # the build an AMI, its snapshots or an instance comes from
BUILD_ROLE_TAG = ("imagefactory:role", "build")  # on Packer's build instance and its volume, never on launched ones
LOGIN_USER_TAG = "imagefactory:login-user"       # read by `launch --ami` (owner account only)
JUPYTER_PORT_TAG = "imagefactory:jupyter-port"
IMAGE_TAG = "imagefactory:image"                 # the catalog image an AMI or a launched instance belongs to
BASE_AMI_NAME_TAG = "imagefactory:base-ami-name"  # the base image an AMI was built from (owner account only)
KEY_FILE_TAG = "imagefactory:key-file"           # on a launched instance: its key's file name under ~/.ssh
AUTOSTOP_TAG = "imagefactory:autostop-minutes"   # on a launched instance: its idle minutes before it stops
PACKER_PREFIX = "packer_"                        # Packer's temporary key pair and security group: packer_<uuid>
