"""The image contract: the Packer templates, the provisioning scripts and the files they install.

Shipped inside the wheel as the package `imagefactory.contract_data` (pyproject.toml maps this folder
to it); `imagefactory.contract` finds it. This file holds no code.
"""
