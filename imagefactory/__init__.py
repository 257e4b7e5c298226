"""imagefactory: repository -> recipe -> Packer -> machine images -> catalog."""

__version__ = "0.1.0"
