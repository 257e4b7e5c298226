"""AWS (or the sandbox emulator) through boto3: the target, images, and later instances."""
