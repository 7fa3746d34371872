"""Build and install mptcpsec; the C core is compiled by cffi (csrc/build_core.py)."""

from pathlib import Path

from setuptools import find_packages, setup

TEST = [
    "pytest>=7.4",
    "pytest-timeout>=2.2",
    "hypothesis>=6.80",
    "ruff>=0.5",
    "mypy>=1.8",
    # The fuzz targets' short runs in the test suite (wheels for Linux x86_64/aarch64).
    'atheris>=2.3; platform_system == "Linux"',
    # An independent SOCKS5 client for the tunnel's tests.
    "python-socks>=2.4",
]
#: An optional faster event loop; the asyncio adapter runs on it unchanged (tested).
UVLOOP = ['uvloop>=0.19; platform_system != "Windows"']
TEST += UVLOOP
BENCH = [
    "pytest-benchmark>=4.0",
]
# The namespace lab (mptcpsec.lab.net): netlink, and NFQUEUE for the router's packet stage
# (NetfilterQueue builds against libnetfilter-queue-dev).
NETLAB = [
    "pyroute2>=0.7",
    "NetfilterQueue>=1.1",
]

setup(
    name="mptcpsec",
    version="0.1.0",
    description="Secure multipath transport research toolkit: MPTCPsec records over TCP subflows",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mptcpsec", "mptcpsec.*"]),
    package_data={"mptcpsec": ["py.typed", "*.pyi", "wire/dissector/*.lua"]},
    setup_requires=["cffi>=1.16"],
    cffi_modules=["csrc/build_core.py:ffibuilder"],
    install_requires=[
        "cffi>=1.16",
        "cryptography>=42",
        "pynacl>=1.5",
        "matplotlib>=3.7",
        "rich>=13",
        "pyOpenSSL>=24",
        "scapy>=2.5",
        'tomli>=1.1; python_version < "3.11"',  # --config FILE (tomllib from 3.11)
    ],
    extras_require={"test": TEST, "bench": BENCH, "uvloop": UVLOOP, "netlab": NETLAB,
                    "dev": TEST + BENCH},
    entry_points={"console_scripts": ["mptcpsec=mptcpsec.cli:main"]},
    zip_safe=False,
)
