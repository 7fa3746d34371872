"""mptcpsec: secure multipath transport (MPTCPsec records over TCP subflows)."""

from .environment import install as _install_environment

_install_environment()
