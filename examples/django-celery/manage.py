#!/usr/bin/env python3
"""Django's command-line utility for the shop."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    # Django defers a settings error and fails later with an unrelated one; stop here, by name.
    try:
        settings.INSTALLED_APPS
    except ImproperlyConfigured as e:
        sys.exit(f"error: {e}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
