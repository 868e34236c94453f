from django.core.management.base import BaseCommand

from labeling.services.demo import DEMO_ACCOUNTS, demo_passwords, demo_passwords_path, demo_passwords_reset


class Command(BaseCommand):
    help = "Print the demo accounts' passwords (admin, worker), or give them new ones with --reset."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="set new random passwords and print them")

    def handle(self, *args, reset=False, **options):
        found = demo_passwords_reset() if reset else demo_passwords()
        if not found:
            self.stdout.write(f"No demo accounts ({', '.join(DEMO_ACCOUNTS)}) yet: run `./crowdloop demo` first.")
            return
        for username in DEMO_ACCOUNTS:
            if username not in found:
                continue
            password = found[username]
            if password is None:
                self.stdout.write(f"{username.capitalize()} account: {username} / (unknown: changed by hand, or not "
                                  f"made by the demo; `manage.py demo_passwords --reset` sets a new one)")
            else:
                self.stdout.write(f"{username.capitalize()} account: {username} / {password}")
        if reset:
            self.stdout.write(f"Kept in {demo_passwords_path()} (readable by you only).")
