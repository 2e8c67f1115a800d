"""Mailbox API shapes. Secrets (password, tokens) are write-only: no response ever contains them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .models import Mailbox, MailboxEvent, Security


class MailboxSerializer(serializers.ModelSerializer[Mailbox]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    staff = serializers.UUIDField(source="staff.public_id", read_only=True)
    staff_email = serializers.EmailField(source="staff.email", read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)

    class Meta:
        model = Mailbox
        fields = ["id", "staff", "staff_email", "provider", "email_address", "display_name", "from_address",
                  "permission", "post_processing", "status", "status_display", "imap_host", "imap_port",
                  "imap_security", "smtp_host", "smtp_port", "smtp_security", "username", "granted_scopes",
                  "access_token_expires_at", "is_default", "campaign_compatible", "last_read_at", "last_error",
                  "last_error_at", "authorized_at", "created_at", "updated_at"]
        read_only_fields = fields


class MailboxCreateSerializer(serializers.Serializer[Any]):
    """Connect an IMAP/SMTP mailbox (Google and Microsoft connect through their sign-in in the web UI)."""

    email_address = serializers.EmailField()
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    from_address = serializers.EmailField(required=False, allow_blank=True, default="")
    permission = serializers.ChoiceField(choices=Mailbox.Permission.choices,
                                         default=Mailbox.Permission.SEND_AND_READ)
    post_processing = serializers.ChoiceField(choices=Mailbox.PostProcessing.choices,
                                              default=Mailbox.PostProcessing.NOTHING)
    imap_host = serializers.CharField(max_length=253, required=False, allow_blank=True, default="")
    imap_port = serializers.IntegerField(min_value=1, max_value=65535, default=993)
    imap_security = serializers.ChoiceField(choices=Security.choices, default=Security.SSL)
    smtp_host = serializers.CharField(max_length=253)
    smtp_port = serializers.IntegerField(min_value=1, max_value=65535, default=587)
    smtp_security = serializers.ChoiceField(choices=Security.choices, default=Security.STARTTLS)
    username = serializers.CharField(max_length=254, required=False, allow_blank=True, default="")
    password = serializers.CharField(max_length=1000, write_only=True, trim_whitespace=False,
                                     style={"input_type": "password"})


class MailboxUpdateSerializer(serializers.Serializer[Any]):
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    from_address = serializers.EmailField(required=False, allow_blank=True)
    permission = serializers.ChoiceField(choices=Mailbox.Permission.choices, required=False)
    post_processing = serializers.ChoiceField(choices=Mailbox.PostProcessing.choices, required=False)
    imap_host = serializers.CharField(max_length=253, required=False, allow_blank=True)
    imap_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    imap_security = serializers.ChoiceField(choices=Security.choices, required=False)
    smtp_host = serializers.CharField(max_length=253, required=False)
    smtp_port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    smtp_security = serializers.ChoiceField(choices=Security.choices, required=False)
    username = serializers.CharField(max_length=254, required=False, allow_blank=True)
    password = serializers.CharField(max_length=1000, write_only=True, required=False, trim_whitespace=False,
                                     style={"input_type": "password"})


class CheckResultSerializer(serializers.Serializer[Any]):
    ok = serializers.BooleanField()
    imap = serializers.CharField()
    smtp = serializers.CharField()
    stage = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class MailboxEventSerializer(serializers.ModelSerializer[MailboxEvent]):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = MailboxEvent
        fields = ["id", "email_address", "kind", "detail", "created_at"]
        read_only_fields = fields
