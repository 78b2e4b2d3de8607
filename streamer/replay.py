"""(Skeleton: replaced by the issue that implements it.)"""

import argparse

from sentiwatch.errors import NotImplementedYet


def replay_command(args: argparse.Namespace) -> int:
    raise NotImplementedYet(args.command)
