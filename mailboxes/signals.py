"""Signals other apps may connect to (they import mailboxes; mailboxes never imports them)."""

from django.dispatch import Signal

# Sent after a message was accepted by the SMTP server and marked SENT.
# sender=OutboundMessage, outbound=<the OutboundMessage row>.
message_sent = Signal()
