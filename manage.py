#!/usr/bin/env python
import os
import sys

# Commands that serve nobody and sign nothing (no sessions, tokens or cookies): on a fresh clone they run without
# a SECRET_KEY, so that `manage.py evaluate_detector` works as the evaluation contract says, straight after
# `make install`. The web and worker processes still refuse to start without one (portal/settings.py).
OFFLINE_COMMANDS = frozenset({
    "build_dataset", "train_inpainter", "train_detector", "train_refiner", "calibrate_detector", "evaluate_detector",
    "detect", "migrate", "help",
})


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    command = sys.argv[1] if len(sys.argv) > 1 else "help"
    if command in OFFLINE_COMMANDS or command.startswith("-"):
        os.environ["PORTAL_OFFLINE_COMMAND"] = command
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
