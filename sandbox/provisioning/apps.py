from django.apps import AppConfig


class SandboxProvisioningConfig(AppConfig):
    """Development and test tooling over the sandbox gateway: demo bootstrap, account
    provisioning and the gateway command. Installed only where the sandbox package exists, which
    the production image leaves out."""

    name = "sandbox.provisioning"
    label = "sandbox_provisioning"
