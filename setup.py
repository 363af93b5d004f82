"""The one thing pyproject.toml cannot yet say without an "experimental" warning: the C extension.

bot.generation._matvec is the CPU decoding kernel (see bot/generation/kernels.py). It is optional: without a C
compiler the install goes on, and the bot uses torch's own kernels.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bot.generation._matvec", sources=["bot/generation/_matvec.c"], optional=True, extra_compile_args=["-O2"]
        ),
    ],
)
