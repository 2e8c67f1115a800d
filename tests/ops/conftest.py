"""The ops tests reuse the reading and sending tests' fixtures (a fresh Dovecot reader, an intake
handler steered by subject, settings pointed at the test bed)."""

from tests.mailboxes.reading_support import handler_log, reading_settings  # noqa: F401
from tests.mailboxes.sending_support import send_settings  # noqa: F401
