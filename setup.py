"""Only here to fetch the pinned front-end files before the wheel is packed (see scripts/vendor.py)."""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithVendor(build_py):
    def run(self):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts"))
        from vendor import vendor
        vendor()
        super().run()


setup(cmdclass={"build_py": BuildWithVendor})
